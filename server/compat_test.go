package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/client"
	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// These tests speak the wire as a client of the existing finelog server
// does: binary protobuf encoded by hand with the existing schema's field
// numbers, so they fail if ours drift from it.

// wireEntry is a LogEntry decoded by field number.
type wireEntry struct {
	key, data string
	epochMS   int64
	seq       int64 // field 7
}

// rawCall posts a binary-protobuf Connect unary request to path and
// returns the HTTP status and body.
func rawCall(t *testing.T, base, path string, body []byte, header http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/proto")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// fetchReq encodes a FetchLogsRequest: source=1, cursor=3, max_lines=5,
// tail=6, min_level=7, match_scope=8, until_cursor=10, regex=11.
type fetchReq struct {
	source, minLevel, regex string
	scope                   loggingpb.MatchScope
	cursor, until           int64
	maxLines                int32
	tail                    bool
}

func (f fetchReq) encode() []byte {
	var b []byte
	if f.source != "" {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendString(b, f.source)
	}
	if f.cursor != 0 {
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(f.cursor))
	}
	if f.maxLines != 0 {
		b = protowire.AppendTag(b, 5, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(f.maxLines))
	}
	if f.tail {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	if f.minLevel != "" {
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendString(b, f.minLevel)
	}
	if f.scope != 0 {
		b = protowire.AppendTag(b, 8, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(f.scope))
	}
	if f.until != 0 {
		b = protowire.AppendTag(b, 10, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(f.until))
	}
	if f.regex != "" {
		b = protowire.AppendTag(b, 11, protowire.BytesType)
		b = protowire.AppendString(b, f.regex)
	}
	return b
}

// decodeFetch decodes a FetchLogsResponse by field number.
func decodeFetch(t *testing.T, b []byte) (entries []wireEntry, cursor int64) {
	t.Helper()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad response tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			entries = append(entries, decodeEntry(t, v))
			b = b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			cursor = int64(v)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				t.Fatalf("bad response field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return entries, cursor
}

func decodeEntry(t *testing.T, b []byte) wireEntry {
	var e wireEntry
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad entry tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			ts, n := protowire.ConsumeBytes(b)
			if num, _, m := protowire.ConsumeTag(ts); m > 0 && num == 1 {
				v, _ := protowire.ConsumeVarint(ts[m:])
				e.epochMS = int64(v)
			}
			b = b[n:]
		case (num == 3 || num == 6) && typ == protowire.BytesType:
			v, n := protowire.ConsumeString(b)
			if num == 3 {
				e.data = v
			} else {
				e.key = v
			}
			b = b[n:]
		case num == 7 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			e.seq = int64(v)
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				t.Fatalf("bad entry field %d: %v", num, protowire.ParseError(n))
			}
			b = b[n:]
		}
	}
	return e
}

// encodePush encodes PushLogsRequest{key=1, entries=2{data=3, seq=7}, producer=100}.
func encodePush(key, producer string, data []string, seqs []int64) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, key)
	for i, d := range data {
		var e []byte
		e = protowire.AppendTag(e, 3, protowire.BytesType)
		e = protowire.AppendString(e, d)
		if seqs != nil {
			e = protowire.AppendTag(e, 7, protowire.VarintType)
			e = protowire.AppendVarint(e, uint64(seqs[i]))
		}
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	if producer != "" {
		b = protowire.AppendTag(b, 100, protowire.BytesType)
		b = protowire.AppendString(b, producer)
	}
	return b
}

const fetchPath = "/finelog.logging.LogService/FetchLogs"
const pushPath = "/finelog.logging.LogService/PushLogs"

func rawFetch(t *testing.T, e *testEnv, f fetchReq) ([]wireEntry, int64) {
	t.Helper()
	code, body := rawCall(t, e.http.URL, fetchPath, f.encode(), nil)
	if code != 200 {
		t.Fatalf("fetch %+v: HTTP %d %s", f, code, body)
	}
	return decodeFetch(t, body)
}

