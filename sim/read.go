package sim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/gen/finelog/logging/loggingpbconnect"
	"github.com/finelog/finelog/store"
)

// FetchSpec is a generated FetchLogs. SinceRow and CursorRow pick the
// since_ms and cursor from the rows the target holds when the read runs
// (an index, wrapped, into them, then an offset), so the boundaries the
// semantics are about (since_ms equal to a row's epoch, a cursor equal to
// a row's seq) are hit, not left to chance.
type FetchSpec struct {
	Source    string
	Scope     loggingpb.MatchScope
	SinceRow  int // < 0: since_ms 0
	SinceOff  int64
	CursorRow int // < 0: cursor 0
	CursorOff int64
	Substring string
	MaxLines  int32
	Tail      bool
	MinLevel  string
	Cluster   string
	// WaitMs long-polls: a read with nothing to answer parks in the server
	// until simulated time has moved WaitMs on.
	WaitMs int32
}

func (f *FetchSpec) String() string {
	if f == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{source=%q scope=%s since=row%d%+d cursor=row%d%+d substring=%q max_lines=%d tail=%v min_level=%q cluster=%q wait_ms=%d}",
		f.Source, f.Scope, f.SinceRow, f.SinceOff, f.CursorRow, f.CursorOff, f.Substring, f.MaxLines, f.Tail, f.MinLevel, f.Cluster, f.WaitMs)
}

// request resolves the spec against the rows the target holds.
func (f *FetchSpec) request(rows []store.Row) *loggingpb.FetchLogsRequest {
	req := &loggingpb.FetchLogsRequest{Source: f.Source, MatchScope: f.Scope, Substring: f.Substring,
		MaxLines: f.MaxLines, Tail: f.Tail, MinLevel: f.MinLevel, Cluster: f.Cluster, WaitMs: f.WaitMs}
	if f.SinceRow >= 0 && len(rows) > 0 {
		req.SinceMs = max(rows[f.SinceRow%len(rows)].EpochMS+f.SinceOff, 0)
	}
	if f.CursorRow >= 0 && len(rows) > 0 {
		req.Cursor = max(rows[f.CursorRow%len(rows)].Seq+f.CursorOff, 0)
	}
	return req
}

// readClient is the harness's own reader: the real Connect client, over
// the network's observer path (no faults, no latency), admitted by the
// target's policy by address.
func (w *World) readClient() loggingpbconnect.LogServiceClient {
	if w.reader == nil {
		w.reader = loggingpbconnect.NewLogServiceClient(w.Net.ObserverClient(readerPeer), relayURL(w.Target.Name))
	}
	return w.reader
}

// read is the read property: a FetchLogs through the target's server must
// answer exactly what the reference model computes over the rows the
// target holds.
func (w *World) read(f *FetchSpec) {
	if w.Net.Handler(w.Target.Name) == nil {
		w.Trace.Addf("  %s is down", w.Target.Name)
		return
	}
	w.autoFlush(w.Target)
	rows, err := scanAll(w.ctx, w.Target.Store)
	if err != nil {
		w.violate("read: scan %s: %v", w.Target.Name, err)
		return
	}
	req := f.request(rows)
	want, wantCursor, wantErr := ModelFetch(req, rows)
	var resp *connect.Response[loggingpb.FetchLogsResponse]
	if req.GetWaitMs() > 0 {
		// Always through longPoll: a server that parks where the model
		// expects rows must be reported, not hang the run.
		resp, err = w.longPoll(req)
	} else {
		resp, err = w.readClient().FetchLogs(w.ctx, connect.NewRequest(req))
	}
	w.Reads++
	switch {
	case wantErr != "" && err == nil:
		w.violate("read property: %v: the model refuses it (%s) but the server answered %d entries", req, wantErr, len(resp.Msg.GetEntries()))
		return
	case wantErr != "":
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			w.violate("read property: %v: want invalid_argument (%s), got %v", req, wantErr, err)
		}
		w.Trace.Addf("  read refused as expected: %v", connect.CodeOf(err))
		return
	case err != nil:
		w.violate("read property: %v: %v", req, err)
		return
	}
	got := resp.Msg.GetEntries()
	w.Trace.Addf("  read: %d entries, cursor %d", len(got), resp.Msg.GetCursor())
	if len(got) > 0 {
		w.Coverage.NonEmptyReads++
	}
	if diff := diffEntries(got, want, req.GetMatchScope() == loggingpb.MatchScope_MATCH_SCOPE_EXACT); diff != "" {
		w.violate("read property: %v over %d target rows: %s", req, len(rows), diff)
		return
	}
	if c := resp.Msg.GetCursor(); c != wantCursor {
		w.violate("read property: %v: cursor %d, want %d", req, c, wantCursor)
	}
}

// longPoll sends a FetchLogs that must wait: the server parks it on the
// target's clock, so it runs on its own goroutine while this one waits for
// the server's timer to appear and then moves simulated time past it. The
// request has returned (and its goroutine ended) when longPoll does.
func (w *World) longPoll(req *loggingpb.FetchLogsRequest) (*connect.Response[loggingpb.FetchLogsResponse], error) {
	type result struct {
		resp *connect.Response[loggingpb.FetchLogsResponse]
		err  error
	}
	clk := w.Target.Clock
	wait := time.Duration(req.GetWaitMs()) * time.Millisecond
	done := make(chan result, 1)
	go func() {
		resp, err := w.readClient().FetchLogs(w.ctx, connect.NewRequest(req))
		done <- result{resp, err}
	}()
	// Real time only bounds a server that neither answers nor parks, which
	// would otherwise hang the run; it decides nothing else.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case r := <-done:
			return r.resp, r.err
		default:
		}
		// Parked: the earliest timer on the target's clock is the
		// long-poll's own, due exactly wait from now (the server's other
		// timers, such as a read slot's, are due later or gone at once).
		if d, ok := clk.NextDeadline(); ok && d.Equal(clk.Now().Add(wait)) {
			w.Coverage.LongPolls++
			w.Advance(wait)
			continue
		}
		if time.Now().After(deadline) {
			w.violate("read property: a wait_ms=%d read neither answered nor parked on %s's clock", req.GetWaitMs(), w.Target.Name)
			return nil, fmt.Errorf("sim: the read did not return")
		}
		time.Sleep(50 * time.Microsecond) // real time: the handler is on its way to park
	}
}

