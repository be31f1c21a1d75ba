package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/wire"
)

func init() {
	register(command{
		name:    "fetch",
		summary: "print the log lines of SOURCE (a key, or a prefix/regex of keys)",
		run:     runFetch,
	})
	helps["fetch"] = helpDoc{
		usage:       "finelog fetch [flags] SOURCE",
		description: "print stored log lines of one key (or, with --prefix/--regex, of many), oldest first",
		examples: []string{
			"finelog fetch /user/job-1/task-0",
			"finelog fetch --prefix /user/job-1/ --since 1d --level warn",
			"finelog fetch --prefix /user/ --since 2026-12-01T09:00:00Z --until 2026-12-01T10:00:00Z --all",
			"finelog fetch --tail --max 50 --json /user/job-1/task-0 | jq .data",
			"finelog fetch --prefix '{app=\"api\"' --attr env=prod --attr trace_id=0af7651916cd43dd8448eb211c80319c",
		},
	}
}

// filterFlags are the query flags fetch and tail share.
type filterFlags struct {
	prefix, regex bool
	since, until  timeBound
	grep          string
	dataRegex     string
	level         string
	cluster       string
	attrs         attrFlag
	json          bool
}

func addFilterFlags(fs *flag.FlagSet) *filterFlags {
	f := &filterFlags{since: timeBound{name: "since"}, until: timeBound{name: "until"}}
	fs.BoolVar(&f.prefix, "prefix", false, "SOURCE is a key prefix")
	fs.BoolVar(&f.regex, "regex", false, "SOURCE is a regular expression on keys: its leading literal must start the key, the rest is searched unanchored")
	fs.Var(&f.since, "since", "only lines newer than this: "+timeForms)
	fs.Var(&f.until, "until", "only lines at or before this: "+timeForms)
	fs.StringVar(&f.grep, "grep", "", "only lines whose data contains this literal text")
	fs.StringVar(&f.dataRegex, "grep-regex", "", "only lines whose data matches this RE2 regular expression")
	fs.StringVar(&f.level, "level", "", "minimum level: "+levelHelp+" (lines without a level are kept)")
	fs.StringVar(&f.cluster, "cluster", "", "only lines of this cluster")
	fs.Var(&f.attrs, "attr", "only lines with this attribute, NAME=VALUE exactly (repeat: every one must match)")
	fs.BoolVar(&f.json, "json", false, "print one JSON object per line: seq, time (RFC 3339), level, key, source, data, attempt_id, cluster, attributes (when the line has some)")
	return f
}

func (f *filterFlags) request(source string, now time.Time) (*loggingpb.FetchLogsRequest, error) {
	if f.prefix && f.regex {
		return nil, fmt.Errorf("--prefix and --regex are exclusive")
	}
	req := &loggingpb.FetchLogsRequest{
		Source:     source,
		Substring:  f.grep,
		Regex:      f.dataRegex,
		Cluster:    f.cluster,
		MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT,
		Attributes: f.attrs.get(),
	}
	switch {
	case f.prefix:
		req.MatchScope = loggingpb.MatchScope_MATCH_SCOPE_PREFIX
	case f.regex:
		req.MatchScope = loggingpb.MatchScope_MATCH_SCOPE_REGEX
	}
	if f.since.set {
		req.SinceMs = f.since.time(now).UnixMilli()
	}
	if f.since.set && f.until.set && !f.until.time(now).After(f.since.time(now)) {
		return nil, fmt.Errorf("--until %s is not after --since %s", f.until.String(), f.since.String())
	}
	if f.level != "" {
		lv, err := parseLevel(f.level)
		if err != nil {
			return nil, err
		}
		// The canonical name: any server, old or new, knows it.
		req.MinLevel = strings.TrimPrefix(lv.String(), "LOG_LEVEL_")
	}
	return req, nil
}

