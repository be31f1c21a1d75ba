package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

func init() {
	register(command{
		name:    "policy",
		summary: "validate an auth policy and explain a decision (policy check [--policy-file F] [--peer IP:PORT] [--token-file F])",
		run:     runPolicy,
	})
	helps["policy check"] = helpDoc{
		usage:       "finelog policy check [--policy-file FILE] [--peer IP:PORT] [--token-file FILE|-] [--at TIME]",
		description: "validate an auth policy like finelogd does at start, and explain the decision for one request",
		examples: []string{
			"finelog policy check --policy-file /etc/finelog/policy.json",
			"finelog policy check --policy-file policy.json --peer 10.0.0.7:5000 --token-file east.token",
		},
	}
}

// policyClock is the default evaluation time of `policy check`; tests
// replace it.
var policyClock clock.Clock = clock.Real{}

func runPolicy(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	policyFile := fs.String("policy-file", "", "policy `file` (default: the FINELOG_AUTH_POLICY environment variable; neither means loopback only)")
	peer := fs.String("peer", "", "explain the decision for a request from this transport peer `IP:PORT`")
	tokenFile := fs.String("token-file", "", "`file` holding the request's bearer token (\"-\" reads stdin)")
	at := fs.String("at", "", "evaluate tokens at this `time` (RFC 3339 or unix seconds; default now)")
	if len(args) == 0 || args[0] != "check" {
		return subcommandUsage(env, fs, args)
	}
	if err := parseFlags(env, fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *tokenFile != "" && *peer == "" {
		return errors.New("--token-file needs --peer: a decision is for a request from some address")
	}
	now := policyClock.Now()
	if *at != "" {
		t, err := parseCheckTime(*at)
		if err != nil {
			return err
		}
		now = t
	}
	clk := clock.NewFake(now)

	envPolicy := env.getenv(auth.EnvPolicy)
	source := auth.EnvPolicy
	switch {
	case *policyFile != "":
		source = "policy file " + *policyFile
		if envPolicy != "" {
			fmt.Fprintf(env.stdout, "note: %s is also set and ignored here; finelogd refuses to start with both\n", auth.EnvPolicy)
			envPolicy = ""
		}
	case envPolicy == "":
		source = "none configured (loopback only)"
	}
	p, err := auth.Load(envPolicy, *policyFile, vfs.OS{}, clk)
	if err != nil {
		return fmt.Errorf("invalid policy: %w", err)
	}
	fmt.Fprintf(env.stdout, "policy: %s, %d layer(s), valid\n", source, p.Layers())
	for _, line := range p.Describe() {
		fmt.Fprintf(env.stdout, "  %s\n", line)
	}
	fmt.Fprintf(env.stdout, "canonical: %s\n", p)
	if *peer == "" {
		return nil
	}

	h := http.Header{}
	tokNote := "no bearer token"
	if *tokenFile != "" {
		tok, err := readCheckToken(env, *tokenFile)
		if err != nil {
			return err
		}
		h.Set("Authorization", "Bearer "+tok)
		tokNote = "bearer token from " + *tokenFile
	}
	v, steps := p.Explain(*peer, h)
	fmt.Fprintf(env.stdout, "request: peer %s, %s, at %s\n", *peer, tokNote, now.UTC().Format(time.RFC3339))
	for _, s := range steps {
		fmt.Fprintf(env.stdout, "  layer %d (%s): %s: %s\n", s.Layer, s.Type, s.Outcome, s.Detail)
	}
	if v.Admitted {
		fmt.Fprintf(env.stdout, "verdict: admitted by layer %d, identity %s\n", v.Layer, v.Identity)
		return nil
	}
	where := "default deny (no layer admitted)"
	if v.Layer > 0 {
		where = fmt.Sprintf("rejected by layer %d", v.Layer)
	}
	fmt.Fprintf(env.stdout, "verdict: denied, %s: %s (%s, HTTP %d)\n", where, v.Reason, v.Code, v.Code.HTTPStatus())
	// A non-zero exit lets scripts ask "would this request get in?".
	return fmt.Errorf("request would be denied: %s", v.Reason)
}

func parseCheckTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--at %q: want RFC 3339 (2026-01-02T15:04:05Z) or unix seconds", s)
	}
	return t, nil
}

// readCheckToken reads a token file (or stdin for "-"), trimming the
// whitespace an editor or `echo` leaves around it.
func readCheckToken(env *cliEnv, path string) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(env.stdin, 64<<10))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s is empty", path)
	}
	return tok, nil
}
