package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/wire"
)

func init() {
	register(command{
		name:    "push",
		summary: "push stdin lines as log entries under KEY",
		run:     runPush,
	})
}

func runPush(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	conn := addConnFlags(fs, env)
	level := fs.String("level", "", "level of every line: debug, info, warning, error or critical (default unknown)")
	cluster := fs.String("cluster", "", "cluster to stamp (default: the server's)")
	source := fs.String("source", "", "source field of every line (e.g. stdout, stderr)")
	batchLines := fs.Int("batch-lines", 1000, "send a batch after this many lines")
	batchBytes := fs.Int("batch-bytes", 4<<20, "send a batch after this many bytes")
	interval := fs.Duration("flush-interval", time.Second, "send a partial batch after this long, for slow input such as tail -f")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: finelog push [flags] KEY < lines")
		fs.PrintDefaults()
	}
	key, err := parseOneArg(fs, args, "KEY")
	if err != nil {
		return err
	}
	lv, err := parseLevel(*level)
	if err != nil {
		return err
	}
	c, err := conn.client()
	if err != nil {
		return err
	}

	// A reader goroutine feeds lines so a partial batch can be sent on a
	// timer while stdin is quiet.
	lines := make(chan string, *batchLines)
	readErr := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		sc := bufio.NewScanner(env.stdin)
		sc.Buffer(make([]byte, 64<<10), wire.MaxRowBytes+1)
		defer close(lines)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-rctx.Done():
				readErr <- nil
				return
			}
		}
		if err := sc.Err(); err != nil {
			readErr <- fmt.Errorf("read stdin (a line may be at most %d bytes): %w", wire.MaxRowBytes, err)
			return
		}
		readErr <- nil
	}()

	req := &loggingpb.PushLogsRequest{Key: key, Cluster: *cluster}
	size, total := 0, 0
	flush := func(ctx context.Context) error {
		if len(req.Entries) == 0 {
			return nil
		}
		if _, err := c.Push(ctx, req); err != nil {
			return conn.friendly(fmt.Errorf("push %d lines (after %d sent): %w", len(req.Entries), total, err))
		}
		total += len(req.Entries)
		req.Entries = req.Entries[:0]
		size = 0
		return nil
	}
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if err := flush(ctx); err != nil {
					return err
				}
				return <-readErr
			}
			req.Entries = append(req.Entries, &loggingpb.LogEntry{
				Timestamp: &loggingpb.Timestamp{EpochMs: time.Now().UnixMilli()},
				Source:    *source,
				Data:      line,
				Level:     lv,
			})
			size += len(line) + 32
			if len(req.Entries) >= *batchLines || size >= *batchBytes {
				if err := flush(ctx); err != nil {
					return err
				}
			}
		case <-ticker.C:
			if err := flush(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			// Interrupted: send what was read, then stop.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := flush(fctx); err != nil {
				return err
			}
			return nil
		}
	}
}

// parseLevel maps a level name to the wire enum ("" → UNKNOWN).
func parseLevel(s string) (loggingpb.LogLevel, error) {
	switch strings.ToUpper(s) {
	case "":
		return loggingpb.LogLevel_LOG_LEVEL_UNKNOWN, nil
	case "DEBUG":
		return loggingpb.LogLevel_LOG_LEVEL_DEBUG, nil
	case "INFO":
		return loggingpb.LogLevel_LOG_LEVEL_INFO, nil
	case "WARNING", "WARN":
		return loggingpb.LogLevel_LOG_LEVEL_WARNING, nil
	case "ERROR":
		return loggingpb.LogLevel_LOG_LEVEL_ERROR, nil
	case "CRITICAL":
		return loggingpb.LogLevel_LOG_LEVEL_CRITICAL, nil
	}
	return 0, fmt.Errorf("--level %q: want debug, info, warning, error or critical", s)
}
