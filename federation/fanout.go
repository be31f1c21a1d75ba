package federation

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/store"
)

// answer is one cluster's part of a fan-out.
type answer struct {
	status  *loggingpb.ClusterStatus
	entries []*loggingpb.LogEntry
	// fresh: the owner answered (the rows are its own, the cursor moves).
	fresh bool
	// copied: answered from this store's relayed copy (stale); its seqs
	// and cursor are positions in the copy.
	copied bool
	// fatal: the request itself is bad (the local store refused it as
	// invalid), so the whole fan-out fails with it.
	fatal error
}

// fanOut asks this store and every peer with the same filters, each from
// its own cursor (cluster_cursors), and merges the answers. A cluster that
// fails is reported in its ClusterStatus, never by failing the request.
//
// With wait_ms, everyone is first asked without waiting; only if no
// cluster has a row are the ones that answered asked again with the wait,
// and the first to return rows ends the others' waits (their cursors do
// not move, so nothing is skipped).
func (r *Router) fanOut(ctx context.Context, set *peerSet, req *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
	if req.GetUntilCursor() != 0 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New(
			`until_cursor is a seq of one cluster; a fan-out (cluster "*") has one seq space per cluster: page with cluster_cursors`))
	}
	names := append([]string{r.o.Cluster}, set.cfg.names...)
	answers := r.askAll(ctx, set, req, names, 0, nil)
	for _, a := range answers {
		if a.fatal != nil {
			return nil, a.fatal
		}
	}
	if req.GetWaitMs() > 0 && ctx.Err() == nil && !anyRows(answers) {
		again := make([]string, 0, len(names))
		for i, a := range answers {
			if a.fresh {
				again = append(again, names[i])
			}
		}
		pctx, cancel := context.WithCancel(ctx)
		waited := r.askAll(pctx, set, req, again, req.GetWaitMs(), cancel)
		cancel()
		j := 0
		for i := range answers {
			if !answers[i].fresh {
				continue
			}
			w := waited[j]
			j++
			if w.fatal != nil {
				return nil, w.fatal
			}
			// A wait this fan-out ended (another cluster had rows) is an
			// empty answer, not a failure: the first answer stands.
			if w.status.Code == connect.CodeCanceled.String() && ctx.Err() == nil {
				continue
			}
			answers[i] = w
		}
	}
	if ctx.Err() != nil {
		return nil, contextError(ctx.Err())
	}
	return r.merge(req, answers), nil
}

func anyRows(answers []answer) bool {
	for _, a := range answers {
		if len(a.entries) > 0 {
			return true
		}
	}
	return false
}

// askAll asks each named cluster at once, at most MaxInflight at a time.
// onRows, when set, is called as soon as an answer carries rows.
func (r *Router) askAll(ctx context.Context, set *peerSet, req *loggingpb.FetchLogsRequest, names []string, waitMS int32, onRows func()) []answer {
	out := make([]answer, len(names))
	sem := make(chan struct{}, r.o.MaxInflight)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				out[i] = failed(name, req.GetClusterCursors()[name], connect.NewError(connect.CodeCanceled, fmt.Errorf("cluster %s: not asked: %w", name, ctx.Err())))
				return
			}
			defer func() { <-sem }()
			out[i] = r.ask(ctx, set, req, name, waitMS)
			if onRows != nil && len(out[i].entries) > 0 {
				onRows()
			}
		}()
	}
	wg.Wait()
	return out
}

// ask is one cluster's read in a fan-out.
func (r *Router) ask(ctx context.Context, set *peerSet, req *loggingpb.FetchLogsRequest, name string, waitMS int32) answer {
	sub := proto.Clone(req).(*loggingpb.FetchLogsRequest)
	sub.Cluster = name
	sub.Cursor = req.GetClusterCursors()[name]
	sub.ClusterCursors = nil
	sub.WaitMs = waitMS
	if name == r.o.Cluster {
		resp, err := r.o.Local.FetchLogs(ctx, sub)
		if err != nil {
			if connect.CodeOf(err) == connect.CodeInvalidArgument {
				return answer{fatal: err}
			}
			return failed(name, sub.GetCursor(), connect.NewError(connect.CodeOf(err), fmt.Errorf("local store (%s): %s", name, message(err))))
		}
		return ok(name, resp)
	}
	p := set.cfg.byName[name]
	resp, err := r.callPeer(ctx, set, p, sub)
	if err == nil {
		// The merge looks at every row.
		err = decodeAnswer(r.o.Cluster, p, resp)
	}
	if err == nil {
		return ok(name, resp)
	}
	if req.GetWaitMs() == 0 {
		if stale, served := r.fallback(ctx, p, sub, err); served {
			return answer{status: stale.Clusters[0], entries: stale.GetEntries(), copied: true}
		}
	}
	return failed(name, sub.GetCursor(), err)
}