func pushData(t *testing.T, e *testEnv, key string, data ...string) {
	t.Helper()
	entries := make([]*loggingpb.LogEntry, len(data))
	for i, d := range data {
		entries[i] = &loggingpb.LogEntry{Data: d, Timestamp: &loggingpb.Timestamp{EpochMs: 1000}}
	}
	if _, err := e.c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: key, Entries: entries}); err != nil {
		t.Fatal(err)
	}
}

func TestWireSeqIsField7(t *testing.T) {
	e := newTestServer(t, nil)
	pushData(t, e, "/w/a", "one", "two")
	got, cursor := rawFetch(t, e, fetchReq{source: "/w/a", scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if len(got) != 2 || got[0].seq != 1 || got[1].seq != 2 || cursor != 2 {
		t.Fatalf("entries %+v cursor %d: want seqs 1, 2 in field 7", got, cursor)
	}

	// A producer batch whose entries carry their seq in field 7: re-sending
	// it must be dropped as a duplicate, which only works if the server
	// reads the seq from field 7.
	batch := encodePush("/w/p", "east/relay", []string{"r1", "r2"}, []int64{10, 11})
	for range 2 {
		if code, body := rawCall(t, e.http.URL, pushPath, batch, nil); code != 200 {
			t.Fatalf("producer push: HTTP %d %s", code, body)
		}
	}
	got, _ = rawFetch(t, e, fetchReq{source: "/w/p", scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if len(got) != 2 {
		t.Fatalf("producer batch sent twice stored %d rows, want 2 (seq in field 7 identifies duplicates)", len(got))
	}
	if seq, _ := e.srv.st.Load().s.ProducerApplied("east/relay"); seq != 11 {
		t.Fatalf("producer applied seq %d, want 11 from field 7", seq)
	}
}

func TestWireUntilCursorPagesBackwards(t *testing.T) {
	e := newTestServer(t, nil)
	for i := range 7 {
		pushData(t, e, "/w/page", string(rune('a'+i)))
	}
	// The newest three, then the three before them, as a viewer scrolls up.
	page1, _ := rawFetch(t, e, fetchReq{source: "/w/page", scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, tail: true, maxLines: 3})
	page2, _ := rawFetch(t, e, fetchReq{source: "/w/page", scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, tail: true, maxLines: 3, until: page1[0].seq - 1})
	var got []string
	for _, p := range [][]wireEntry{page2, page1} {
		for _, en := range p {
			got = append(got, en.data)
		}
	}
	if strings.Join(got, "") != "bcdefg" {
		t.Fatalf("two backward pages = %q, want bcdefg (until_cursor = field 10 bounds seq <= it)", got)
	}
}

func TestWireRegexDataFilter(t *testing.T) {
	e := newTestServer(t, nil)
	pushData(t, e, "/w/re", "GET /a 200", "GET /b 503", "POST /c 500", "boot ok")
	got, _ := rawFetch(t, e, fetchReq{source: "/w/", scope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX, regex: ` 5[0-9]{2}$`})
	if len(got) != 2 || got[0].data != "GET /b 503" || got[1].data != "POST /c 500" {
		t.Fatalf("regex (field 11) kept %+v, want the two 5xx lines", got)
	}
	code, body := rawCall(t, e.http.URL, fetchPath, fetchReq{source: "/w/", scope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX, regex: "(x"}.encode(), nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "regex") {
		t.Fatalf("invalid regex: HTTP %d %s, want 400 invalid_argument naming the regex", code, body)
	}
	code, body = rawCall(t, e.http.URL, fetchPath, fetchReq{source: "/w/", scope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX, regex: "[a-z]{1,1000}X"}.encode(), nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "MaxRegexProgram") {
		t.Fatalf("costly regex: HTTP %d %s, want 400 naming the program-size limit", code, body)
	}
}

func TestWireRegexScopeNeedsLeadingLiteralAsKeyPrefix(t *testing.T) {
	e := newTestServer(t, nil)
	pushData(t, e, "/cf/job/1", "x")
	pushData(t, e, "cf/job/2", "y")
	for _, tc := range []struct {
		source string
		want   []string
	}{
		{"cf/job/", []string{"cf/job/2"}}, // not "/cf/job/1": the literal must start the key
		{"/cf/job/[0-9]", []string{"/cf/job/1"}},
		{"job/", nil},
		{"(cf/job/)", []string{"/cf/job/1", "cf/job/2"}}, // no leading literal: unanchored search
		{"", []string{"/cf/job/1", "cf/job/2"}},
	} {
		got, _ := rawFetch(t, e, fetchReq{source: tc.source, scope: loggingpb.MatchScope_MATCH_SCOPE_REGEX})
		var keys []string
		for _, en := range got {
			keys = append(keys, en.key)
		}
		if strings.Join(keys, ",") != strings.Join(tc.want, ",") {
			t.Errorf("REGEX %q matched keys %q, want %q", tc.source, keys, tc.want)
		}
	}
	// UNSPECIFIED (scope omitted on the wire) is REGEX.
	got, _ := rawFetch(t, e, fetchReq{source: "cf/job/"})
	if len(got) != 1 || got[0].key != "cf/job/2" {
		t.Errorf("scope omitted, cf/job/: %+v, want only cf/job/2", got)
	}
}

func TestWireExactFillsKeyAndEmptyTimestampIsArrivalTime(t *testing.T) {
	e := newTestServer(t, nil)
	// Entry without a timestamp: the existing server stores epoch 0, we
	// store the arrival time (documented).
	if code, body := rawCall(t, e.http.URL, pushPath, encodePush("/w/ts", "", []string{"no stamp"}, nil), nil); code != 200 {
		t.Fatalf("push: HTTP %d %s", code, body)
	}
	got, _ := rawFetch(t, e, fetchReq{source: "/w/ts", scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if len(got) != 1 || got[0].epochMS != epoch.UnixMilli() {
		t.Fatalf("entry %+v: want epoch_ms = arrival time %d", got, epoch.UnixMilli())
	}
	if got[0].key != "/w/ts" {
		t.Fatalf("EXACT read key = %q: finelog fills it (the existing server may leave it empty)", got[0].key)
	}
}

func TestWireMinLevelAliases(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	var entries []*loggingpb.LogEntry
	for lv := loggingpb.LogLevel_LOG_LEVEL_DEBUG; lv <= loggingpb.LogLevel_LOG_LEVEL_CRITICAL; lv++ {
		entries = append(entries, &loggingpb.LogEntry{Data: lv.String(), Level: lv})
	}
	if _, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/w/lv", Entries: entries}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want int
	}{
		{"warn", 3}, {"WARNING", 3}, {"err", 2}, {"crit", 1}, {"fatal", 1}, {"trace", 5}, {"loud", 5},
	} {
		got, _ := rawFetch(t, e, fetchReq{source: "/w/lv", scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, minLevel: tc.name})
		if len(got) != tc.want {
			t.Errorf("min_level %q kept %d rows, want %d", tc.name, len(got), tc.want)
		}
	}
}

func TestLegacyServicePathIsGatedAlias(t *testing.T) {
	e, secret := jwtEnv(t)
	pushBody := encodePush("/w/legacy", "", []string{"old client"}, nil)
	// No credential: the alias is behind the gate like the current path.
	if code, _ := rawCall(t, e.http.URL, "/iris.logging.LogService/PushLogs", pushBody, nil); code != http.StatusUnauthorized {
		t.Fatalf("legacy path without a token: HTTP %d, want 401", code)
	}
	tok, err := auth.NewMinter(secret, "east", "", time.Hour, e.clk).Token()
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Authorization": {"Bearer " + tok}}
	if code, body := rawCall(t, e.http.URL, "/iris.logging.LogService/PushLogs", pushBody, h); code != 200 {
		t.Fatalf("legacy PushLogs: HTTP %d %s", code, body)
	}
	code, body := rawCall(t, e.http.URL, "/iris.logging.LogService/FetchLogs", fetchReq{source: "/w/legacy", scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}.encode(), h)
	if code != 200 {
		t.Fatalf("legacy FetchLogs: HTTP %d %s", code, body)
	}
	if got, _ := decodeFetch(t, body); len(got) != 1 || got[0].data != "old client" {
		t.Fatalf("legacy fetch = %+v", got)
	}

	// A Connect client generated from the old service name works too.
	c := connect.NewClient[loggingpb.FetchLogsRequest, loggingpb.FetchLogsResponse](client.HTTP1Client(), e.http.URL+"/iris.logging.LogService/FetchLogs")
	req := connect.NewRequest(&loggingpb.FetchLogsRequest{Source: "/w/legacy", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	req.Header().Set("Authorization", "Bearer "+tok)
	resp, err := c.CallUnary(context.Background(), req)
	if err != nil || len(resp.Msg.Entries) != 1 {
		t.Fatalf("generated client on the legacy path: %v %v", resp, err)
	}
}

func TestForwardedPrefixStrippedNeverBypassesGate(t *testing.T) {
	e, secret := jwtEnv(t)
	tok, err := auth.NewMinter(secret, "east", "", time.Hour, e.clk).Token()
	if err != nil {
		t.Fatal(err)
	}
	authz := http.Header{"Authorization": {"Bearer " + tok}}
	withPrefix := func(h http.Header, p string) http.Header {
		out := h.Clone()
		if out == nil {
			out = http.Header{}
		}
		out.Set("X-Forwarded-Prefix", p)
		return out
	}
	push := encodePush("/w/fp", "", []string{"via proxy"}, nil)
	if code, body := rawCall(t, e.http.URL, "/logs"+pushPath, push, withPrefix(authz, "/logs/")); code != 200 {
		t.Fatalf("push under /logs with the header: HTTP %d %s", code, body)
	}
	if code, _ := rawCall(t, e.http.URL, "/logs"+pushPath, push, withPrefix(nil, "/logs")); code != http.StatusUnauthorized {
		t.Fatalf("prefixed push without a token: HTTP %d, want 401 (the prefix must not bypass the gate)", code)
	}
	if code, _ := rawCall(t, e.http.URL, "/logs"+pushPath, push, authz); code != http.StatusNotFound {
		t.Fatalf("prefixed path without the header: HTTP %d, want 404 (strip only when the header is present)", code)
	}
	if code, _ := rawCall(t, e.http.URL, "/logsx"+pushPath, push, withPrefix(authz, "/logs")); code != http.StatusNotFound {
		t.Fatalf("path that only shares characters with the prefix: HTTP %d, want 404", code)
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/logs/metrics", nil)
	req.Header.Set("X-Forwarded-Prefix", "/logs")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/logs/metrics with the header, no token: HTTP %d, want 401", resp.StatusCode)
	}
	req, _ = http.NewRequest("GET", e.http.URL+"/logs/health", nil)
	req.Header.Set("X-Forwarded-Prefix", "/logs")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/logs/health with the header: HTTP %d, want 200", resp.StatusCode)
	}
	got, _ := decodeFetch(t, mustOK(t)(rawCall(t, e.http.URL, "/logs"+fetchPath, fetchReq{source: "/w/fp", scope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}.encode(), withPrefix(authz, "/logs"))))
	if len(got) != 1 || got[0].data != "via proxy" {
		t.Fatalf("fetch via prefix = %+v", got)
	}
}

func mustOK(t *testing.T) func(int, []byte) []byte {
	return func(code int, body []byte) []byte {
		t.Helper()
		if code != 200 {
			t.Fatalf("HTTP %d %s", code, body)
		}
		return body
	}
}

// The CLI repairs invalid UTF-8 in data; the server still refuses it, in a
// key above all, with invalid_argument saying why (not internal).
func TestInvalidUTF8KeyRefusedClearly(t *testing.T) {
	e := newTestServer(t, nil)
	code, body := rawCall(t, e.http.URL, pushPath, encodePush("/k/\xff", "", []string{"x"}, nil), nil)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "invalid_argument") || !strings.Contains(string(body), "UTF-8") {
		t.Fatalf("invalid UTF-8 key: HTTP %d %s, want 400 invalid_argument naming UTF-8", code, body)
	}
}
