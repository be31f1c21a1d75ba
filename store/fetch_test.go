package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// fetchFixture: seqs 1..10.
var fetchFixture = []Row{
	{Key: "/a.b", Data: "exact dot key", EpochMS: 100, Level: LevelInfo},                   // 1
	{Key: "/axb", Data: "a.b literal? no: axb", EpochMS: 101, Level: LevelDebug},           // 2
	{Key: "/user/job-1/t0", Data: "alpha ERROR x", EpochMS: 102, Level: LevelError},        // 3
	{Key: "/user/job-1/t0", Data: "beta", EpochMS: 103, Level: LevelUnknown},               // 4
	{Key: "/user/job-10/t0", Data: "gamma", EpochMS: 104, Level: LevelWarning},             // 5
	{Key: "/x/job-1", Data: "delta a.b", EpochMS: 105, Level: LevelCritical},               // 6
	{Key: "/user/job-1/t0", Data: "eps", EpochMS: 106, Level: 9, Cluster: "east"},          // 7
	{Key: "/user/job-1/t0", Data: "zeta", EpochMS: 107, Level: LevelInfo, Cluster: "west"}, // 8
	{Key: "/user/job-2/t1:3", Data: "eta", EpochMS: 108, Level: LevelDebug},                // 9
	{Key: "/user/job-1/t0", Data: "theta", EpochMS: 109, Level: -2},                        // 10
}

func seqsOf(rows []Row) []int64 {
	out := []int64{}
	for _, r := range rows {
		out = append(out, r.Seq)
	}
	return out
}