// ModelFetch is the reference model of FetchLogs over rows (every row the
// store holds, in seq order), written from the wire semantics in DESIGN.md
// and independent of the store's read path: the entries the server must
// return, the response cursor, or the reason the request is invalid.
func ModelFetch(req *loggingpb.FetchLogsRequest, rows []store.Row) ([]*loggingpb.LogEntry, int64, string) {
	var match func(string) bool
	switch req.GetMatchScope() {
	case loggingpb.MatchScope_MATCH_SCOPE_EXACT:
		match = func(k string) bool { return k == req.GetSource() }
	case loggingpb.MatchScope_MATCH_SCOPE_PREFIX:
		if req.GetSource() == "" {
			return nil, 0, "source is required"
		}
		match = func(k string) bool { return strings.HasPrefix(k, req.GetSource()) }
	default: // UNSPECIFIED means REGEX (docs/wire.md)
		re, err := regexp.Compile(req.GetSource())
		if err != nil {
			return nil, 0, "bad regex"
		}
		lit := leadingLiteral(req.GetSource())
		match = func(k string) bool { return strings.HasPrefix(k, lit) && re.MatchString(k) }
	}
	minLevel := map[string]int32{"DEBUG": 1, "INFO": 2, "WARNING": 3, "ERROR": 4, "CRITICAL": 5,
		"TRACE": 1, "WARN": 3, "ERR": 4, "CRIT": 5, "FATAL": 5}[strings.ToUpper(strings.TrimSpace(req.GetMinLevel()))]
	var keep []store.Row
	for _, r := range rows {
		switch {
		case r.Seq <= req.GetCursor():
		case req.GetSinceMs() > 0 && r.EpochMS <= req.GetSinceMs():
		case !match(r.Key):
		case req.GetSubstring() != "" && !strings.Contains(r.Data, req.GetSubstring()):
		case minLevel != 0 && r.Level != 0 && r.Level < minLevel:
		case req.GetCluster() != "" && r.Cluster != req.GetCluster():
		default:
			keep = append(keep, r)
		}
	}
	limit := int(req.GetMaxLines())
	if limit <= 0 {
		limit = 1000
	}
	limit = min(limit, 10000)
	if len(keep) > limit {
		if req.GetTail() {
			keep = keep[len(keep)-limit:] // the newest, oldest first
		} else {
			keep = keep[:limit]
		}
	}
	out := make([]*loggingpb.LogEntry, len(keep))
	for i, r := range keep {
		out[i] = &loggingpb.LogEntry{Timestamp: &loggingpb.Timestamp{EpochMs: r.EpochMS}, Source: r.Source, Data: r.Data,
			AttemptId: modelAttempt(r.Key), Level: loggingpb.LogLevel(r.Level), Key: r.Key, Seq: r.Seq, Cluster: r.Cluster}
	}
	cursor := req.GetCursor()
	if len(keep) > 0 {
		cursor = keep[len(keep)-1].Seq
	}
	return out, cursor, ""
}

// leadingLiteral is a REGEX-scope source's text before its first
// metacharacter, which must be a prefix of the key (the existing server's
// rule, docs/wire.md); a quantifier allowing zero repetitions right after it
// makes its last character optional, so that one is not part of it.
func leadingLiteral(src string) string {
	i := strings.IndexAny(src, `\.+*?()|[]{}^$`)
	if i < 0 {
		return src
	}
	lit := src[:i]
	if strings.ContainsRune("*?{", rune(src[i])) && lit != "" {
		_, size := utf8.DecodeLastRuneInString(lit)
		lit = lit[:len(lit)-size]
	}
	return lit
}

// modelAttempt: the int after the key's last colon, else 0.
func modelAttempt(key string) int32 {
	i := strings.LastIndex(key, ":")
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseInt(key[i+1:], 10, 32)
	if err != nil {
		return 0
	}
	return int32(n)
}

// diffEntries describes the first difference between two responses. An
// EXACT read may leave the key out (the caller named it).
func diffEntries(got, want []*loggingpb.LogEntry, exact bool) string {
	n := min(len(got), len(want))
	for i := 0; i < n; i++ {
		g, w := got[i], want[i]
		keyOK := g.GetKey() == w.GetKey() || (exact && g.GetKey() == "")
		if g.GetSeq() != w.GetSeq() || g.GetData() != w.GetData() || !keyOK || g.GetSource() != w.GetSource() ||
			g.GetTimestamp().GetEpochMs() != w.GetTimestamp().GetEpochMs() || g.GetLevel() != w.GetLevel() ||
			g.GetAttemptId() != w.GetAttemptId() || g.GetCluster() != w.GetCluster() {
			return fmt.Sprintf("entry %d of %d: got seq %d %q (epoch %d), want seq %d %q (epoch %d)",
				i, len(want), g.GetSeq(), trim(g.GetData()), g.GetTimestamp().GetEpochMs(), w.GetSeq(), trim(w.GetData()), w.GetTimestamp().GetEpochMs())
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("%d entries, want %d", len(got), len(want))
	}
	return ""
}