// keep applies the filters the wire has no field for (--until).
func (f *filterFlags) keep(e *loggingpb.LogEntry, now time.Time) bool {
	return !f.until.set || e.GetTimestamp().GetEpochMs() <= f.until.time(now).UnixMilli()
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

// jsonEntry is the --json line: fixed field order and spacing (protojson
// promises neither), times as RFC 3339 in UTC.
type jsonEntry struct {
	Seq       int64  `json:"seq"`
	Time      string `json:"time"`
	EpochMS   int64  `json:"epoch_ms"`
	Level     string `json:"level"`
	Key       string `json:"key"`
	Source    string `json:"source"`
	Data      string `json:"data"`
	AttemptID int32  `json:"attempt_id"`
	Cluster   string `json:"cluster"`
	// Attributes is left out for a line without any, so output for such
	// lines is what it was before lines had attributes.
	Attributes map[string]string `json:"attributes,omitempty"`
}

func (p *entryPrinter) print(e *loggingpb.LogEntry) error {
	ms := e.GetTimestamp().GetEpochMs()
	if p.json {
		b, err := json.Marshal(jsonEntry{
			Seq:       e.GetSeq(),
			Time:      time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
			EpochMS:   ms,
			Level:     strings.TrimSpace(levelName(e.GetLevel())),
			Key:       e.GetKey(),
			Source:    e.GetSource(),
			Data:      e.GetData(),
			AttemptID: e.GetAttemptId(),
			Cluster:   e.GetCluster(),

			Attributes: e.GetAttributes(),
		})
		if err != nil {
			return err
		}
		p.w.Write(b)
		return p.w.WriteByte('\n')
	}
	ts := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
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
	if a := e.GetAttributes(); len(a) > 0 {
		p.w.WriteString(formatAttrs(a))
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
	conn := addConnFlags(fs, env)
	filt := addFilterFlags(fs)
	maxLines := fs.Int("max", 1000, "print at most this many lines")
	all := fs.Bool("all", false, "print every matching line, paging with the cursor (--max is ignored)")
	tail := fs.Bool("tail", false, "print the newest --max lines instead of the oldest")
	cursor := fs.Int64("cursor", 0, "start after this seq")
	source, err := parseOneArg(env, fs, args, "SOURCE")
	if err != nil {
		return err
	}
	if *maxLines <= 0 && !*all {
		return fmt.Errorf("--max %d: want at least 1 (or --all)", *maxLines)
	}
	if *all && *tail {
		return fmt.Errorf("--all and --tail are exclusive: --all prints from the oldest line on")
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
	req.Cursor = *cursor
	out := newEntryPrinter(env.stdout, filt)
	defer out.flush()
	rep := newClusterReporter(env.stderr)
	printed := 0
	emit := func(entries []*loggingpb.LogEntry) error {
		for _, e := range entries {
			if !filt.keep(e, now) {
				continue
			}
			if err := out.print(e); err != nil {
				return err
			}
			printed++
		}
		return nil
	}
	// more reports whether a row matching req exists past the page just
	// printed (one extra one-row read).
	more := func(q *loggingpb.FetchLogsRequest) (bool, error) {
		q.MaxLines = 1
		resp, err := c.Fetch(ctx, q)
		if err != nil {
			return false, conn.friendly(err)
		}
		return len(resp.GetEntries()) > 0, nil
	}

	truncated := false
	if *tail {
		// The newest rows come back in one page.
		req.Tail = true
		req.MaxLines = int32(min(*maxLines, wire.MaxMaxLines))
		resp, err := c.Fetch(ctx, req)
		if err != nil {
			return conn.friendly(err)
		}
		rep.report(resp)
		if err := emit(resp.GetEntries()); err != nil {
			return err
		}
		// (A fan-out's rows have one seq space per cluster: no such probe.)
		if es := resp.GetEntries(); len(es) == int(req.MaxLines) && es[0].GetSeq() > 1 && req.GetCluster() != fanOut {
			older := proto.Clone(req).(*loggingpb.FetchLogsRequest)
			older.UntilCursor = es[0].GetSeq() - 1
			if truncated, err = more(older); err != nil {
				return err
			}
		}
	} else {
		// Page forward by cursor until --max lines or the end.
		left := *maxLines
		for *all || left > 0 {
			req.MaxLines = int32(wire.MaxMaxLines)
			if !*all {
				req.MaxLines = int32(min(left, wire.MaxMaxLines))
			}
			resp, err := c.Fetch(ctx, req)
			if err != nil {
				return conn.friendly(err)
			}
			rep.report(resp)
			if err := emit(resp.GetEntries()); err != nil {
				return err
			}
			n := len(resp.GetEntries())
			left -= n
			if req.GetCluster() == fanOut {
				// A fan-out pages by each cluster's cursor.
				if n == 0 {
					break
				}
				req.ClusterCursors = clusterCursors(resp)
			} else {
				if n == 0 || resp.GetCursor() == req.Cursor {
					break
				}
				req.Cursor = resp.GetCursor()
			}
			if !*all && left <= 0 {
				if truncated, err = more(proto.Clone(req).(*loggingpb.FetchLogsRequest)); err != nil {
					return err
				}
			}
		}
	}
	if err := out.flush(); err != nil {
		return err
	}
	if truncated {
		fmt.Fprintf(env.stderr, "finelog fetch: more rows: use --max N or --all\n")
	}
	if printed == 0 && *cursor == 0 && req.MatchScope == loggingpb.MatchScope_MATCH_SCOPE_EXACT {
		// Say why nothing was printed: the filters, a key with no rows,
		// or a prefix typed without --prefix.
		probe := func(scope loggingpb.MatchScope) bool {
			found, err := more(&loggingpb.FetchLogsRequest{Source: source, MatchScope: scope, Cluster: req.Cluster})
			return err == nil && found
		}
		switch {
		case probe(loggingpb.MatchScope_MATCH_SCOPE_EXACT):
			fmt.Fprintf(env.stderr, "finelog fetch: key %q has rows, but none match the filters\n", source)
		case source != "" && probe(loggingpb.MatchScope_MATCH_SCOPE_PREFIX):
			fmt.Fprintf(env.stderr, "finelog fetch: no rows for key %q; did you mean --prefix? (keys starting with it have rows)\n", source)
		default:
			fmt.Fprintf(env.stderr, "finelog fetch: no rows for key %q\n", source)
		}
	}
	return nil
}
