package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

func init() {
	register(command{
		name:    "token",
		summary: "mint an HS256 bearer token for a cluster key (token mint --cluster C --secret-file F)",
		run:     runToken,
	})
}

// tokenClock is the time source of `token mint`; tests replace it.
var tokenClock clock.Clock = clock.Real{}

func runToken(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] != "mint" {
		fmt.Fprintln(env.stderr, "usage: finelog token mint --cluster NAME --secret-file FILE [--ttl 1h] [--audience AUD]")
		return errors.New("want the subcommand \"mint\"")
	}
	fs := flag.NewFlagSet("token mint", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	cluster := fs.String("cluster", "", "cluster `label` of the key (the identity the token grants)")
	secretFile := fs.String("secret-file", "", "`file` holding the cluster's HMAC key (at least 32 bytes; one trailing newline is ignored)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	audience := fs.String("audience", "", "optional audience (aud) the token is scoped to")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *cluster == "" {
		return errors.New("--cluster is required")
	}
	// The key comes from a file only: a secret on the command line is
	// visible to every user of the machine through ps and /proc.
	if *secretFile == "" {
		return errors.New("--secret-file is required")
	}
	secret, err := auth.ReadSecretFile(vfs.OS{}, *secretFile)
	if err != nil {
		return err
	}
	tok, err := auth.Mint(secret, *cluster, *ttl, *audience, tokenClock.Now())
	if err != nil {
		return err
	}
	// The token and nothing else goes to stdout, so
	// `finelog token mint ... > token` makes a usable --token-file.
	_, err = fmt.Fprintln(env.stdout, tok)
	return err
}
