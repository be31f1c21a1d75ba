package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

func mustAttrs(t testing.TB, m map[string]string) Attributes {
	t.Helper()
	a, err := MakeAttributes(m)
	if err != nil {
		t.Fatalf("MakeAttributes(%v): %v", m, err)
	}
	return a
}

func TestAttributesEncoding(t *testing.T) {
	a := mustAttrs(t, map[string]string{"b": "2", "a": "1", "trace_id": "", "é": strings.Repeat("v", 300)})
	b, err := AttributesOf(Attribute{"trace_id", ""}, Attribute{"é", strings.Repeat("v", 300)}, Attribute{"a", "1"}, Attribute{"b", "2"})
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("the same pairs in another order encode differently: %q vs %q", a, b)
	}
	if err := a.Check(); err != nil {
		t.Fatalf("Check of a built encoding: %v", err)
	}
	if got := a.Map(); !maps.Equal(got, map[string]string{"a": "1", "b": "2", "trace_id": "", "é": strings.Repeat("v", 300)}) {
		t.Fatalf("Map = %v", got)
	}
	if v, ok := a.Get("b"); !ok || v != "2" {
		t.Fatalf(`Get("b") = %q, %v`, v, ok)
	}
	if _, ok := a.Get("c"); ok {
		t.Fatal(`Get("c") found a missing name`)
	}
	if a.Len() != 4 {
		t.Fatalf("Len = %d", a.Len())
	}
	if got := mustAttrs(t, map[string]string{"k": "v", "a": "b"}).String(); got != "a=b k=v" {
		t.Fatalf("String = %q", got)
	}
	if got := mustAttrs(t, nil); got != "" {
		t.Fatalf("no attributes encode as %q", got)
	}
}

func TestAttributesLimits(t *testing.T) {
	many := map[string]string{}
	for i := range MaxAttributes + 1 {
		many[fmt.Sprintf("a%02d", i)] = "v"
	}
	for _, tc := range []struct {
		name  string
		attrs map[string]string
		want  string
	}{
		{"too many", many, "65 attributes, limit is 64"},
		{"long name", map[string]string{strings.Repeat("n", 257): "v"}, "is 257 bytes, limit is 256"},
		{"long value", map[string]string{"v": strings.Repeat("x", 4097)}, `attribute "v" value is 4097 bytes, limit is 4096`},
		{"empty name", map[string]string{"": "v"}, "empty name"},
	} {
		_, err := MakeAttributes(tc.attrs)
		if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want invalid argument containing %q", tc.name, err, tc.want)
		}
	}
	atLimit := map[string]string{}
	for i := range MaxAttributes {
		atLimit[fmt.Sprintf("a%02d", i)] = strings.Repeat("v", MaxAttributeValueBytes)
	}
	atLimit[strings.Repeat("n", MaxAttributeNameBytes)] = "v"
	delete(atLimit, "a00")
	if _, err := MakeAttributes(atLimit); err != nil {
		t.Fatalf("attributes at every limit refused: %v", err)
	}
	if _, err := AttributesOf(Attribute{"a", "1"}, Attribute{"a", "2"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a repeated name: err = %v", err)
	}
}

// Append refuses rows whose attributes are not a canonical encoding within
// the limits, and counts them in the row size limit.
func TestAppendChecksAttributes(t *testing.T) {
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	ctx := context.Background()
	unsorted := Attributes("\x01b\x011\x01a\x012")
	if _, err := s.Append(ctx, Batch{Rows: []Row{{Key: "/k", Attributes: unsorted}}}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "out of order") {
		t.Fatalf("unsorted attributes: err = %v", err)
	}
	if _, err := s.Append(ctx, Batch{Rows: []Row{{Key: "/k", Attributes: "\x09ab"}}}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("truncated attributes: err = %v", err)
	}
	big := map[string]string{}
	for i := range 40 {
		big[fmt.Sprintf("a%02d", i)] = strings.Repeat("v", MaxAttributeValueBytes)
	}
	data := strings.Repeat("d", MaxRowBytes-100<<10)
	_, err := s.Append(ctx, Batch{Rows: []Row{{Key: "/k", Data: data, Attributes: mustAttrs(t, big)}}})
	if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "MaxRowBytes") {
		t.Fatalf("row over MaxRowBytes only with its attributes: err = %v", err)
	}
	if _, err := s.Append(ctx, Batch{Rows: []Row{{Key: "/k", Data: data}}}); err != nil {
		t.Fatalf("the same row without attributes: %v", err)
	}
	if _, err := s.Fetch(ctx, Query{Source: "/k", Scope: ScopeExact, Attributes: unsorted}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("fetch with a malformed filter: err = %v", err)
	}
}

