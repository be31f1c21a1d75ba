package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/wire"
)

func init() {
	register(command{
		name:    "push",
		summary: "push stdin lines as log entries under KEY",
		run:     runPush,
	})
	helps["push"] = helpDoc{
		usage:       "finelog push [flags] KEY < lines",
		description: "send each line of stdin as one log entry of KEY, in batches, until EOF or interrupt",
		examples: []string{
			"echo 'job started' | finelog push --level info /user/job-1/task-0",
			"tail -f app.log | finelog push --source stdout /user/job-1/task-0",
			"finelog push -v /k < big.log   # prints the seq range each batch got",
			"echo 'deploy done' | finelog push --attr env=prod --attr version=1.4.2 /deploy/api",
		},
	}
}

func runPush(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	conn := addConnFlags(fs, env)
	level := fs.String("level", "", "level of every line: "+levelHelp+" (default unknown)")
	cluster := fs.String("cluster", "", "cluster to stamp (default: the server's)")
	source := fs.String("source", "", "source field of every line (e.g. stdout, stderr)")
	var attrs attrFlag
	fs.Var(&attrs, "attr", "attribute of every line, NAME=VALUE (repeat for more; at most 64, names up to 256 bytes, values up to 4 KiB)")
	batchLines := fs.Int("batch-lines", 1000, "send a batch after this many lines")
	batchBytes := fs.Int("batch-bytes", 4<<20, "send a batch after this many bytes")
	interval := fs.Duration("flush-interval", time.Second, "send a partial batch after this long, for slow input such as tail -f")
	longLines := fs.String("long-lines", longSplit, "a line longer than a row may hold (about 1 MiB): "+longSplit+" it into pieces marked with "+splitMark+", or "+longTruncate+" it (the rest is dropped and the exit code is 1)")
	verbose := fs.Bool("v", false, "print the seq range each batch was assigned")
	key, err := parseOneArg(env, fs, args, "KEY")
	if err != nil {
		return err
	}
	if !utf8.ValidString(key) {
		return fmt.Errorf("KEY %q is not valid UTF-8: keys must be UTF-8 text", key)
	}
	if *batchLines <= 0 || *batchBytes <= 0 {
		return fmt.Errorf("--batch-lines %d and --batch-bytes %d: want more than 0", *batchLines, *batchBytes)
	}
	lv, err := parseLevel(*level)
	if err != nil {
		return err
	}
	// Room for the data of one row: the row limit less the key, source,
	// a generous cluster name and the per-row overhead.
	attrBytes := 0
	for k, v := range attrs.get() {
		attrBytes += len(k) + len(v) + 4
	}
	lr, err := newLineReader(env.stdin, wire.MaxRowBytes-len(key)-len(*source)-attrBytes-1024, *longLines)
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
	var warnOnce sync.Once
	var counts struct{ fixed, split, truncated atomic.Int64 }
	go func() {
		defer close(lines)
		for {
			line, err := lr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				readErr <- fmt.Errorf("read stdin: %w", err)
				return
			}
			counts.fixed.Store(int64(lr.fixedUTF8))
			counts.split.Store(int64(lr.split))
			counts.truncated.Store(int64(lr.truncated))
			if lr.fixedUTF8+lr.split+lr.truncated > 0 {
				warnOnce.Do(func() {
					fmt.Fprintf(env.stderr, "finelog push: warning: some input lines are not valid UTF-8 (replaced by U+FFFD) or longer than a row may hold (--long-lines %s); counts at the end\n", *longLines)
				})
			}
			select {
			case lines <- line:
			case <-rctx.Done():
				readErr <- nil
				return
			}
		}
		readErr <- nil
	}()

	req := &loggingpb.PushLogsRequest{Key: key, Cluster: *cluster}
	size, total := 0, 0
	var first, last int64
	flush := func(ctx context.Context) error {
		if len(req.Entries) == 0 {
			return nil
		}
		resp, err := c.Push(ctx, req)
		if err != nil {
			return conn.friendly(fmt.Errorf("push %d lines (after %d sent): %w", len(req.Entries), total, err))
		}
		if *verbose {
			fmt.Fprintf(env.stdout, "pushed %d lines: seq %d..%d\n", len(req.Entries), resp.GetFirstSeq(), resp.GetLastSeq())
		}
		if first == 0 {
			first = resp.GetFirstSeq()
		}
		last = max(last, resp.GetLastSeq())
		total += len(req.Entries)
		req.Entries = req.Entries[:0]
		size = 0
		return nil
	}
	// finish reports what happened to the input; anything dropped makes
	// the exit code 1.
	finish := func(err error) error {
		fixed, split, trunc := counts.fixed.Load(), counts.split.Load(), counts.truncated.Load()
		if fixed > 0 {
			fmt.Fprintf(env.stderr, "finelog push: %d lines had invalid UTF-8, replaced by U+FFFD\n", fixed)
		}
		if split > 0 {
			fmt.Fprintf(env.stderr, "finelog push: %d lines longer than %d bytes were split into pieces marked %s\n", split, lr.max, splitMark)
		}
		if *verbose && total > 0 {
			fmt.Fprintf(env.stdout, "pushed %d lines in total: seq %d..%d\n", total, first, last)
		}
		if err != nil {
			return err
		}
		if trunc > 0 {
			return fmt.Errorf("%d lines longer than %d bytes were truncated (the rest of each was dropped; --long-lines %s keeps it)", trunc, lr.max, longSplit)
		}
		return nil
	}
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				if err := flush(ctx); err != nil {
					return finish(err)
				}
				return finish(<-readErr)
			}
			req.Entries = append(req.Entries, &loggingpb.LogEntry{
				Timestamp: &loggingpb.Timestamp{EpochMs: time.Now().UnixMilli()},
				Source:    *source,
				Data:      line,
				Level:     lv,

				Attributes: attrs.get(),
			})
			size += len(line) + 32
			if len(req.Entries) >= *batchLines || size >= *batchBytes {
				if err := flush(ctx); err != nil {
					return finish(err)
				}
			}
		case <-ticker.C:
			if err := flush(ctx); err != nil {
				return finish(err)
			}
		case <-ctx.Done():
			// Interrupted: send what was read, then stop.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return finish(flush(fctx))
		}
	}
}

// levelHelp lists the level names the CLI accepts.
const levelHelp = "debug (or trace), info, warning (warn), error (err) or critical (crit, fatal)"

// parseLevel maps a level name or alias to the wire enum ("" → UNKNOWN).
// An unknown name is an error here, although the server treats one as no
// filter (the existing server's rule): a typo must not silently filter
// nothing.
func parseLevel(s string) (loggingpb.LogLevel, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "":
		return loggingpb.LogLevel_LOG_LEVEL_UNKNOWN, nil
	case "DEBUG", "TRACE":
		return loggingpb.LogLevel_LOG_LEVEL_DEBUG, nil
	case "INFO":
		return loggingpb.LogLevel_LOG_LEVEL_INFO, nil
	case "WARNING", "WARN":
		return loggingpb.LogLevel_LOG_LEVEL_WARNING, nil
	case "ERROR", "ERR":
		return loggingpb.LogLevel_LOG_LEVEL_ERROR, nil
	case "CRITICAL", "CRIT", "FATAL":
		return loggingpb.LogLevel_LOG_LEVEL_CRITICAL, nil
	}
	return 0, fmt.Errorf("invalid_argument: --level %q: want %s", s, levelHelp)
}
