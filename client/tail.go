package client

import (
	"context"
	"iter"

	"google.golang.org/protobuf/proto"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/internal/clock"
)

// DefaultTailWaitMS is how long each Tail fetch waits on the server for a
// new row before asking again.
const DefaultTailWaitMS = 10_000

// Tail follows req: it yields every matching entry in seq order, starting
// from req.Cursor (or, when req.Tail is set, from the newest req.MaxLines
// rows), and then waits on the server (long-poll) for more. It ends when ctx
// is done (without an error) or on an error that repeating cannot fix,
// which it yields last. A restarting server is waited out with backoff.
func (c *Client) Tail(ctx context.Context, req *loggingpb.FetchLogsRequest) iter.Seq2[*loggingpb.LogEntry, error] {
	return func(yield func(*loggingpb.LogEntry, error) bool) {
		q := proto.Clone(req).(*loggingpb.FetchLogsRequest)
		if q.WaitMs <= 0 {
			q.WaitMs = DefaultTailWaitMS
		}
		failures := 0
		for ctx.Err() == nil {
			resp, err := c.Fetch(ctx, q)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				if !Retryable(err) {
					yield(nil, err)
					return
				}
				if clock.Sleep(ctx, c.o.clk, c.backoff(min(failures, 16))) != nil {
					return
				}
				failures++
				continue
			}
			failures = 0
			for _, e := range resp.GetEntries() {
				if !yield(e, nil) {
					return
				}
			}
			// Only the first page is "the newest rows"; after it we follow
			// forward from the cursor.
			q.Tail = false
			q.Cursor = resp.GetCursor()
			if len(resp.GetClusters()) > 0 {
				// A fan-out (cluster "*") follows each cluster from its own cursor.
				q.ClusterCursors = make(map[string]int64, len(resp.GetClusters()))
				for _, st := range resp.GetClusters() {
					q.ClusterCursors[st.GetCluster()] = st.GetCursor()
				}
			}
		}
	}
}
