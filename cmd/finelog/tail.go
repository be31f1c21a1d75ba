package main

import (
	"context"
	"flag"
	"time"

	"github.com/finelog/finelog/wire"
)

func init() {
	register(command{
		name:    "tail",
		summary: "print the newest lines of SOURCE; with -f keep following",
		run:     runTail,
	})
	helps["tail"] = helpDoc{
		usage:       "finelog tail [-f] [flags] SOURCE",
		description: "print the newest lines of SOURCE; with -f keep printing new ones as they arrive",
		examples: []string{
			"finelog tail -n 100 /user/job-1/task-0",
			"finelog tail -f --prefix /user/job-1/ --level warn",
		},
	}
}

func runTail(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	conn := addConnFlags(fs, env)
	filt := addFilterFlags(fs)
	follow := fs.Bool("f", false, "follow: keep printing new lines as they arrive (until interrupted)")
	n := fs.Int("n", 10, "print the newest `N` lines first (at least 1)")
	source, err := parseOneArg(env, fs, args, "SOURCE")
	if err != nil {
		return err
	}
	now := time.Now()
	req, err := filt.request(source, now)
	if err != nil {
		return err
	}
	c, err := conn.client()
	if err != nil {
		return err
	}
	req.Tail = true
	req.MaxLines = int32(min(max(*n, 1), wire.MaxMaxLines))
	out := newEntryPrinter(env.stdout, filt)
	defer out.flush()
	if *follow && filt.cluster == fanOut {
		return followFanOut(ctx, c, req, out, env.stderr, conn.friendly)
	}
	if !*follow {
		resp, err := c.Fetch(ctx, req)
		if err != nil {
			return conn.friendly(err)
		}
		newClusterReporter(env.stderr).report(resp)
		for _, e := range resp.GetEntries() {
			if !filt.keep(e, now) {
				continue
			}
			if err := out.print(e); err != nil {
				return err
			}
		}
		return nil
	}
	for e, err := range c.Tail(ctx, req) {
		if err != nil {
			return conn.friendly(err)
		}
		if !filt.keep(e, now) {
			continue
		}
		if err := out.print(e); err != nil {
			return err
		}
		// Flush per page would batch better, but a tail is read by a human
		// (or a pipe) who wants each line as it lands.
		if err := out.flush(); err != nil {
			return err
		}
	}
	return nil
}
