package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/store"
)

// The checkers return an error describing the first few violations, or nil.
// They never fail a test themselves, so canary tests can assert that a
// deliberately broken world IS reported.

// maxReported bounds how many offending rows one error lists.
const maxReported = 5

type problems struct {
	what string
	list []string
	n    int
}

func (p *problems) addf(format string, args ...any) {
	p.n++
	if len(p.list) < maxReported {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

func (p *problems) err() error {
	if p.n == 0 {
		return nil
	}
	msg := fmt.Sprintf("%s: %d problem(s)", p.what, p.n)
	for _, l := range p.list {
		msg += "\n    " + l
	}
	if p.n > len(p.list) {
		msg += fmt.Sprintf("\n    ... and %d more", p.n-len(p.list))
	}
	return errors.New(msg)
}

// sameRow compares everything but Seq and Cluster (the target stamps the
// source's cluster on rows that carry none).
func sameRow(a, b store.Row) bool {
	return a.Key == b.Key && a.Source == b.Source && a.Data == b.Data && a.EpochMS == b.EpochMS &&
		a.AttemptID == b.AttemptID && a.Level == b.Level
}

// denseRows checks seqs are consecutive and increasing.
func denseRows(p *problems, rows []store.Row) {
	for i := 1; i < len(rows); i++ {
		if rows[i].Seq != rows[i-1].Seq+1 {
			p.addf("seq %d follows seq %d (seqs must be dense and increasing)", rows[i].Seq, rows[i-1].Seq)
		}
	}
}

// CheckSourceStore is property 4 on the source: after a crash every acked
// row is readable with its acked seq, seqs are dense, and every visible row
// is exactly a row some Append submitted (no torn or invented row). Rows
// whose append failed may or may not have survived; the ones that did are
// adopted as acked from here on.
func (w *World) CheckSourceStore() error {
	p := &problems{what: "store east after crash"}
	s := w.Source.Store
	rows, err := scanAll(w.ctx, s)
	if err != nil {
		return fmt.Errorf("store east: scan: %w", err)
	}
	denseRows(p, rows)
	st := s.Stats()
	if floor := st.FirstSeq - 1; st.FirstSeq > 0 && floor > w.sourceFloor && floor <= w.failedRetainTop {
		// A Retain that returned an error wrote its floor after all (see
		// failedRetainTop): retention's deletion stands.
		w.Trace.Addf("  east: a failed Retain's floor %d took effect (was %d)", floor, w.sourceFloor)
		w.Coverage.FailedRetainFloors++
		w.Coverage.RetainedRows += floor - w.sourceFloor
		w.sourceFloor = floor
	}
	w.failedRetainTop = 0
	// The newest row must be visible unless retention deleted it.
	if len(rows) > 0 && rows[len(rows)-1].Seq != st.LastSeq && st.LastSeq > w.sourceFloor {
		p.addf("last visible seq %d but LastSeq %d", rows[len(rows)-1].Seq, st.LastSeq)
	}
	present := map[string]int64{}
	for _, r := range rows {
		orig, ok := w.rows[r.Data]
		switch {
		case !ok:
			p.addf("seq %d: row %q was never appended (partial or invented row)", r.Seq, trim(r.Data))
			continue
		case !sameRow(orig, r) || orig.Cluster != r.Cluster:
			p.addf("seq %d: row differs from what was appended: got %+v want %+v", r.Seq, r, orig)
		}
		if prev, dup := present[r.Data]; dup {
			p.addf("row %q visible twice (seqs %d and %d)", trim(r.Data), prev, r.Seq)
		}
		present[r.Data] = r.Seq
		if seq, ok := w.acked[r.Data]; ok && seq != r.Seq {
			p.addf("row %q acked as seq %d but reads back as seq %d", trim(r.Data), seq, r.Seq)
		}
	}
	for _, d := range w.ackedList {
		seq := w.acked[d]
		if seq > st.LastSeq {
			p.addf("acked seq %d (%q) is past LastSeq %d after the crash", seq, trim(d), st.LastSeq)
			continue
		}
		// At or below the floor is retention's business; the relay's
		// no-loss property covers whether it was forwarded first.
		if seq > w.sourceFloor {
			if _, ok := present[d]; !ok {
				p.addf("acked row seq %d (%q) is missing after the crash (retention floor %d)", seq, trim(d), w.sourceFloor)
			}
		}
	}
	if len(rows) > 0 {
		// A reader starting before the oldest row must get the oldest
		// rows, not an empty page.
		got, err := s.Scan(w.ctx, 0, 3, 1<<20)
		if err != nil || len(got) == 0 || got[0].Seq != rows[0].Seq {
			var first int64
			if len(got) > 0 {
				first = got[0].Seq
			}
			p.addf("Scan(after=0, maxRows=3) returned %d rows starting at seq %d (err %v); the oldest row is seq %d", len(got), first, err, rows[0].Seq)
		}
	}
	// Adopt surviving rows of failed appends; the rest are gone for good.
	for _, r := range rows {
		if w.maybe[r.Data] {
			w.acked[r.Data] = r.Seq
			w.ackedList = append(w.ackedList, r.Data)
		}
	}
	clear(w.maybe)
	return p.err()
}

// CheckTargetStore is property 4 on the target: rows the target acked
// (before the crash: snapshot) come back identical, seqs are dense from 1,
// and every row is one the source produced.
func (w *World) CheckTargetStore(snapshot []store.Row) error {
	p := &problems{what: "store global after crash"}
	rows, err := scanAll(w.ctx, w.Target.Store)
	if err != nil {
		return fmt.Errorf("store global: scan: %w", err)
	}
	denseRows(p, rows)
	if len(rows) > 0 && rows[0].Seq != 1 {
		p.addf("first seq is %d, want 1 (the target keeps everything)", rows[0].Seq)
	}
	if last := w.Target.Store.LastSeq(); last < w.targetAcked {
		p.addf("LastSeq %d after the crash, but seq %d was acked", last, w.targetAcked)
	}
	for _, r := range rows {
		orig, ok := w.rows[r.Data]
		if !ok {
			p.addf("seq %d: row %q was never produced (partial or invented row)", r.Seq, trim(r.Data))
		} else if !sameRow(orig, r) {
			p.addf("seq %d: row differs from the source's: got %+v want %+v", r.Seq, r, orig)
		}
	}
	for i, want := range snapshot {
		if i >= len(rows) || rows[i].Seq != want.Seq || rows[i] != want {
			p.addf("acked target seq %d (%q) did not survive the crash", want.Seq, trim(want.Data))
		}
	}
	return p.err()
}

// DurableWatermark reads the relay's watermark file from the source disk:
// what a restarted relay would resume from.
func (w *World) DurableWatermark() (int64, error) {
	wm, _, err := w.durableWatermark()
	return wm, err
}

// durableWatermark also says whether the file exists.
func (w *World) durableWatermark() (int64, bool, error) {
	data, err := vfs.ReadFile(w.Source.FS, statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var wm struct {
		Cursor int64 `json:"cursor"`
	}
	if err := json.Unmarshal(data, &wm); err != nil {
		return 0, false, fmt.Errorf("watermark file: %w", err)
	}
	return wm.Cursor, true, nil
}

// targetCounts counts target rows by Data. The end-of-run checks share one
// scan (reads of many small segments dominate the harness's run time).
func (w *World) targetCounts() (map[string]int, error) {
	if w.counts != nil {
		return w.counts, nil
	}
	rows, err := scanAll(w.ctx, w.Target.Store)
	if err != nil {
		return nil, err
	}
	c := make(map[string]int, len(rows))
	for _, r := range rows {
		c[r.Data]++
	}
	return c, nil
}

// forwardable reports whether the relay must deliver a row (the loop guard
// keeps rows of other clusters home).
func forwardable(r store.Row) bool { return r.Cluster == "" || r.Cluster == SourceCluster }

// CheckWatermark is property 3: every acked source row at or below the
// relay's durable watermark is held by the target.
func (w *World) CheckWatermark() error {
	if w.Target.Store == nil {
		return nil
	}
	p := &problems{what: "relay watermark ahead of the target"}
	wm, err := w.DurableWatermark()
	if err != nil {
		return fmt.Errorf("relay watermark: %w", err)
	}
	counts, err := w.targetCounts()
	if err != nil {
		return fmt.Errorf("store global: scan: %w", err)
	}
	for _, d := range w.ackedList {
		seq := w.acked[d]
		if seq <= wm && forwardable(w.rows[d]) && counts[d] == 0 && !w.reportedLost(seq) && !w.beforeRelay(seq) {
			p.addf("watermark %d covers source seq %d (%q) but the target does not hold it", wm, seq, trim(d))
		}
	}
	if !w.cfg.NonIdempotent {
		if applied, _ := w.Target.Store.ProducerApplied(Producer); applied < wm && p.n > 0 {
			p.addf("target's applied mark for %s is %d, below the watermark %d", Producer, applied, wm)
		}
	}
	return p.err()
}

// CheckNoLoss is property 1: every row the source acked (and every row it
// still holds) is in the target, unless another cluster owns it. With
// relays enabled by an action it is the relay-completeness property: every
// row acked after the relay was enabled (seq above enabledAt) is.
func (w *World) CheckNoLoss() error {
	p := &problems{what: "acked rows missing from the target"}
	if w.cfg.RelayByAction {
		p.what = fmt.Sprintf("rows acked after the relay was enabled (after seq %d) missing from the target", w.Source.enabledAt)
	}
	counts, err := w.targetCounts()
	if err != nil {
		return fmt.Errorf("store global: scan: %w", err)
	}
	for _, d := range w.ackedList {
		r := w.rows[d]
		if w.beforeRelay(w.acked[d]) && counts[d] == 0 {
			continue
		}
		switch {
		case forwardable(r) && counts[d] == 0 && w.reportedLost(w.acked[d]):
			// Deleted past the pin cap, and reported: not silent loss.
		case forwardable(r) && counts[d] == 0:
			p.addf("source seq %d (%q) never reached the target", w.acked[d], trim(d))
		case !forwardable(r) && counts[d] > 0:
			p.addf("source seq %d (%q) of cluster %q was forwarded despite the loop guard", w.acked[d], trim(d), r.Cluster)
		}
	}
	return p.err()
}

// beforeRelay says whether source seq was acked before the relay was
// enabled: the relay need not forward it.
func (w *World) beforeRelay(seq int64) bool {
	return w.cfg.RelayByAction && seq <= w.Source.enabledAt
}

// CheckIdentity is the identity property: every row in the target carries
// the cluster of the identity that wrote it. A node whose relay holds
// another cluster's key (an impostor) must not get a row of its own
// cluster in.
func (w *World) CheckIdentity() error {
	if w.Target.Store == nil {
		return nil
	}
	rows, err := scanAll(w.ctx, w.Target.Store)
	if err != nil {
		return fmt.Errorf("store global: scan: %w", err)
	}
	p := &problems{what: "rows in the target under another cluster's identity"}
	for _, r := range rows {
		o := w.origin[r.Data]
		if o == nil {
			continue // CheckTargetStore reports rows nobody produced
		}
		if id := o.spec.key(); r.Cluster != id {
			p.addf("seq %d (%q) from node %s carries cluster %q but was written with the key of cluster %q", r.Seq, trim(r.Data), o.Name, r.Cluster, id)
		}
	}
	return p.err()
}

// CheckLossReported: when retention deleted rows the relay had not
// forwarded (pin cap exceeded) and they never reached the target, the relay
// must have noticed and counted the gap (finelog_relay_source_gap_rows_total):
// loss is allowed past the cap, silent loss is not.
func (w *World) CheckLossReported() error {
	counts, err := w.targetCounts()
	if err != nil {
		return fmt.Errorf("store global: scan: %w", err)
	}
	missing := 0
	for _, d := range w.ackedList {
		seq := w.acked[d]
		if forwardable(w.rows[d]) && counts[d] == 0 && w.reportedLost(seq) {
			missing++
		}
	}
	if gap := w.Relay.Status().SourceGap; missing > 0 && gap == 0 {
		return fmt.Errorf("retention deleted %d unforwarded rows (reported by the store) but the relay's source-gap count is 0", missing)
	}
	return nil
}

// reportedLost says whether the source store reported deleting seq while
// it was pinned.
func (w *World) reportedLost(seq int64) bool {
	for _, r := range w.pinnedLoss {
		if seq >= r[0] && seq <= r[1] {
			return true
		}
	}
	return false
}

// CheckDuplicates is property 2: with idempotent batches no row appears
// twice in the target; without them the extra copies fit in one batch per
// injected failure that can make the relay re-send rows the target holds.
func (w *World) CheckDuplicates() error {
	counts, err := w.targetCounts()
	if err != nil {
		return fmt.Errorf("store global: scan: %w", err)
	}
	extra := 0
	p := &problems{what: "duplicate rows in the target"}
	for _, d := range w.ackedList {
		if c := counts[d]; c > 1 {
			extra += c - 1
			if !w.cfg.NonIdempotent {
				p.addf("source seq %d (%q) is in the target %d times", w.acked[d], trim(d), c)
			}
		}
	}
	if w.cfg.NonIdempotent {
		failures := w.InjectedFailures()
		if budget := failures * w.cfg.BatchRows; extra > budget {
			p.addf("%d extra copies, but %d injected failures allow at most %d (one batch of %d rows each)", extra, failures, budget, w.cfg.BatchRows)
		}
	}
	return p.err()
}

// InjectedFailures counts failures after which a relay may legitimately
// re-send a batch the target already applied.
func (w *World) InjectedFailures() int {
	return w.Net.AmbiguousFailures + w.SourceCrashes + w.Source.Faults
}

// CheckNoAuthRejections is the second half of property 5: a relay whose
// clock is skewed within the target's leeway is never refused.
func (w *World) CheckNoAuthRejections() error {
	if w.Net.AuthRejections > 0 {
		return fmt.Errorf("relay refused %d time(s) by the target's auth with clock skew meant to be within the %v leeway", w.Net.AuthRejections, w.cfg.Leeway)
	}
	return nil
}

// CheckAll runs the end-of-run properties and returns every violation,
// including the ones noticed while the schedule ran.
func (w *World) CheckAll() error {
	w.Coverage.MaxFileWrites = max(w.Source.maxWrites, w.Target.maxWrites)
	errs := append([]error(nil), w.violations...)
	if w.Source.Store == nil || w.Target.Store == nil {
		return errors.Join(errs...)
	}
	counts, err := w.targetCounts()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("store global: scan: %w", err))...)
	}
	w.counts = counts
	defer func() { w.counts = nil }()
	for _, f := range []func() error{w.CheckNoLoss, w.CheckDuplicates, w.CheckWatermark, w.CheckOvertaking, w.CheckIdentity, w.CheckHostile} {
		if err := f(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func trim(s string) string {
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}
