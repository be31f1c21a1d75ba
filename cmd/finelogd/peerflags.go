package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/peer"
	"github.com/finelog/finelog/server"
)

// addPeerFlags declares the replica port's flags (docs/replica.md); the
// returned func completes p after parsing: the byte-size flag, the PSK from
// the environment, the hostname default.
func addPeerFlags(fs *flag.FlagSet, p *server.PeerConfig) func(getenv func(string) string) error {
	fs.StringVar(&p.Listen, "peer-listen", "", "accept replicas on this `address` (off by default)")
	fs.StringVar(&p.PSKFile, "peer-psk-file", "", "`file` with the cluster's replica pre-shared key, at least 32 bytes (or set FINELOG_PEER_PSK)")
	fs.StringVar(&p.NextPSKFile, "peer-psk-next-file", "", "`file` with the key being rolled in: the peer port accepts replicas holding either key")
	fs.StringVar(&p.NodeName, "node-name", "", "this node's `name` on the peer port (default: the hostname)")
	maxFrame := byteSize(peer.DefaultMaxFrame)
	fs.Var(&maxFrame, "peer-max-frame", "largest peer frame in `bytes`; a longer one closes the connection")
	fs.DurationVar(&p.HandshakeTimeout, "peer-handshake-timeout", peer.DefaultHandshakeTimeout, "a peer handshake not finished within this is closed")
	fs.StringVar(&p.ReplicaOf, "replica-of", "", "follow the primary whose peer port is at `HOST:PORT`: serve reads, refuse pushes")
	fs.IntVar(&p.MinReplicaAcks, "min-replica-acks", 0, "acknowledge a push only once `N` replicas have synced it (0: do not wait)")
	fs.DurationVar(&p.AckTimeout, "replica-ack-timeout", server.DefaultReplicaAckTimeout, "how long a push waits for --min-replica-acks before it fails with unavailable (retryable)")
	return func(getenv func(string) string) error {
		if maxFrame > 1<<30 {
			return fmt.Errorf("--peer-max-frame %s: want at most 1GiB", maxFrame)
		}
		p.MaxFrame = int(maxFrame)
		if p.HandshakeTimeout <= 0 {
			return fmt.Errorf("--peer-handshake-timeout %s: want a positive duration", p.HandshakeTimeout)
		}
		if p.AckTimeout <= 0 {
			return fmt.Errorf("--replica-ack-timeout %s: want a positive duration", p.AckTimeout)
		}
		if v := getenv("FINELOG_PEER_PSK"); v != "" {
			p.PSKEnv = auth.Secret(v)
		}
		if p.NodeName == "" && (p.Listen != "" || p.ReplicaOf != "") {
			h, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("--node-name is unset and the hostname is unknown (%v): set --node-name", err)
			}
			p.NodeName = h
		}
		return nil
	}
}

// peerConfigJSON is the peer part of --print-config: key files by path,
// whether the environment holds a key, never a key.
func peerConfigJSON(p server.PeerConfig) map[string]any {
	return map[string]any{
		"listen":            p.Listen,
		"psk_file":          p.PSKFile,
		"psk_from_env":      len(p.PSKEnv) > 0,
		"psk_next_file":     p.NextPSKFile,
		"node_name":         p.NodeName,
		"max_frame":         p.MaxFrame,
		"handshake_timeout": p.HandshakeTimeout.String(),
		"replica_of":        p.ReplicaOf,
		"min_replica_acks":  p.MinReplicaAcks,
		"ack_timeout":       p.AckTimeout.String(),
	}
}
