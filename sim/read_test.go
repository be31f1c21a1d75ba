package sim

import (
	"strings"
	"testing"

	"pgregory.net/rapid"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/store"
)

// Pools for generated reads, matched to the keys, data and levels the
// harness appends (appendRows): /user/job-{0,1,2}/task-{0,1}:{0,1}.
var (
	fetchSources = []string{"", "", "", "/user/job-1/task-0:0", "/user/job-2/task-1:1", "/user/job-0", "/user/job-", "/user/job-1/task-1:0",
		"task-1", "(task-1)", "/user/job-1.task", "/user/job-2/task-1:1$", "/user/job-[0-9]+/", "/user/jobx*-1", "^/user/job-[02]", "job-2/task-1:1$", "", "(", ".user/job-1/task-0:0", "/batch/job-1", "batch", "/nope"}
	fetchSubstrings = []string{"", "", "", "", "", "", "row-0000", "payload=0", "level=3", "zzz", "T03:", "batch-"}
	fetchLevels     = []string{"", "", "", "", "", "", "", "debug", "warn", "Fatal", "INFO", " warning ", "Error", "CRITICAL", "verbose", "2"}
	fetchClusters   = []string{"", "", "", "", "east", "west", "global"}
	fetchMaxLines   = []int32{0, -1, 1, 2, 3, 17, 200, 20000}
)

func genFetch() *rapid.Generator[*FetchSpec] {
	return rapid.Custom(func(t *rapid.T) *FetchSpec {
		f := &FetchSpec{
			Source:    rapid.SampledFrom(fetchSources).Draw(t, "source"),
			Scope:     loggingpb.MatchScope(rapid.IntRange(0, 3).Draw(t, "scope")),
			SinceRow:  -1,
			CursorRow: -1,
			Substring: rapid.SampledFrom(fetchSubstrings).Draw(t, "substring"),
			MaxLines:  rapid.SampledFrom(fetchMaxLines).Draw(t, "max_lines"),
			Tail:      rapid.Bool().Draw(t, "tail"),
			MinLevel:  rapid.SampledFrom(fetchLevels).Draw(t, "min_level"),
			Cluster:   rapid.SampledFrom(fetchClusters).Draw(t, "cluster"),
		}
		if rapid.IntRange(0, 4).Draw(t, "long_poll") == 0 {
			// Below the server's read-slot wait (5 s), so the long-poll's
			// timer is the one due first.
			f.WaitMs = rapid.Int32Range(1, 4000).Draw(t, "wait_ms")
		}
		if rapid.Bool().Draw(t, "since") {
			f.SinceRow = rapid.IntRange(0, 400).Draw(t, "since_row")
			f.SinceOff = rapid.SampledFrom([]int64{0, 0, -1, 1}).Draw(t, "since_off")
		}
		if rapid.IntRange(0, 2).Draw(t, "cursor") == 0 {
			f.CursorRow = rapid.IntRange(0, 400).Draw(t, "cursor_row")
			f.CursorOff = rapid.Int64Range(-1, 1).Draw(t, "cursor_off")
		}
		return f
	})
}

// readShape is the default world with reads a quarter of the actions.
var readShape = func() scheduleShape { sh := defaultShape; sh.reads = 35; sh.maxLen = 120; return sh }()

// TestSimReads is the read property: any FetchLogs through the target's
// server (scopes, cursor, since_ms, tail, substring, min_level, cluster,
// max_lines) equals the reference model over the rows the target holds,
// under the same faults and crashes as the other properties.
func TestSimReads(t *testing.T) {
	simProperty(t, config(), readShape, nil)
}

// readCanarySchedule writes rows over several epochs and keys, forwards
// them, and reads with since_ms equal to a row's epoch and a tail.
func readCanarySchedule() []Action {
	s := []Action{appendSome, {Kind: Advance, D: 5}, appendSome, {Kind: Advance, D: 7}, appendSome, step}
	return append(s,
		Action{Kind: Read, Fetch: &FetchSpec{Source: "", Scope: loggingpb.MatchScope_MATCH_SCOPE_REGEX, SinceRow: 4, CursorRow: -1}},
		Action{Kind: Read, Fetch: &FetchSpec{Source: "/user/", Scope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX, SinceRow: -1, CursorRow: -1, Tail: true, MaxLines: 4}},
	)
}

// TestLongPollUnderFakeClock: a FetchLogs that must wait parks on the
// target's fake clock and returns, empty, once simulated time passes its
// wait; its goroutine and timer are gone afterwards (goleak in TestMain).
func TestLongPollUnderFakeClock(t *testing.T) {
	sched := []Action{appendSome, step,
		{Kind: Read, Fetch: &FetchSpec{Source: "/nope", Scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, SinceRow: -1, CursorRow: -1, WaitMs: 3000}}}
	w, err := run(config(), 1, sched)
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Trace.Tail(30))
	}
	if w.Coverage.LongPolls != 1 {
		t.Fatalf("%d reads parked in the server, want 1:\n%s", w.Coverage.LongPolls, w.Trace.Tail(30))
	}
	if p := w.Target.Clock.Pending(); p != 0 {
		t.Fatalf("%d timers left on the target's clock", p)
	}
}

