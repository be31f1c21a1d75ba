package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"connectrpc.com/connect"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/storeerr"
	"github.com/finelog/finelog/store"
)

// logService implements loggingpbconnect.LogServiceHandler.
type logService struct{ s *Server }

// PushLogs appends one batch; the response is sent only after the store
// acked it, i.e. after fdatasync.
func (l *logService) PushLogs(ctx context.Context, req *connect.Request[loggingpb.PushLogsRequest]) (*connect.Response[loggingpb.PushLogsResponse], error) {
	msg := req.Msg
	// An empty push is a no-op success, unless it is a producer batch
	// whose range must still advance the producer's mark.
	if len(msg.GetEntries()) == 0 && msg.GetProducer() == "" {
		return connect.NewResponse(&loggingpb.PushLogsResponse{}), nil
	}
	st, err := l.s.store()
	if err != nil {
		return nil, err
	}
	if err := l.s.refuseIfReplica(); err != nil {
		return nil, err
	}
	c := callerFrom(ctx)
	cluster, err := l.s.stampCluster(c, msg.GetCluster())
	if err != nil {
		return nil, err
	}
	if p := msg.GetProducer(); p != "" {
		if err := l.s.checkProducer(c, p); err != nil {
			return nil, err
		}
		if err := l.s.producers.use(c.key, p, l.s.clk.Now()); err != nil {
			return nil, err
		}
	}
	rows, err := rowsFromPush(msg, cluster, l.s.clk.Now().UnixMilli())
	if err != nil {
		return nil, err
	}
	b := store.Batch{
		Rows:     rows,
		Producer: msg.GetProducer(),
		FirstSeq: msg.GetFirstSeq(),
		LastSeq:  msg.GetLastSeq(),
	}
	if l.s.cfg.Defects.AcceptOvertaking && b.Producer != "" {
		if applied, known := st.ProducerApplied(b.Producer); known && b.FirstSeq > applied+1 {
			b.FirstSeq = applied + 1
		}
	}
	ack, err := st.Append(ctx, b)
	if err != nil {
		return nil, l.s.storeError("push", err)
	}
	if err := l.s.awaitReplicas(ctx, st, ack); err != nil {
		return nil, err
	}
	if ack.Last > 0 {
		l.s.m.pushRows.Add(float64(ack.Last - ack.First + 1))
	}
	var n int
	for i := range rows {
		n += len(rows[i].Data)
	}
	l.s.m.pushBytes.Add(float64(n))
	return connect.NewResponse(&loggingpb.PushLogsResponse{
		FirstSeq:           ack.First,
		LastSeq:            ack.Last,
		ProducerAppliedSeq: ack.ProducerApplied,
	}), nil
}

// stampCluster decides the cluster of a push's rows: a JWT identity is bound
// to its cluster (it may write only that cluster's rows, and rows with no
// cluster become its); otherwise the request's cluster, else the server's.
// A cluster named by any other writer is checked like a key label, so
// what is stored is safe in a log line, a metric label and a header.
func (s *Server) stampCluster(c caller, reqCluster string) (string, error) {
	if c.jwt && !s.cfg.Defects.NoIdentityRule {
		if reqCluster != "" && reqCluster != c.cluster {
			return "", connect.NewError(connect.CodePermissionDenied,
				fmt.Errorf("identity of cluster %q may not write rows of cluster %q", c.cluster, reqCluster))
		}
		return c.cluster, nil
	}
	if reqCluster != "" {
		if err := checkClusterLabel(reqCluster); err != nil {
			return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cluster: %w", err))
		}
		return reqCluster, nil
	}
	return s.cfg.Cluster, nil
}