func ok(name string, resp *loggingpb.FetchLogsResponse) answer {
	return answer{
		status:  &loggingpb.ClusterStatus{Cluster: name, Cursor: resp.GetCursor()},
		entries: resp.GetEntries(),
		fresh:   true,
	}
}

// failed is a cluster that did not answer; its cursor stays where the
// caller asked it to start.
func failed(name string, cursor int64, err error) answer {
	return answer{status: &loggingpb.ClusterStatus{
		Cluster: name,
		Code:    connect.CodeOf(err).String(),
		Error:   message(err),
		Cursor:  cursor,
	}}
}

// merge interleaves the clusters' rows, each cluster's in its seq order,
// always taking the head with the smallest (epoch_ms, cluster, seq), and
// cuts the result to max_lines: the first rows, or with tail the last.
// Because each cluster's rows are taken in order, what one cluster
// contributes is a prefix (a suffix, for tail) of what it returned, so its
// cursor can move exactly past what the caller saw and paging neither
// skips nor repeats a row.
func (r *Router) merge(req *loggingpb.FetchLogsRequest, answers []answer) *loggingpb.FetchLogsResponse {
	limit := int(req.GetMaxLines())
	if limit <= 0 {
		limit = store.DefaultMaxLines
	}
	limit = min(limit, store.MaxMaxLines)
	total := 0
	for _, a := range answers {
		total += len(a.entries)
	}
	heads := make([]int, len(answers))
	order := make([]*loggingpb.LogEntry, 0, total)
	from := make([]int, 0, total) // answer index of each merged row
	for {
		best := -1
		for i, a := range answers {
			if heads[i] < len(a.entries) && (best < 0 || before(a.entries[heads[i]], answers[best].entries[heads[best]])) {
				best = i
			}
		}
		if best < 0 || (!req.GetTail() && len(order) == limit) {
			break
		}
		order = append(order, answers[best].entries[heads[best]])
		from = append(from, best)
		heads[best]++
	}
	if req.GetTail() && len(order) > limit {
		order = order[len(order)-limit:]
		from = from[len(from)-limit:]
	}
	resp := &loggingpb.FetchLogsResponse{
		Entries:         order,
		Cursor:          req.GetCursor(),
		MaxLinesApplied: int32(limit),
	}
	partial := false
	for i, a := range answers {
		st := a.status
		if (a.fresh || a.copied) && !req.GetTail() {
			// Past the last row the caller got; where it started if none.
			start := req.GetClusterCursors()[st.Cluster]
			if a.copied {
				start = copyCursor(copyPosition(start))
			}
			st.Cursor = start
			for k := len(from) - 1; k >= 0; k-- {
				if from[k] == i {
					st.Cursor = order[k].GetSeq()
					if a.copied {
						st.Cursor = copyCursor(st.Cursor)
					}
					break
				}
			}
		}
		// With tail, a cluster's cursor is the newest row it has that
		// matches (its answer's cursor): the caller has the newest rows
		// across all clusters, and following continues from there.
		partial = partial || !a.fresh
		resp.Clusters = append(resp.Clusters, st)
	}
	if partial {
		r.m.partial.Inc()
	}
	return resp
}

// before orders rows by (epoch_ms, cluster, seq).
func before(a, b *loggingpb.LogEntry) bool {
	if x, y := a.GetTimestamp().GetEpochMs(), b.GetTimestamp().GetEpochMs(); x != y {
		return x < y
	}
	if a.GetCluster() != b.GetCluster() {
		return a.GetCluster() < b.GetCluster()
	}
	return a.GetSeq() < b.GetSeq()
}

func contextError(err error) error {
	if err == context.DeadlineExceeded {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}
