package store

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

func TestMain(m *testing.M) {
	flag.Parse()
	// Property tests run 100 cases by default; under -race or -short 25 keep
	// the package within CI's budget (the full count runs without -race).
	if f := flag.Lookup("rapid.checks"); f != nil && (raceEnabled || testing.Short()) && f.Value.String() == "100" {
		f.Value.Set("25")
	}
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)

func memOpts(fs vfs.FS) Options {
	return Options{FS: fs, Dir: "/data", Clock: clock.NewFake(t0)}
}

func mustOpen(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func mkRows(key string, n int, from int) []Row {
	rows := make([]Row, n)
	for i := range rows {
		rows[i] = Row{Key: key, Source: "stdout", Data: fmt.Sprintf("%s line %d", key, from+i), EpochMS: t0.UnixMilli() + int64(from+i), Level: LevelInfo}
	}
	return rows
}

func mustAppend(t testing.TB, s *Store, rows []Row) Ack {
	t.Helper()
	ack, err := s.Append(context.Background(), Batch{Rows: rows})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return ack
}

func fetchAll(t testing.TB, s *Store, q Query) []Row {
	t.Helper()
	q.MaxLines = MaxMaxLines
	var out []Row
	for {
		res, err := s.Fetch(context.Background(), q)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		out = append(out, res.Rows...)
		if len(res.Rows) < res.MaxLines {
			return out
		}
		q.Cursor = res.Cursor
	}
}

func TestAppendFetchReopen(t *testing.T) {
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	ack := mustAppend(t, s, mkRows("/a", 3, 0))
	if ack.First != 1 || ack.Last != 3 {
		t.Fatalf("ack = %+v, want seqs 1..3", ack)
	}
	ack = mustAppend(t, s, mkRows("/b", 2, 0))
	if ack.First != 4 || ack.Last != 5 {
		t.Fatalf("ack = %+v, want seqs 4..5", ack)
	}
	got := fetchAll(t, s, Query{Source: "/a", Scope: ScopeExact})
	if len(got) != 3 || got[0].Seq != 1 || got[2].Data != "/a line 2" {
		t.Fatalf("fetch /a = %+v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = mustOpen(t, memOpts(fs))
	defer s.Close()
	if s.LastSeq() != 5 {
		t.Fatalf("LastSeq after reopen = %d, want 5", s.LastSeq())
	}
	got = fetchAll(t, s, Query{Source: "/", Scope: ScopePrefix})
	if len(got) != 5 {
		t.Fatalf("fetch all after reopen: %d rows, want 5", len(got))
	}
	ack = mustAppend(t, s, mkRows("/a", 1, 3))
	if ack.First != 6 {
		t.Fatalf("seq after reopen = %d, want 6", ack.First)
	}
}

// Two stores on one data dir would hand out the same seqs: the second Open
// fails at once, naming the dir and the holder, and works once the first is
// closed or has died (Abandon, then a crash).
func TestSecondOpenOfDataDirRefused(t *testing.T) {
	fs := vfs.NewMemFS()
	opts := memOpts(fs)
	s := mustOpen(t, opts)
	mustAppend(t, s, mkRows("/k", 2, 0))
	_, err := Open(opts)
	if !errors.Is(err, ErrDirInUse) {
		t.Fatalf("second Open = %v, want ErrDirInUse", err)
	}
	if want := fmt.Sprintf("data dir /data is in use by another finelogd (pid %d)", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Fatalf("second Open error %q does not say %q", err, want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, opts)
	s.Abandon()
	fs.Crash(nil)
	s = mustOpen(t, opts)
	defer s.Close()
	if got := s.LastSeq(); got != 2 {
		t.Fatalf("last seq after reopen = %d", got)
	}
}