// FetchLogs answers through s.fetchPath: the local store, or the federation
// Router around it when a peers file is configured.
func (l *logService) FetchLogs(ctx context.Context, req *connect.Request[loggingpb.FetchLogsRequest]) (*connect.Response[loggingpb.FetchLogsResponse], error) {
	// The caller's read scope is applied here, before a read is proxied
	// or fanned out, and again by the local store.
	msg, err := scopedRead(callerFrom(ctx), req.Msg)
	if err != nil {
		return nil, err
	}
	resp, err := l.s.fetchPath.FetchLogs(readContext(ctx, req.Header()), msg)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// localReads is FetchLogs of this store alone (a federation.Fetcher).
type localReads struct{ s *Server }

// FetchLogs reads one page. With wait_ms it long-polls: when nothing
// matches yet it waits (up to the server's cap) for the store to change and
// answers as soon as a matching row arrives.
func (l localReads) FetchLogs(ctx context.Context, msg *loggingpb.FetchLogsRequest) (*loggingpb.FetchLogsResponse, error) {
	st, err := l.s.store()
	if err != nil {
		return nil, err
	}
	q, err := queryFromFetch(msg)
	if err != nil {
		return nil, err
	}
	c := callerFrom(ctx)
	if q.Cluster, err = readCluster(c, q.Cluster); err != nil {
		return nil, err
	}
	if l.s.cfg.Defects.InclusiveSince && q.SinceMS > 0 {
		q.SinceMS--
	}
	wait := min(time.Duration(msg.GetWaitMs())*time.Millisecond, l.s.cfg.MaxWait)
	var timer clock.Timer
	parked := false
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if parked {
			l.s.longPolls.give(c.key)
		}
	}()
	for {
		// Take the change signal before reading so an append between the
		// read and the wait still wakes us.
		changed := st.Changed()
		res, err := l.s.fetchOnce(ctx, c, st, q)
		if err != nil {
			return nil, err
		}
		if len(res.Rows) > 0 || wait <= 0 {
			return l.fetchResponse(res, q.Tail), nil
		}
		if !parked {
			// Past the long-poll caps a long-poll answers at once, as
			// if its wait had run out: the client asks again.
			if !l.s.longPolls.tryTake(c.key) {
				l.s.m.longPollsShed.Inc()
				return l.fetchResponse(res, q.Tail), nil
			}
			parked = true
		}
		if timer == nil {
			timer = l.s.clk.NewTimer(wait)
		}
		if l.s.onPark != nil {
			l.s.onPark()
		}
		select {
		case <-changed:
		case <-timer.C():
			return l.fetchResponse(res, q.Tail), nil
		case <-l.s.stopping:
			return l.fetchResponse(res, q.Tail), nil
		case <-ctx.Done():
			return nil, contextError(ctx.Err())
		}
	}
}

// fetchOnce runs one store read in one of the caller's read slots (a
// parked long-poll holds none).
func (s *Server) fetchOnce(ctx context.Context, c caller, st logStore, q store.Query) (store.Result, error) {
	release, err := s.readSlot(ctx, c)
	if err != nil {
		return store.Result{}, err
	}
	defer release()
	res, err := st.Fetch(ctx, q)
	if err != nil {
		return store.Result{}, s.storeError("fetch", err)
	}
	return res, nil
}

func (l localReads) fetchResponse(res store.Result, tail bool) *loggingpb.FetchLogsResponse {
	l.s.m.fetchRows.Add(float64(len(res.Rows)))
	if tail && l.s.cfg.Defects.TailNewestFirst {
		slices.Reverse(res.Rows)
	}
	return &loggingpb.FetchLogsResponse{
		Entries:         entriesFromRows(res.Rows),
		Cursor:          res.Cursor,
		MaxLinesApplied: int32(res.MaxLines),
	}
}

// GetProducerState tells a relay where to resume.
func (l *logService) GetProducerState(ctx context.Context, req *connect.Request[loggingpb.GetProducerStateRequest]) (*connect.Response[loggingpb.GetProducerStateResponse], error) {
	if req.Msg.GetProducer() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("producer is required"))
	}
	if err := l.s.checkProducer(callerFrom(ctx), req.Msg.GetProducer()); err != nil {
		return nil, err
	}
	st, err := l.s.store()
	if err != nil {
		return nil, err
	}
	seq, known := st.ProducerApplied(req.Msg.GetProducer())
	// The store refuses overtaking producer batches (store.ErrProducerGap).
	return connect.NewResponse(&loggingpb.GetProducerStateResponse{AppliedSeq: seq, Known: known, RefusesGaps: true}), nil
}

// storeError maps store errors to Connect codes a client can act on
// (storeerr holds the one mapping) and logs what the operator must see.
func (s *Server) storeError(op string, err error) error {
	ce := storeerr.ToConnect(op, err)
	if s.tier != nil && errors.Is(err, store.ErrNoSpace) {
		ce = s.tier.diskFull(ce)
	}
	switch ce.Code() {
	case connect.CodeResourceExhausted:
		s.log.Error(op+" failed: disk full", "err", err, "detail", ce.Message())
	case connect.CodeInternal:
		s.log.Error(op+" failed", "err", err)
	}
	return ce
}

func contextError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}
