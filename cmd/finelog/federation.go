package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// fanOut is the --cluster value that reads every cluster the server knows.
const fanOut = "*"

// clusterReporter writes one stderr line when a cluster of a fan-out (or
// a proxied read answered from a stale copy) fails, starts failing
// differently, or answers again, so a paging fetch or a follow does not
// repeat the same line on every page.
type clusterReporter struct {
	w    io.Writer
	last map[string]string // cluster -> code ("" answering, "stale/<code>")
}

func newClusterReporter(w io.Writer) *clusterReporter {
	return &clusterReporter{w: w, last: map[string]string{}}
}

func (r *clusterReporter) report(resp *loggingpb.FetchLogsResponse) {
	for _, st := range resp.GetClusters() {
		name, state := st.GetCluster(), st.GetCode()
		if st.GetStale() {
			state = "stale/" + state
		}
		prev, seen := r.last[name]
		r.last[name] = state
		if state == prev || (!seen && state == "") {
			continue
		}
		switch {
		case st.GetStale():
			fmt.Fprintf(r.w, "finelog: cluster %s: stale rows from a relayed copy (%s: %s)\n", name, st.GetCode(), st.GetError())
		case state != "":
			fmt.Fprintf(r.w, "finelog: cluster %s: not included: %s: %s\n", name, st.GetCode(), st.GetError())
		default:
			fmt.Fprintf(r.w, "finelog: cluster %s: answering again\n", name)
		}
	}
}

// clusterCursors is where each cluster of a fan-out continues from.
func clusterCursors(resp *loggingpb.FetchLogsResponse) map[string]int64 {
	m := make(map[string]int64, len(resp.GetClusters()))
	for _, st := range resp.GetClusters() {
		m[st.GetCluster()] = st.GetCursor()
	}
	return m
}

// followFanOut is `finelog tail -f --cluster '*'`: the newest rows across
// all clusters, then every new row of any cluster as it arrives, with a
// stderr line when a cluster stops or starts answering. Retryable errors
// of the server itself are waited out with backoff.
func followFanOut(ctx context.Context, c *client.Client, req *loggingpb.FetchLogsRequest, out *entryPrinter, stderr io.Writer, friendly func(error) error) error {
	q := proto.Clone(req).(*loggingpb.FetchLogsRequest)
	q.WaitMs = client.DefaultTailWaitMS
	rep := newClusterReporter(stderr)
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		resp, err := c.Fetch(ctx, q)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !client.Retryable(err) {
				return friendly(err)
			}
			fmt.Fprintf(stderr, "finelog: %s; retrying in %v\n", connect.CodeOf(err), delay)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(delay):
			}
			delay = min(2*delay, 5*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		rep.report(resp)
		for _, e := range resp.GetEntries() {
			if err := out.print(e); err != nil {
				return err
			}
		}
		if err := out.flush(); err != nil {
			return err
		}
		q.Tail = false
		q.ClusterCursors = clusterCursors(resp)
	}
	return nil
}