// attrRows are rows of two keys with attributes: even rows are env=prod,
// every third has a trace id, some have none.
func attrRows(t testing.TB, n int) []Row {
	rows := make([]Row, n)
	for i := range rows {
		m := map[string]string{"app": "api"}
		if i%2 == 0 {
			m["env"] = "prod"
		} else {
			m["env"] = "dev"
		}
		if i%3 == 0 {
			m["trace_id"] = fmt.Sprintf("%032x", i)
		}
		if i%7 == 6 {
			m = nil
		}
		rows[i] = Row{Key: fmt.Sprintf("/k/%d", i%2), Data: fmt.Sprintf("line %d", i), EpochMS: t0.UnixMilli() + int64(i), Attributes: mustAttrs(t, m)}
	}
	return rows
}

func wantAttrs(t *testing.T, what string, s *Store, rows []Row) {
	t.Helper()
	all := fetchAll(t, s, Query{Source: "/k/", Scope: ScopePrefix})
	if len(all) != len(rows) {
		t.Fatalf("%s: %d rows, want %d", what, len(all), len(rows))
	}
	for i := range all {
		if all[i].Attributes != rows[i].Attributes || all[i].Data != rows[i].Data {
			t.Fatalf("%s: row %d = %q %v, want %q %v", what, i, all[i].Data, all[i].Attributes.Map(), rows[i].Data, rows[i].Attributes.Map())
		}
	}
	for _, f := range []map[string]string{
		{"env": "prod"},
		{"env": "prod", "app": "api"},
		{"trace_id": fmt.Sprintf("%032x", 3)},
		{"env": "staging"},
		{"zzz": "1"},
	} {
		filter := mustAttrs(t, f)
		var want []string
		for _, r := range rows {
			ok := true
			for k, v := range f {
				if got, has := r.Attributes.Get(k); !has || got != v {
					ok = false
				}
			}
			if ok {
				want = append(want, r.Data)
			}
		}
		for _, q := range []Query{
			{Source: "/k/", Scope: ScopePrefix, Attributes: filter},
			{Source: "/k/0", Scope: ScopeExact, Attributes: filter},
			{Source: "/k/", Scope: ScopePrefix, Attributes: filter, Tail: true},
		} {
			var got []string
			for _, r := range fetchAll(t, s, q) {
				got = append(got, r.Data)
			}
			w := want
			if q.Scope == ScopeExact {
				w = nil
				for i, r := range rows {
					if r.Key == "/k/0" && contains(want, rows[i].Data) {
						w = append(w, r.Data)
					}
				}
			}
			if strings.Join(got, ",") != strings.Join(w, ",") {
				t.Fatalf("%s: filter %v scope %d tail %v: got %v, want %v", what, f, q.Scope, q.Tail, got, w)
			}
		}
	}
	scanned, err := s.Scan(context.Background(), 0, len(rows)+10, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	for i := range scanned {
		if scanned[i].Attributes != rows[i].Attributes {
			t.Fatalf("%s: Scan row %d attributes %v, want %v", what, i, scanned[i].Attributes.Map(), rows[i].Attributes.Map())
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// Attributes survive everything a row goes through: the memtable, a
// restart (WAL replay), a power cut after the ack, a flush to parquet, a
// compaction; and the attributes filter answers the same at every stage.
func TestAttributesSurvive(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMemFS()
	s := mustOpen(t, memOpts(fs))
	rows := attrRows(t, 60)
	mustAppend(t, s, rows[:30])
	mustAppend(t, s, rows[30:])
	wantAttrs(t, "memtable", s, rows)
	s.Abandon()
	fs.Crash(nil)
	s = mustOpen(t, memOpts(fs))
	wantAttrs(t, "after a power cut", s, rows)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, memOpts(fs))
	defer func() { s.Close() }()
	wantAttrs(t, "after restart", s, rows)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	more := attrRows(t, 60)
	for i := range more {
		more[i].Data = fmt.Sprintf("line %d", 60+i)
	}
	for i := 0; i < len(more); i += 20 {
		mustAppend(t, s, more[i:i+20])
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	all := append(append([]Row(nil), rows...), more...)
	if s.Stats().Segments != 4 || s.Stats().MemtableRows != 0 {
		t.Fatalf("after four flushes: %+v", s.Stats())
	}
	wantAttrs(t, "segments", s, all)
	if err := s.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Stats().Segments != 1 {
		t.Fatalf("compaction left %d segments", s.Stats().Segments)
	}
	wantAttrs(t, "compacted", s, all)
	s.Abandon()
	fs.Crash(nil)
	s = mustOpen(t, memOpts(fs))
	wantAttrs(t, "compacted, after a power cut", s, all)
}

// A row group whose rows carry no attributes is skipped for an attributes
// filter without decoding it.
func TestAttributesPruneRowGroups(t *testing.T) {
	ctx := context.Background()
	s := mustOpen(t, memOpts(vfs.NewMemFS()))
	defer s.Close()
	plain := mkRows("/k/0", 2000, 0)
	mustAppend(t, s, plain)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tagged := mkRows("/k/0", 10, 2000)
	long := strings.Repeat("z", MaxAttributeNameBytes-1) // statistics must not be truncated below it
	for i := range tagged {
		tagged[i].Attributes = mustAttrs(t, map[string]string{"env": "prod", long: "1", "a" + long: "2"})
	}
	mustAppend(t, s, tagged)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := s.Fetch(ctx, Query{Source: "/k/0", Scope: ScopeExact, Attributes: mustAttrs(t, map[string]string{"env": "prod"})})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 10 {
		t.Fatalf("%d rows, want 10", len(res.Rows))
	}
	if res.Examined > 100 {
		t.Fatalf("examined %d rows: the segment without attributes was read", res.Examined)
	}
	for _, name := range []string{long, "a" + long} {
		res, err = s.Fetch(ctx, Query{Source: "/k/0", Scope: ScopeExact, Attributes: mustAttrs(t, map[string]string{name: map[bool]string{true: "1", false: "2"}[name == long]})})
		if err != nil || len(res.Rows) != 10 {
			t.Fatalf("filter by a %d-byte name: %d rows, %v", len(name), len(res.Rows), err)
		}
	}
	res, err = s.Fetch(ctx, Query{Source: "/k/0", Scope: ScopeExact, Attributes: mustAttrs(t, map[string]string{"Zone": "a"})})
	if err != nil || len(res.Rows) != 0 || res.Examined != 0 {
		t.Fatalf("a name outside every group's range: %d rows, examined %d, err %v", len(res.Rows), res.Examined, err)
	}
}

// A WAL record written without attributes (the format before they existed)
// still decodes, and one with attributes round-trips.
func TestWALRecordAttributes(t *testing.T) {
	old := []Row{{Key: "/k", Data: "a"}, {Key: "/k", Data: "b"}}
	b := AppendWALRecord(nil, WALRecord{First: 1, Last: 2, Rows: old})
	if flags := uint32(b[7]) << 24; flags&walAttrs != 0 {
		t.Fatal("a record without attributes has the attributes flag: older binaries could not read it")
	}
	rec, _, err := DecodeWALRecord(b)
	if err != nil || len(rec.Rows) != 2 || rec.Rows[1].Data != "b" {
		t.Fatalf("decode: %+v, %v", rec, err)
	}
	a := mustAttrs(t, map[string]string{"x": "1"})
	rows := []Row{{Key: "/k", Data: "a", Attributes: a}, {Key: "/k", Data: "b", Attributes: a}, {Key: "/k", Data: "c"}}
	rec, _, err = DecodeWALRecord(AppendWALRecord(nil, WALRecord{First: 5, Last: 7, Rows: rows}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if rec.Rows[i].Attributes != rows[i].Attributes {
			t.Fatalf("row %d: %q, want %q", i, rec.Rows[i].Attributes, rows[i].Attributes)
		}
	}
}
