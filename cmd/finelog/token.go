package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

func init() {
	register(command{
		name:    "token",
		summary: "mint an HS256 bearer token with a cluster key (token mint --secret-file F [--cluster C])",
		run:     runToken,
	})
	helps["token mint"] = helpDoc{
		usage:       "finelog token mint --secret-file FILE [--cluster NAME] [--ttl 1h] [--audience AUD]",
		description: "mint an HS256 bearer token signed with a cluster's key; the key decides the identity (its cluster)",
		examples: []string{
			"finelog token mint --secret-file /etc/finelog/east.key > east.token",
			"finelog token mint --secret-file east.key --cluster east --ttl 15m --audience global",
			"finelog fetch --token-file east.token /user/job-1/task-0",
		},
	}
}

// tokenClock is the time source of `token mint`; tests replace it.
var tokenClock clock.Clock = clock.Real{}

func runToken(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("token mint", flag.ContinueOnError)
	cluster := fs.String("cluster", "", "cluster `label` the key is configured under; with a policy it is checked (a mismatch is refused) and may be left out")
	policyFile := fs.String("policy-file", "", "the server's auth policy `file` (default: FINELOG_AUTH_POLICY): the token is verified against it, and the identity it grants is the label of the key that verifies it")
	secretFile := fs.String("secret-file", "", "`file` holding the cluster's HMAC key (at least 32 bytes; one trailing newline is ignored)")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	audience := fs.String("audience", "", "optional audience (aud) the token is scoped to")
	if len(args) == 0 || args[0] != "mint" {
		return subcommandUsage(env, fs, args)
	}
	if err := parseFlags(env, fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
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
	polJSON := env.getenv(auth.EnvPolicy)
	if *policyFile != "" {
		polJSON = ""
	}
	if polJSON == "" && *policyFile == "" {
		// Without the policy the label cannot be checked: the server
		// grants the identity of whichever key verifies the token, so
		// --cluster must be right.
		if *cluster == "" {
			return errors.New("--cluster is required without --policy-file or FINELOG_AUTH_POLICY (with one, the key's label is found there)")
		}
		tok, err := auth.Mint(secret, *cluster, *ttl, *audience, tokenClock.Now())
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(env.stdout, tok)
		return err
	}
	pol, err := auth.Load(polJSON, *policyFile, vfs.OS{}, tokenClock)
	if err != nil {
		return err
	}
	// The label only names the token's subject, which the server ignores;
	// mint under a placeholder, ask the policy who the token is, then mint
	// under that label.
	probe, err := auth.Mint(secret, "probe", *ttl, *audience, tokenClock.Now())
	if err != nil {
		return err
	}
	// A documentation address (TEST-NET-1): no cidr layer is meant to
	// admit it, so the verdict is the jwt layers'.
	v := pol.Admit("192.0.2.1:1", http.Header{"Authorization": {"Bearer " + probe}})
	if !v.Admitted || v.Identity.Kind != auth.LayerJWT {
		return fmt.Errorf("the policy does not admit a token signed with %s (%s): is the key configured in a jwt layer (and --audience right)?", *secretFile, v.Reason)
	}
	if *cluster != "" && *cluster != v.Identity.Cluster {
		return fmt.Errorf("--cluster %q: the key in %s is configured for cluster %q in the policy, and the key decides the identity; drop --cluster or use that cluster's key", *cluster, *secretFile, v.Identity.Cluster)
	}
	tok, err := auth.Mint(secret, v.Identity.Cluster, *ttl, *audience, tokenClock.Now())
	if err != nil {
		return err
	}
	// The token and nothing else goes to stdout, so
	// `finelog token mint ... > token` makes a usable --token-file.
	_, err = fmt.Fprintln(env.stdout, tok)
	return err
}
