package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/wire"
)

func init() {
	register(command{
		name:    "fetch",
		summary: "print the log lines of SOURCE (a key, or a prefix/regex of keys)",
		run:     runFetch,
	})
}

// filterFlags are the query flags fetch and tail share.
type filterFlags struct {
	prefix, regex bool
	since         time.Duration
	grep          string
	level         string
	cluster       string
	json          bool
}

func addFilterFlags(fs *flag.FlagSet) *filterFlags {
	f := &filterFlags{}
	fs.BoolVar(&f.prefix, "prefix", false, "SOURCE is a key prefix")
	fs.BoolVar(&f.regex, "regex", false, "SOURCE is a regular expression searched in keys")
	fs.DurationVar(&f.since, "since", 0, "only lines newer than this (e.g. 1h, 15m)")
	fs.StringVar(&f.grep, "grep", "", "only lines whose data contains this literal text")
	fs.StringVar(&f.level, "level", "", "minimum level: debug, info, warning, error or critical (lines without a level are kept)")
	fs.StringVar(&f.cluster, "cluster", "", "only lines of this cluster")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per line")
	return f
}

func (f *filterFlags) request(source string, now time.Time) (*loggingpb.FetchLogsRequest, error) {
	if f.prefix && f.regex {
		return nil, fmt.Errorf("--prefix and --regex are exclusive")
	}
	req := &loggingpb.FetchLogsRequest{
		Source:     source,
		Substring:  f.grep,
		MinLevel:   f.level,
		Cluster:    f.cluster,
		MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT,
	}
	switch {
	case f.prefix:
		req.MatchScope = loggingpb.MatchScope_MATCH_SCOPE_PREFIX
	case f.regex:
		req.MatchScope = loggingpb.MatchScope_MATCH_SCOPE_REGEX
	}
	if f.since > 0 {
		req.SinceMs = now.Add(-f.since).UnixMilli()
	}
	if f.level != "" {
		if _, err := parseLevel(f.level); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// entryPrinter writes entries as text or JSON lines.
type entryPrinter struct {
	w           *bufio.Writer
	json        bool
	showKey     bool
	showCluster bool
}

func newEntryPrinter(w io.Writer, f *filterFlags) *entryPrinter {
	return &entryPrinter{w: bufio.NewWriter(w), json: f.json, showKey: f.prefix || f.regex, showCluster: f.cluster == fanOut}
}

// jsonLine matches what curl gets from the Connect JSON API.
var jsonLine = protojson.MarshalOptions{}

func (p *entryPrinter) print(e *loggingpb.LogEntry) error {
	if p.json {
		b, err := jsonLine.Marshal(e)
		if err != nil {
			return err
		}
		p.w.Write(b)
		return p.w.WriteByte('\n')
	}
	ts := time.UnixMilli(e.GetTimestamp().GetEpochMs()).UTC().Format("2006-01-02T15:04:05.000Z")
	p.w.WriteString(ts)
	p.w.WriteByte(' ')
	p.w.WriteString(levelName(e.GetLevel()))
	p.w.WriteByte(' ')
	if p.showCluster {
		p.w.WriteString(e.GetCluster())
		p.w.WriteByte(' ')
	}
	if p.showKey {
		p.w.WriteString(e.GetKey())
		p.w.WriteByte(' ')
	}
	p.w.WriteString(e.GetData())
	return p.w.WriteByte('\n')
}

func (p *entryPrinter) flush() error { return p.w.Flush() }

func levelName(l loggingpb.LogLevel) string {
	switch l {
	case loggingpb.LogLevel_LOG_LEVEL_DEBUG:
		return "DEBUG"
	case loggingpb.LogLevel_LOG_LEVEL_INFO:
		return "INFO "
	case loggingpb.LogLevel_LOG_LEVEL_WARNING:
		return "WARN "
	case loggingpb.LogLevel_LOG_LEVEL_ERROR:
		return "ERROR"
	case loggingpb.LogLevel_LOG_LEVEL_CRITICAL:
		return "CRIT "
	case loggingpb.LogLevel_LOG_LEVEL_UNKNOWN:
		return "-    "
	default:
		return fmt.Sprintf("L%-4d", int32(l))
	}
}

func runFetch(ctx context.Context, env *cliEnv, args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	conn := addConnFlags(fs, env)
	filt := addFilterFlags(fs)
	max := fs.Int("max", 1000, "print at most this many lines")
	tail := fs.Bool("tail", false, "print the newest --max lines instead of the oldest")
	cursor := fs.Int64("cursor", 0, "start after this seq")
	fs.Usage = func() {
		fmt.Fprintln(env.stderr, "usage: finelog fetch [flags] SOURCE")
		fs.PrintDefaults()
	}
	source, err := parseOneArg(fs, args, "SOURCE")
	if err != nil {
		return err
	}
	req, err := filt.request(source, time.Now())
	if err != nil {
		return err
	}
	c, err := conn.client()
	if err != nil {
		return err
	}
	req.Cursor = *cursor
	out := newEntryPrinter(env.stdout, filt)
	defer out.flush()
	rep := newClusterReporter(env.stderr)

	if *tail {
		// The newest rows come back in one page.
		req.Tail = true
		req.MaxLines = int32(min(*max, wire.MaxMaxLines))
		resp, err := c.Fetch(ctx, req)
		if err != nil {
			return conn.friendly(err)
		}
		rep.report(resp)
		for _, e := range resp.GetEntries() {
			if err := out.print(e); err != nil {
				return err
			}
		}
		return nil
	}
	// Page forward by cursor until --max lines or the end.
	left := *max
	for left > 0 {
		req.MaxLines = int32(min(left, wire.MaxMaxLines))
		resp, err := c.Fetch(ctx, req)
		if err != nil {
			return conn.friendly(err)
		}
		rep.report(resp)
		for _, e := range resp.GetEntries() {
			if err := out.print(e); err != nil {
				return err
			}
		}
		n := len(resp.GetEntries())
		left -= n
		if req.GetCluster() == fanOut {
			// A fan-out pages by each cluster's cursor.
			if n == 0 {
				return nil
			}
			req.ClusterCursors = clusterCursors(resp)
			continue
		}
		if n == 0 || resp.GetCursor() == req.Cursor {
			return nil
		}
		req.Cursor = resp.GetCursor()
	}
	return nil
}
