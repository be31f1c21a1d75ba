package server

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
	"github.com/finelog/finelog/relay"
)

func attrEntry(data string, attrs map[string]string) *loggingpb.LogEntry {
	return &loggingpb.LogEntry{Data: data, Attributes: attrs}
}

func fetchData(t *testing.T, e *testEnv, req *loggingpb.FetchLogsRequest) []*loggingpb.LogEntry {
	t.Helper()
	resp, err := e.c.Fetch(context.Background(), req)
	if err != nil {
		t.Fatalf("fetch %v: %v", req, err)
	}
	return resp.Entries
}

func datas(es []*loggingpb.LogEntry) string {
	var s []string
	for _, e := range es {
		s = append(s, e.GetData())
	}
	return strings.Join(s, ",")
}

func TestPushFetchAttributes(t *testing.T) {
	e := newTestServer(t, nil)
	ctx := context.Background()
	_, err := e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/a", Entries: []*loggingpb.LogEntry{
		attrEntry("p1", map[string]string{"env": "prod", "trace_id": "0af7"}),
		attrEntry("d1", map[string]string{"env": "dev"}),
		attrEntry("none", nil),
		attrEntry("p2", map[string]string{"env": "prod"}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	all := fetchData(t, e, &loggingpb.FetchLogsRequest{Source: "/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT})
	if len(all) != 4 || !maps.Equal(all[0].Attributes, map[string]string{"env": "prod", "trace_id": "0af7"}) || all[2].Attributes != nil {
		t.Fatalf("fetch returned %v", all)
	}
	for _, tc := range []struct {
		filter map[string]string
		want   string
	}{
		{map[string]string{"env": "prod"}, "p1,p2"},
		{map[string]string{"env": "prod", "trace_id": "0af7"}, "p1"},
		{map[string]string{"env": "staging"}, ""},
		{map[string]string{"trace_id": ""}, ""}, // exact: a missing attribute is not an empty one
	} {
		got := fetchData(t, e, &loggingpb.FetchLogsRequest{Source: "/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Attributes: tc.filter})
		if datas(got) != tc.want {
			t.Errorf("filter %v: got %q, want %q", tc.filter, datas(got), tc.want)
		}
	}

	_, err = e.c.Push(ctx, &loggingpb.PushLogsRequest{Key: "/a", Entries: []*loggingpb.LogEntry{
		attrEntry("ok", nil), attrEntry("big", map[string]string{"v": strings.Repeat("x", 4097)})}})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "entry 1") || !strings.Contains(err.Error(), "limit is 4096") {
		t.Fatalf("push with a 4097-byte attribute value: %v, want invalid_argument naming entry 1 and the limit", err)
	}
	if got := fetchData(t, e, &loggingpb.FetchLogsRequest{Source: "/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT}); len(got) != 4 {
		t.Fatalf("a refused push stored rows: %d rows", len(got))
	}
	_, err = e.c.Fetch(ctx, &loggingpb.FetchLogsRequest{Source: "/a", Attributes: map[string]string{"": "x"}})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "attributes filter") {
		t.Fatalf("fetch with an empty attribute name: %v", err)
	}
}

// Loki labels and structured metadata and OTLP attributes are stored and
// can be filtered on.
func TestIngestStoresAttributes(t *testing.T) {
	e := newTestServer(t, nil)
	pb := lokiPB(t, lokiStream(`{env="prod", app="api"}`, "GET /"), lokiStream(`{env="dev", app="api"}`, "GET /dev"))
	resp, msg := e.post(t, post{path: LokiPushPath, contentType: "application/x-protobuf", body: pb})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("loki push: %d %s", resp.StatusCode, msg)
	}
	got := fetchData(t, e, &loggingpb.FetchLogsRequest{Source: `{app="api"`, MatchScope: loggingpb.MatchScope_MATCH_SCOPE_PREFIX, Attributes: map[string]string{"env": "prod"}})
	if len(got) != 1 || got[0].Data != "GET /" || !maps.Equal(got[0].Attributes, map[string]string{"app": "api", "env": "prod"}) {
		t.Fatalf("loki rows with env=prod: %v", got)
	}

	req := otlpExport("/otlp/attrs", "one")
	req.ResourceLogs[0].ScopeLogs[0].LogRecords[0].Attributes = []*commonpb.KeyValue{
		{Key: "user", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: "ann"}}}}
	req.ResourceLogs[0].ScopeLogs[0].LogRecords[0].TraceId = []byte{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c}
	body, _ := proto.Marshal(req)
	resp, msg = e.post(t, post{path: OTLPLogsPath, contentType: "application/x-protobuf", body: body})
	if resp.StatusCode != 200 {
		t.Fatalf("otlp export: %d %s", resp.StatusCode, msg)
	}
	got = fetchData(t, e, &loggingpb.FetchLogsRequest{Source: "/otlp/attrs", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT,
		Attributes: map[string]string{"trace_id": "0af7651916cd43dd8448eb211c80319c"}})
	if len(got) != 1 || got[0].Attributes["user"] != "ann" || got[0].Attributes["scope.name"] != "test" {
		t.Fatalf("otlp row by trace_id: %v", got)
	}
}

// The relay forwards attributes: the target's row has them.
func TestRelayForwardsAttributes(t *testing.T) {
	target := newTestServer(t, func(c *Config) { c.Cluster = "global" })
	src := newTestServer(t, func(c *Config) {
		c.Cluster = "east"
		c.Relay = RelayConfig{Address: "http://" + target.http.Listener.Addr().String(), Options: relay.Options{Backfill: true}}
	})
	attrs := map[string]string{"env": "prod", "trace_id": "0af7"}
	_, err := src.c.Push(context.Background(), &loggingpb.PushLogsRequest{Key: "/job/a", Entries: []*loggingpb.LogEntry{attrEntry("relayed", attrs)}})
	if err != nil {
		t.Fatal(err)
	}
	var got []*loggingpb.LogEntry
	waitFor(t, "the row at the target", func() bool {
		src.clk.Advance(100 * time.Millisecond)
		got = fetchData(t, target, &loggingpb.FetchLogsRequest{Source: "/job/a", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Attributes: map[string]string{"env": "prod"}})
		return len(got) > 0
	})
	if len(got) != 1 || !maps.Equal(got[0].Attributes, attrs) {
		t.Fatalf("target has %v, want the row with %v", got, attrs)
	}
}

// A replica's copy has the attributes (the peer Records stream carries them).
func TestReplicaHasAttributes(t *testing.T) {
	ctx := context.Background()
	p := peerPrimary(t, 1)
	r := peerReplica(t, p)
	attrs := map[string]string{"env": "prod"}
	req := &loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{attrEntry("a", attrs), attrEntry("b", attrs), attrEntry("c", nil)}}
	_, err := p.c.Push(ctx, req)
	for i := 0; err != nil && i < 50; i++ { // the replica may still be subscribing
		time.Sleep(20 * time.Millisecond)
		_, err = p.c.Push(ctx, req)
	}
	if err != nil {
		t.Fatalf("push with a replica: %v", err)
	}
	got := fetchData(t, r, &loggingpb.FetchLogsRequest{Source: "/k", MatchScope: loggingpb.MatchScope_MATCH_SCOPE_EXACT, Attributes: attrs})
	if datas(got) != "a,b" && !strings.HasSuffix(datas(got), "a,b") {
		t.Fatalf("replica rows with env=prod: %q", datas(got))
	}
	if !maps.Equal(got[len(got)-1].Attributes, attrs) {
		t.Fatalf("replica row attributes %v", got[len(got)-1].Attributes)
	}
}
