package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

func init() {
	register(command{
		name:    "replica",
		summary: "replica port: 'status' (replicas and lag) or 'promote [--force]' (a replica takes writes)",
		run:     runReplica,
	})
	helps["replica status"] = helpDoc{
		usage:       "finelog replica status [--json] [flags]",
		description: "show the replica port: on a primary its replicas and their lag, on a replica its primary and lag",
		examples: []string{
			"finelog replica status --addr http://127.0.0.1:7070",
			"finelog replica status --json | jq .replicas",
		},
	}
	helps["replica promote"] = helpDoc{
		usage:       "finelog replica promote [--force] [flags]",
		description: "make a replica stop following its primary and take writes; refused while the primary is reachable unless --force",
		examples: []string{
			"finelog replica promote --addr http://standby:7070",
			"finelog replica promote --force  # the primary is up but must take no more writes",
		},
	}
}

func runReplica(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || (args[0] != "status" && args[0] != "promote") {
		fmt.Fprintln(env.stderr, "usage: finelog replica status [flags]\n       finelog replica promote [--force] [flags]")
		return fmt.Errorf("want 'status' or 'promote'")
	}
	sub := args[0]
	fs := flag.NewFlagSet("replica "+sub, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	conn := addConnFlags(fs, env)
	asJSON := fs.Bool("json", false, "print the raw JSON answer")
	force := false
	if sub == "promote" {
		fs.BoolVar(&force, "force", false, "promote even though the primary is still reachable (it must take no more writes)")
	}
	if pos, err := parseArgs(env, fs, args[1:]); err != nil {
		return err
	} else if len(pos) > 0 {
		return fmt.Errorf("unexpected arguments: %q", pos)
	}
	if _, err := conn.client(); err != nil { // normalises the address, checks the token file
		return err
	}
	method, path := http.MethodGet, "/replica/status"
	if sub == "promote" {
		method, path = http.MethodPost, "/replica/promote"
		if force {
			path += "?force=true"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(conn.addr, "/")+path, nil)
	if err != nil {
		return err
	}
	if conn.tokenFile != "" {
		tok, err := readToken(conn.tokenFile)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return conn.friendly(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("finelogd answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if *asJSON {
		_, err := env.stdout.Write(body)
		return err
	}
	var out struct {
		Message string          `json:"message"`
		Status  json.RawMessage `json:"status"`
	}
	if sub == "promote" {
		if err := json.Unmarshal(body, &out); err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, out.Message)
		body = out.Status
	}
	return printReplicaStatus(env.stdout, body)
}

type replicaStatusJSON struct {
	Role           string `json:"role"`
	LastSeq        int64  `json:"last_seq"`
	Node           string `json:"node"`
	NodeID         string `json:"node_id"`
	MinReplicaAcks int    `json:"min_replica_acks"`
	PeerListen     string `json:"peer_listen"`
	Replicas       []struct {
		Node       string  `json:"node_id"`
		Remote     string  `json:"remote"`
		SyncedSeq  int64   `json:"synced_seq"`
		LagRows    int64   `json:"lag_rows"`
		LagSeconds float64 `json:"lag_seconds"`
	} `json:"replicas"`
	Following *struct {
		Primary    string  `json:"primary"`
		Connected  bool    `json:"connected"`
		AppliedSeq int64   `json:"applied_seq"`
		LagRows    int64   `json:"lag_rows"`
		LagSeconds float64 `json:"lag_seconds"`
		LastError  string  `json:"last_error"`
	} `json:"following"`
}

func printReplicaStatus(w io.Writer, body []byte) error {
	var st replicaStatusJSON
	if err := json.Unmarshal(body, &st); err != nil {
		return fmt.Errorf("decode status: %w", err)
	}
	fmt.Fprintf(w, "role: %s  last_seq: %d", st.Role, st.LastSeq)
	if st.NodeID != "" {
		fmt.Fprintf(w, "  node: %s (id %s)", st.Node, st.NodeID)
	}
	fmt.Fprintln(w)
	if f := st.Following; f != nil {
		link := "down"
		if f.Connected {
			link = "up"
		}
		fmt.Fprintf(w, "primary: %s  link: %s  applied_seq: %d  lag: %d rows, %.1fs\n", f.Primary, link, f.AppliedSeq, f.LagRows, f.LagSeconds)
		if f.LastError != "" {
			fmt.Fprintf(w, "last error: %s\n", f.LastError)
		}
	}
	if st.PeerListen != "" {
		fmt.Fprintf(w, "peer port: %s  min_replica_acks: %d  replicas: %d\n", st.PeerListen, st.MinReplicaAcks, len(st.Replicas))
		for _, r := range st.Replicas {
			fmt.Fprintf(w, "  %s  %s  synced_seq: %d  lag: %d rows, %.1fs\n", r.Node, r.Remote, r.SyncedSeq, r.LagRows, r.LagSeconds)
		}
	}
	return nil
}