// TestCanaryInclusiveSince: a server that keeps rows with epoch_ms equal
// to since_ms must fail the read property.
func TestCanaryInclusiveSince(t *testing.T) {
	cfg := config()
	cfg.Defects.InclusiveSince = true
	expectViolation(t, cfg, readCanarySchedule(), nil, "read property")
}

// TestCanaryTailNewestFirst: a tail page in newest-first order must fail
// the read property.
func TestCanaryTailNewestFirst(t *testing.T) {
	cfg := config()
	cfg.Defects.TailNewestFirst = true
	expectViolation(t, cfg, readCanarySchedule(), nil, "read property")
}

// TestReadCanariesGenerated: both read defects are caught by generated
// schedules too, not only by the hand-written one.
func TestReadCanariesGenerated(t *testing.T) {
	for name, set := range map[string]func(*Config){
		"inclusive since":   func(c *Config) { c.Defects.InclusiveSince = true },
		"tail newest first": func(c *Config) { c.Defects.TailNewestFirst = true },
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			cfg := config()
			set(&cfg)
			caught, runs := 0, 20
			for i := 0; i < runs && caught == 0; i++ {
				if _, err := run(cfg, int64(i), genSchedule(readShape).Example(i)); err != nil && strings.Contains(err.Error(), "read property") {
					caught++
				}
			}
			if caught == 0 {
				t.Fatalf("%s went unnoticed in %d generated schedules", name, runs)
			}
		})
	}
}

// TestModelFetchSemantics pins the reference model to the documented wire
// semantics on a hand-made table, so the model cannot drift into agreeing
// with a wrong server.
func TestModelFetchSemantics(t *testing.T) {
	rows := modelRows()
	for _, tc := range []struct {
		name string
		req  *loggingpb.FetchLogsRequest
		want []int64 // seqs
		err  bool
	}{
		{"since is exclusive", &loggingpb.FetchLogsRequest{SinceMs: 200}, []int64{3, 4}, false},
		{"cursor is exclusive", &loggingpb.FetchLogsRequest{Cursor: 2}, []int64{3, 4}, false},
		{"tail keeps the newest, oldest first", &loggingpb.FetchLogsRequest{Tail: true, MaxLines: 2}, []int64{3, 4}, false},
		{"head keeps the oldest", &loggingpb.FetchLogsRequest{MaxLines: 2}, []int64{1, 2}, false},
		{"exact is literal", &loggingpb.FetchLogsRequest{Source: "/a.b", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}, []int64{1}, false},
		{"regex: the leading literal is a key prefix", &loggingpb.FetchLogsRequest{Source: "a.b"}, nil, false},
		{"regex without a leading literal is unanchored", &loggingpb.FetchLogsRequest{Source: "(a.b)"}, []int64{1, 2}, false},
		{"regex: /a.b needs the prefix /a", &loggingpb.FetchLogsRequest{Source: "/a.b"}, []int64{1, 2}, false},
		{"regex: a zero-repetition quantifier drops the literal's last character", &loggingpb.FetchLogsRequest{Source: "/x*a"}, []int64{1, 2}, false},
		{"min level alias", &loggingpb.FetchLogsRequest{MinLevel: "warn"}, []int64{2, 3, 4}, false},
		{"prefix", &loggingpb.FetchLogsRequest{Source: "/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX}, []int64{1, 2}, false},
		{"prefix needs a source", &loggingpb.FetchLogsRequest{MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX}, nil, true},
		{"min level keeps unknown", &loggingpb.FetchLogsRequest{MinLevel: " error"}, []int64{3, 4}, false},
		{"unknown level name means no filter", &loggingpb.FetchLogsRequest{MinLevel: "loud"}, []int64{1, 2, 3, 4}, false},
		{"substring", &loggingpb.FetchLogsRequest{Substring: "boom"}, []int64{2}, false},
		{"cluster", &loggingpb.FetchLogsRequest{Cluster: "west"}, []int64{4}, false},
	} {
		got, _, why := ModelFetch(tc.req, rows)
		if (why != "") != tc.err {
			t.Errorf("%s: error %q, want error=%v", tc.name, why, tc.err)
			continue
		}
		var seqs []int64
		for _, e := range got {
			seqs = append(seqs, e.GetSeq())
		}
		if len(seqs) != len(tc.want) {
			t.Errorf("%s: seqs %v, want %v", tc.name, seqs, tc.want)
			continue
		}
		for i := range seqs {
			if seqs[i] != tc.want[i] {
				t.Errorf("%s: seqs %v, want %v", tc.name, seqs, tc.want)
				break
			}
		}
	}
}

func modelRows() []store.Row {
	return []store.Row{
		{Seq: 1, Key: "/a.b", EpochMS: 100, Level: 2, Data: "x", Cluster: "east"},
		{Seq: 2, Key: "/axb", EpochMS: 200, Level: 3, Data: "boom", Cluster: "east"},
		{Seq: 3, Key: "/c", EpochMS: 300, Level: 4, Data: "y", Cluster: "east"},
		{Seq: 4, Key: "/d", EpochMS: 400, Level: 0, Data: "z", Cluster: "west"},
	}
}
