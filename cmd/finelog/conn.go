package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/client"
)

// connFlags are the flags every command that talks to finelogd takes.
type connFlags struct {
	addr      string
	tokenFile string
	grpc      bool
}

func addConnFlags(fs *flag.FlagSet, env *cliEnv) *connFlags {
	c := &connFlags{}
	addr := env.getenv("FINELOG_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:7070"
	}
	fs.StringVar(&c.addr, "addr", addr, "finelogd `URL` (env FINELOG_ADDR)")
	fs.StringVar(&c.tokenFile, "token-file", env.getenv("FINELOG_TOKEN_FILE"), "`file` holding a bearer token (env FINELOG_TOKEN_FILE)")
	fs.BoolVar(&c.grpc, "grpc", false, "speak gRPC (h2c) instead of Connect over HTTP/1.1")
	return c
}

// client builds a client. The token file is re-read before every request,
// so a token rotated on disk is picked up by a long-running tail.
func (c *connFlags) client(extra ...client.Option) (*client.Client, error) {
	addr := c.addr
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	c.addr = addr
	var opts []client.Option
	if c.grpc {
		opts = append(opts, client.WithGRPC())
	}
	if c.tokenFile != "" {
		if _, err := readToken(c.tokenFile); err != nil {
			return nil, err
		}
		path := c.tokenFile
		opts = append(opts, client.WithToken(func(context.Context) (string, error) { return readToken(path) }))
	}
	opts = append(opts, extra...)
	return client.New(addr, opts...), nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s is empty", path)
	}
	return tok, nil
}

// friendly rewrites the errors a user hits most into what to do about them.
func (c *connFlags) friendly(err error) error {
	if err == nil {
		return nil
	}
	var op *net.OpError
	if errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial") {
		return fmt.Errorf("cannot reach finelogd at %s: is it running? (%v)", c.addr, err)
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnauthenticated, connect.CodePermissionDenied:
		var ce *connect.Error
		msg := err.Error()
		if errors.As(err, &ce) {
			msg = ce.Message()
		}
		return fmt.Errorf("finelogd refused the credentials: %s (%s)", msg, connect.CodeOf(err))
	}
	return err
}

// parseArgs parses flags that may come before or after the positional
// arguments ("finelog fetch KEY --json" works like "finelog fetch --json
// KEY"); "--" ends flag parsing.
func parseArgs(env *cliEnv, fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(env, fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag or right after "--".
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseOneArg parses flags around exactly one positional argument, named
// what (KEY, SOURCE) in the error.
func parseOneArg(env *cliEnv, fs *flag.FlagSet, args []string, what string) (string, error) {
	pos, err := parseArgs(env, fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", fmt.Errorf("want exactly one %s, got %d arguments (usage: %s)", what, len(pos), helps[fs.Name()].usage)
	}
	return pos[0], nil
}