func TestFetchRules(t *testing.T) {
	cases := []struct {
		name       string
		q          Query
		want       []int64
		wantCursor int64
		wantErr    string
	}{
		{"exact is byte equality, metacharacters literal", Query{Source: "/a.b", Scope: ScopeExact}, []int64{1}, 1, ""},
		{"exact of a missing key", Query{Source: "/nope", Scope: ScopeExact, Cursor: 4}, []int64{}, 4, ""},
		{"prefix", Query{Source: "/user/job-1", Scope: ScopePrefix}, []int64{3, 4, 5, 7, 8, 10}, 10, ""},
		{"prefix needs a source", Query{Scope: ScopePrefix}, nil, 0, "source is required"},
		{"regex: leading literal must start the key", Query{Source: "user/job-1", Scope: ScopeRegex}, []int64{}, 0, ""},
		{"regex: rest is an unanchored search", Query{Source: "/user/job-1(/|$)", Scope: ScopeRegex}, []int64{3, 4, 7, 8, 10}, 10, ""},
		{"regex without a leading literal searches anywhere", Query{Source: "(job-1)(/|$)", Scope: ScopeRegex}, []int64{3, 4, 6, 7, 8, 10}, 10, ""},
		{"regex: a quantifier takes the literal's last character", Query{Source: "/a.b|/ax?b", Scope: ScopeRegex}, []int64{1, 2}, 2, ""},
		{"regex over the program budget", Query{Source: "[a-z]{1,1000}X", Scope: ScopeRegex}, nil, 0, "limit is 1000 (MaxRegexProgram)"},
		{"data regex", Query{Source: "", Regex: "^(alpha|beta)"}, []int64{3, 4}, 4, ""},
		{"data regex is RE2, unanchored", Query{Source: "/user/", Scope: ScopePrefix, Regex: "t[ah]"}, []int64{4, 8, 9, 10}, 10, ""},
		{"invalid data regex", Query{Source: "", Regex: "a("}, nil, 0, "regex \"a(\" is not a valid regular expression"},
		{"data regex over the length budget", Query{Source: "", Regex: strings.Repeat("a", MaxRegexBytes+1)}, nil, 0, "limit is 1024 (MaxRegexBytes)"},
		{"until_cursor is inclusive", Query{Source: "/user/job-1/t0", Scope: ScopeExact, UntilCursor: 7}, []int64{3, 4, 7}, 7, ""},
		{"until_cursor with tail pages backwards", Query{Source: "/user/", Scope: ScopePrefix, Tail: true, MaxLines: 2, UntilCursor: 7}, []int64{5, 7}, 7, ""},
		{"until_cursor with tail, next page", Query{Source: "/user/", Scope: ScopePrefix, Tail: true, MaxLines: 2, UntilCursor: 4}, []int64{3, 4}, 4, ""},
		{"until_cursor with cursor", Query{Source: "", Cursor: 2, UntilCursor: 4}, []int64{3, 4}, 4, ""},
		{"until_cursor 0 is no bound", Query{Source: "", Cursor: 8, UntilCursor: 0}, []int64{9, 10}, 10, ""},
		{"unspecified means regex", Query{Source: "/a.b"}, []int64{1, 2}, 2, ""},
		{"anchored regex", Query{Source: "^/user/job-1/", Scope: ScopeRegex}, []int64{3, 4, 7, 8, 10}, 10, ""},
		{"empty regex matches every key", Query{Source: "", MaxLines: 3}, []int64{1, 2, 3}, 3, ""},
		{"invalid regex", Query{Source: "(", Scope: ScopeRegex}, nil, 0, "not a valid regular expression"},
		{"bad scope", Query{Source: "/a", Scope: 7}, nil, 0, "match scope"},
		{"cursor is exclusive", Query{Source: "/user/job-1/t0", Scope: ScopeExact, Cursor: 4}, []int64{7, 8, 10}, 10, ""},
		{"since_ms is exclusive", Query{Source: "/user/", Scope: ScopePrefix, SinceMS: 104}, []int64{7, 8, 9, 10}, 10, ""},
		{"substring is literal", Query{Source: "", Substring: "a.b"}, []int64{2, 6}, 6, ""},
		{"substring is case sensitive", Query{Source: "", Substring: "error"}, []int64{}, 0, ""},
		{"min_level keeps unknown, case-insensitive", Query{Source: "/user/", Scope: ScopePrefix, MinLevel: "wArNiNg"}, []int64{3, 4, 5, 7}, 7, ""},
		{"min_level bogus means no filter", Query{Source: "/user/job-1/t0", Scope: ScopeExact, MinLevel: "loud"}, []int64{3, 4, 7, 8, 10}, 10, ""},
		{"max_lines limits from the oldest", Query{Source: "/user/", Scope: ScopePrefix, MaxLines: 2}, []int64{3, 4}, 4, ""},
		{"tail returns the newest, oldest first", Query{Source: "/user/", Scope: ScopePrefix, MaxLines: 3, Tail: true}, []int64{8, 9, 10}, 10, ""},
		{"tail with cursor", Query{Source: "/user/job-1/t0", Scope: ScopeExact, MaxLines: 10, Tail: true, Cursor: 7}, []int64{8, 10}, 10, ""},
		{"cluster filter", Query{Source: "", Cluster: "east"}, []int64{7}, 7, ""},
		{"all filters together", Query{Source: "/user", Scope: ScopePrefix, SinceMS: 102, Substring: "t", MinLevel: "info", Tail: true, MaxLines: 1}, []int64{8}, 8, ""},
	}
	for _, flushed := range []bool{false, true} {
		s := mustOpen(t, memOpts(vfs.NewMemFS()))
		mustAppend(t, s, fetchFixture[:5])
		if flushed {
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		mustAppend(t, s, fetchFixture[5:])
		for _, tc := range cases {
			name := tc.name
			if flushed {
				name += " (half in a segment)"
			}
			t.Run(name, func(t *testing.T) {
				res, err := s.Fetch(context.Background(), tc.q)
				if tc.wantErr != "" {
					if err == nil || !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("err = %v, want invalid argument mentioning %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if got := seqsOf(res.Rows); !equalSeqs(got, tc.want) {
					t.Fatalf("seqs = %v, want %v", got, tc.want)
				}
				if res.Cursor != tc.wantCursor {
					t.Fatalf("cursor = %d, want %d", res.Cursor, tc.wantCursor)
				}
			})
		}
		// A level outside the enum round-trips, and rows keep their key.
		res, _ := s.Fetch(context.Background(), Query{Source: "/user/job-1/t0", Scope: ScopeExact, Cursor: 6, MaxLines: 1})
		if len(res.Rows) != 1 || res.Rows[0].Level != 9 || res.Rows[0].Cluster != "east" || res.Rows[0].Key != "/user/job-1/t0" {
			t.Fatalf("row 7 read back as %+v", res.Rows)
		}
		s.Close()
	}
}

func equalSeqs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFetchMaxLinesDefaultAndCap(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	for i := 0; i < 3; i++ {
		mustAppend(t, s, mkRows("/k", 4000, i*4000))
	}
	for _, tc := range []struct{ in, want int }{{0, DefaultMaxLines}, {-5, DefaultMaxLines}, {20000, MaxMaxLines}, {7, 7}} {
		res, err := s.Fetch(context.Background(), Query{Source: "/k", Scope: ScopeExact, MaxLines: tc.in})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Rows) != tc.want || res.MaxLines != tc.want {
			t.Fatalf("max_lines %d: got %d rows, MaxLines %d; want %d", tc.in, len(res.Rows), res.MaxLines, tc.want)
		}
	}
}

func TestAttemptID(t *testing.T) {
	for key, want := range map[string]int32{"/user/job/0:3": 3, "/user/job/0": 0, "/a:1:2": 2, "/a:x": 0, "/a:": 0, ":7": 7} {
		if got := AttemptID(key); got != want {
			t.Errorf("AttemptID(%q) = %d, want %d", key, got, want)
		}
	}
}

// TestSegmentSeqSamples: long key ranges in a segment are entered through
// the sparse seq index; every cursor and Scan window must still be exact.
func TestSegmentSeqSamples(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	ctx := context.Background()
	var rows []Row
	for i := 0; i < 3000; i++ {
		key := []string{"/a", "/b", "/a", "/c"}[i%4]
		rows = append(rows, Row{Key: key, Data: "row", EpochMS: int64(i)})
	}
	mustAppend(t, s, rows)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for cursor := int64(0); cursor <= 3000; cursor += 97 {
		res, err := s.Fetch(ctx, Query{Source: "/a", Scope: ScopeExact, Cursor: cursor, MaxLines: 5})
		if err != nil {
			t.Fatal(err)
		}
		var want []int64
		for seq := cursor + 1; seq <= 3000 && len(want) < 5; seq++ {
			if (seq-1)%4 == 0 || (seq-1)%4 == 2 {
				want = append(want, seq)
			}
		}
		if got := seqsOf(res.Rows); !equalSeqs(got, want) && !(len(want) == 0 && len(got) == 0) {
			t.Fatalf("cursor %d: %v, want %v", cursor, got, want)
		}
		tail, _ := s.Fetch(ctx, Query{Source: "/b", Scope: ScopeExact, Cursor: cursor, MaxLines: 3, Tail: true})
		if cursor < 2990 && (len(tail.Rows) != 3 || tail.Rows[2].Seq != 2998) {
			t.Fatalf("tail after cursor %d: %v", cursor, seqsOf(tail.Rows))
		}
		scan, err := s.Scan(ctx, cursor, 40, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n := min(40, 3000-int(cursor)); len(scan) != n || (n > 0 && (scan[0].Seq != cursor+1 || scan[n-1].Seq != cursor+int64(n))) {
			t.Fatalf("Scan(%d, 40): %d rows %v", cursor, len(scan), seqsOf(scan))
		}
	}
}
