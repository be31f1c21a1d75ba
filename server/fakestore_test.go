package server

import (
	"context"
	"regexp"
	"strings"
	"sync"

	"github.com/finelog/finelog/store"
)

// fakeStore is a temporary in-memory store used until the real engine
// builds. It implements only what the handler tests exercise.
type fakeStore struct {
	mu      sync.Mutex
	rows    []store.Row
	changed chan struct{}
	prod    map[string]int64
	closed  bool
}

func newFakeStore() *fakeStore {
	return &fakeStore{changed: make(chan struct{}), prod: map[string]int64{}}
}

func (f *fakeStore) Append(ctx context.Context, b store.Batch) (store.Ack, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ack store.Ack
	for _, r := range b.Rows {
		if b.Producer != "" && r.Seq <= f.prod[b.Producer] {
			continue
		}
		if b.Producer != "" {
			f.prod[b.Producer] = r.Seq
		}
		r.Seq = int64(len(f.rows) + 1)
		f.rows = append(f.rows, r)
		if ack.First == 0 {
			ack.First = r.Seq
		}
		ack.Last = r.Seq
	}
	if b.Producer != "" {
		f.prod[b.Producer] = max(f.prod[b.Producer], b.LastSeq)
		ack.ProducerApplied = f.prod[b.Producer]
	}
	if ack.Last > 0 {
		close(f.changed)
		f.changed = make(chan struct{})
	}
	return ack, nil
}

func (f *fakeStore) Fetch(ctx context.Context, q store.Query) (store.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := q.MaxLines
	if n <= 0 {
		n = store.DefaultMaxLines
	}
	var re *regexp.Regexp
	if q.Scope == store.ScopeRegex || q.Scope == store.ScopeUnspecified {
		re = regexp.MustCompile(q.Source)
	}
	var out []store.Row
	for _, r := range f.rows {
		if r.Seq <= q.Cursor {
			continue
		}
		switch q.Scope {
		case store.ScopeExact:
			if r.Key != q.Source {
				continue
			}
		case store.ScopePrefix:
			if !strings.HasPrefix(r.Key, q.Source) {
				continue
			}
		default:
			if !re.MatchString(r.Key) {
				continue
			}
		}
		if q.Cluster != "" && r.Cluster != q.Cluster {
			continue
		}
		out = append(out, r)
	}
	if q.Tail && len(out) > n {
		out = out[len(out)-n:]
	}
	if len(out) > n {
		out = out[:n]
	}
	res := store.Result{Rows: out, Cursor: q.Cursor, MaxLines: n}
	if len(out) > 0 {
		res.Cursor = out[len(out)-1].Seq
	}
	return res, nil
}

func (f *fakeStore) LastSeq() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int64(len(f.rows))
}

func (f *fakeStore) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeStore) ProducerApplied(p string) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.prod[p]
	return s, ok
}

func (f *fakeStore) Stats() store.Stats { return store.Stats{LastSeq: f.LastSeq()} }
func (f *fakeStore) Close() error       { return nil }

func useTestStore(s *Server) {
	s.open = func(store.Options) (logStore, error) { return newFakeStore(), nil }
}
