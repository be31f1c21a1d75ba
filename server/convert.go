package server

import (
	"fmt"
	"strconv"
	"strings"

	"connectrpc.com/connect"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/store"
)

// attemptFromKey parses the attempt id from a trailing ":<int>" of a key
// ("/user/job/0:3" → 3): the text after the last colon, when it is an int32;
// otherwise 0. This is the existing finelog server's rule.
func attemptFromKey(key string) int32 {
	i := strings.LastIndexByte(key, ':')
	if i < 0 || i == len(key)-1 {
		return 0
	}
	n, err := strconv.ParseInt(key[i+1:], 10, 32)
	if err != nil {
		return 0
	}
	return int32(n)
}

// rowsFromPush turns a PushLogsRequest into store rows. cluster is the
// cluster to stamp (already resolved from the request, the identity and the
// server default); nowMS fills missing timestamps. The existing server stores
// epoch 0 for an entry without a timestamp; finelog stamps the arrival time
// instead, which is what a reader of the row wants (docs/operations.md, wire
// compatibility).
func rowsFromPush(req *loggingpb.PushLogsRequest, cluster string, nowMS int64) ([]store.Row, error) {
	entries := req.GetEntries()
	rows := make([]store.Row, len(entries))
	reqKey := req.GetKey()
	// Rows live in the memtable until flushed. Every decoded string is its
	// own allocation, so a run of equal sources (or entry keys) shares the
	// first one's: the duplicates die young instead of being retained.
	var prevSource, prevKey string
	for i, e := range entries {
		key := reqKey
		if key == "" {
			key = e.GetKey()
			if key == prevKey {
				key = prevKey
			}
			prevKey = key
		}
		if key == "" {
			return nil, connect.NewError(connect.CodeInvalidArgument,
				fmt.Errorf("entry %d has no key: set the request key, or every entry's key", i))
		}
		ts := e.GetTimestamp().GetEpochMs()
		if ts == 0 {
			ts = nowMS
		}
		attempt := e.GetAttemptId()
		if attempt == 0 {
			attempt = attemptFromKey(key)
		}
		source := e.GetSource()
		if source == prevSource {
			source = prevSource
		}
		prevSource = source
		attrs, err := store.MakeAttributes(e.GetAttributes())
		if err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("entry %d: %w", i, err))
		}
		rows[i] = store.Row{
			Seq:       e.GetSeq(),
			Key:       key,
			Source:    source,
			Data:      e.GetData(),
			EpochMS:   ts,
			AttemptID: attempt,
			Level:     int32(e.GetLevel()),
			Cluster:   cluster,

			Attributes: attrs,
		}
	}
	return rows, nil
}

// queryFromFetch maps a FetchLogsRequest to a store query.
func queryFromFetch(req *loggingpb.FetchLogsRequest) (store.Query, error) {
	scope := store.Scope(req.GetMatchScope())
	if scope == store.ScopePrefix && req.GetSource() == "" {
		return store.Query{}, connect.NewError(connect.CodeInvalidArgument,
			fmt.Errorf("source is required for a PREFIX fetch"))
	}
	attrs, err := store.MakeAttributes(req.GetAttributes())
	if err != nil {
		return store.Query{}, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("attributes filter: %w", err))
	}
	return store.Query{
		Source:      req.GetSource(),
		Scope:       scope,
		SinceMS:     req.GetSinceMs(),
		Cursor:      req.GetCursor(),
		Substring:   req.GetSubstring(),
		MaxLines:    int(req.GetMaxLines()),
		Tail:        req.GetTail(),
		MinLevel:    req.GetMinLevel(),
		Cluster:     req.GetCluster(),
		UntilCursor: req.GetUntilCursor(),
		Regex:       req.GetRegex(),
		Attributes:  attrs,
	}, nil
}

// entriesFromRows builds the response entries. Every entry carries its key
// (required for PREFIX and REGEX reads; the existing server leaves it empty
// for EXACT reads, where the caller already knows it, and filling it there
// too is harmless to its clients), its seq and its cluster; attempt_id is
// derived from the key as the existing server does.
func entriesFromRows(rows []store.Row) []*loggingpb.LogEntry {
	// One backing array for all entries and timestamps: a page is up to
	// MaxMaxLines rows and this is the hot path of every tail.
	entries := make([]loggingpb.LogEntry, len(rows))
	stamps := make([]loggingpb.Timestamp, len(rows))
	out := make([]*loggingpb.LogEntry, len(rows))
	// Rows come key by key (a tail is one key): parse each run's attempt once.
	var prevKey string
	var attempt int32
	for i := range rows {
		r := &rows[i]
		stamps[i].EpochMs = r.EpochMS
		e := &entries[i]
		e.Timestamp = &stamps[i]
		e.Source = r.Source
		e.Data = r.Data
		if i == 0 || r.Key != prevKey {
			prevKey, attempt = r.Key, attemptFromKey(r.Key)
		}
		e.AttemptId = attempt
		e.Level = loggingpb.LogLevel(r.Level)
		e.Key = r.Key
		e.Seq = r.Seq
		e.Cluster = r.Cluster
		e.Attributes = r.Attributes.Map()
		out[i] = e
	}
	return out
}
