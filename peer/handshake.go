package peer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// Version is the only protocol version this implementation speaks.
const Version = 1

// Handshake body sizes.
const (
	helloBody     = 1 + 16 + 16 + 32
	challengeBody = 1 + 16 + 32 + 32
	finishBody    = 32
)

// Status is the Challenge's first byte: 0 accepts, anything else rejects.
type Status byte

// Challenge statuses. A status byte this implementation does not know is a
// reject like any other nonzero one.
const (
	StatusOK                 Status = 0
	StatusUnsupportedVersion Status = 1
	StatusClusterMismatch    Status = 2
	StatusBusy               Status = 3
	StatusRefused            Status = 4
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusUnsupportedVersion:
		return "unsupported_version"
	case StatusClusterMismatch:
		return "cluster_mismatch"
	case StatusBusy:
		return "busy"
	case StatusRefused:
		return "refused"
	default:
		return fmt.Sprintf("unknown_status_%d", byte(s))
	}
}

// RejectError is the dialer's error when the acceptor answered with a
// nonzero status.
type RejectError struct{ Status Status }

func (e *RejectError) Error() string {
	switch e.Status {
	case StatusUnsupportedVersion:
		return fmt.Sprintf("peer handshake rejected: the primary does not speak protocol version %d", Version)
	case StatusClusterMismatch:
		return "peer handshake rejected: the primary belongs to another cluster (check --cluster on both)"
	case StatusBusy:
		return "peer handshake rejected: the primary has too many handshakes in flight; retrying later"
	case StatusRefused:
		return "peer handshake rejected: refused by the primary"
	default:
		return fmt.Sprintf("peer handshake rejected with unknown status %d", byte(e.Status))
	}
}

// ErrBadMAC: the other end did not prove it holds the PSK (wrong key,
// replayed or altered handshake message). The connection was closed.
var ErrBadMAC = errors.New("peer handshake: MAC mismatch (the other end does not hold the same PSK, or the handshake was replayed or altered)")

// ErrHandshakeTimeout: the handshake did not finish within its limit.
var ErrHandshakeTimeout = errors.New("peer handshake: timed out (--peer-handshake-timeout)")

// DefaultHandshakeTimeout is --peer-handshake-timeout's default.
const DefaultHandshakeTimeout = 10 * time.Second

// DialerConfig is what a replica needs to authenticate to its primary.
type DialerConfig struct {
	Cluster ID
	Node    ID
	PSK     PSK
	// Rand supplies nonces (crypto/rand.Reader in production).
	Rand             io.Reader
	Clock            clock.Clock
	HandshakeTimeout time.Duration // default DefaultHandshakeTimeout
	MaxFrame         int           // default DefaultMaxFrame
	Stats            *Stats
	// Defects is for the simulation's canaries only.
	Defects Defects
}

// Handshake runs the dialer's side on nc: Hello, check the Challenge's
// status and mac_a, Finish. On any failure nc is closed. A wrong mac_d is
// answered by the acceptor closing, which the dialer sees on its first Recv.
func Handshake(nc net.Conn, cfg DialerConfig) (*Conn, error) {
	if cfg.PSK.IsZero() {
		nc.Close()
		return nil, ErrNoPSK
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	stop := closeAfter(clk, orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout), nc)
	c, result, err := dial(nc, &cfg)
	if !stop() {
		// The timer closed nc: whatever dial saw is a consequence.
		err, result = ErrHandshakeTimeout, "timeout"
	}
	cfg.Stats.handshake(RoleDialer, result)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func dial(nc net.Conn, cfg *DialerConfig) (*Conn, string, error) {
	var nonceD [32]byte
	if err := readNonce(cfg.Rand, &nonceD); err != nil {
		return nil, "refused", err
	}
	hello := make([]byte, 0, 4+1+helloBody)
	hello = appendRawFrame(hello, TypeHello, helloMsg(Version, cfg.Cluster, cfg.Node, &nonceD))
	if _, err := nc.Write(hello); err != nil {
		return nil, "protocol_error", fmt.Errorf("peer handshake: send hello: %w", err)
	}
	typ, body, err := readRawFrame(nc, MaxHandshakeFrame)
	if err != nil {
		return nil, "protocol_error", fmt.Errorf("peer handshake: read challenge: %w", truncated(err))
	}
	if typ != TypeChallenge || len(body) != challengeBody {
		return nil, "protocol_error", fmt.Errorf("%w: expected a %d-byte challenge, got type 0x%02x with %d bytes", ErrProtocol, challengeBody, typ, len(body))
	}
	if st := Status(body[0]); st != StatusOK {
		return nil, st.String(), &RejectError{Status: st}
	}
	var acceptor ID
	var nonceA [32]byte
	copy(acceptor[:], body[1:17])
	copy(nonceA[:], body[17:49])
	macA := body[49:81]
	mk := macKey(cfg.PSK)
	tr := transcript(cfg.Cluster, cfg.Node, acceptor, &nonceD, &nonceA)
	want := handshakeMAC(&mk, tr, labelAcceptor)
	if !macEqual(want[:], macA) && !cfg.Defects.SkipMACCheck {
		return nil, "bad_mac", ErrBadMAC
	}
	macD := handshakeMAC(&mk, tr, labelDialer)
	if _, err := nc.Write(appendRawFrame(nil, TypeFinish, macD[:])); err != nil {
		return nil, "protocol_error", fmt.Errorf("peer handshake: send finish: %w", err)
	}
	kda, kad := sessionKeys(&mk, &nonceD, &nonceA)
	return newConn(nc, RoleDialer, kda, kad, orDefault(cfg.MaxFrame, DefaultMaxFrame), cfg.Stats, acceptor, cfg.Defects), "ok", nil
}

func helloMsg(version byte, cluster, node ID, nonce *[32]byte) []byte {
	b := make([]byte, 0, helloBody)
	b = append(b, version)
	b = append(b, cluster[:]...)
	b = append(b, node[:]...)
	return append(b, nonce[:]...)
}

func challengeMsg(st Status, acceptor ID, nonce *[32]byte, mac *[32]byte) []byte {
	b := make([]byte, 0, challengeBody)
	b = append(b, byte(st))
	b = append(b, acceptor[:]...)
	b = append(b, nonce[:]...)
	return append(b, mac[:]...)
}

// readNonce fills n from r and refuses an all-zero result: that is what
// a legacy unauthenticated hello carries, and what a broken source yields.
func readNonce(r io.Reader, n *[32]byte) error {
	if r == nil {
		return errors.New("peer handshake: no nonce source")
	}
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return fmt.Errorf("peer handshake: read nonce: %w", err)
	}
	if *n == ([32]byte{}) {
		return errors.New("peer handshake: nonce source returned all zeros")
	}
	return nil
}

func orDefault[T int | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// closeAfter closes nc when d passes on clk, unless the returned stop is
// called first; stop reports whether it won (false: the timer closed nc).
func closeAfter(clk clock.Clock, d time.Duration, nc net.Conn) (stop func() bool) {
	t := clk.NewTimer(d)
	done := make(chan struct{})
	fired := make(chan bool, 1)
	go func() {
		select {
		case <-t.C():
			nc.Close()
			fired <- true
		case <-done:
			t.Stop()
			fired <- false
		}
	}()
	var result *bool
	return func() bool {
		if result == nil {
			close(done)
			won := !<-fired
			result = &won
		}
		return *result
	}
}
