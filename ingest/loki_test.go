package ingest

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pushpb "github.com/finelog/finelog/gen/loki/push"
	"github.com/finelog/finelog/store"
)

const now = int64(1_700_000_000_000)

// testStream is one Loki stream written both ways, so every case checks
// the protobuf and the JSON decoder against the same expectation.
type testStream struct {
	labels map[string]string
	lines  []testLine
}

type testLine struct {
	ns   int64
	line string
	meta [][2]string
}

// selectorOf writes labels as a shipper would: in the given order, with
// spaces, so the decoder's canonical form is actually exercised.
func selectorOf(labels map[string]string, order []string) string {
	parts := make([]string, 0, len(order))
	for _, k := range order {
		parts = append(parts, k+" = "+strconv.Quote(labels[k]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func lokiProto(t testing.TB, streams []testStream, orders [][]string) []byte {
	t.Helper()
	var req pushpb.PushRequest
	for i, s := range streams {
		sa := &pushpb.StreamAdapter{Labels: selectorOf(s.labels, orders[i])}
		for _, l := range s.lines {
			e := &pushpb.EntryAdapter{Timestamp: timestamppb.New(timeFromNS(l.ns)), Line: l.line}
			for _, m := range l.meta {
				e.StructuredMetadata = append(e.StructuredMetadata, &pushpb.LabelPairAdapter{Name: m[0], Value: m[1]})
			}
			sa.Entries = append(sa.Entries, e)
		}
		req.Streams = append(req.Streams, sa)
	}
	raw, err := proto.Marshal(&req)
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

func lokiJSONBody(t testing.TB, streams []testStream) []byte {
	t.Helper()
	type js struct {
		Stream map[string]string `json:"stream"`
		Values [][]any           `json:"values"`
	}
	var out struct {
		Streams []js `json:"streams"`
	}
	for _, s := range streams {
		j := js{Stream: s.labels}
		for _, l := range s.lines {
			v := []any{strconv.FormatInt(l.ns, 10), l.line}
			if len(l.meta) > 0 {
				m := map[string]string{}
				for _, kv := range l.meta {
					m[kv[0]] = kv[1]
				}
				v = append(v, m)
			}
			j.Values = append(j.Values, v)
		}
		out.Streams = append(out.Streams, j)
	}
	b, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func row(key, data string, ms int64, level int32, cluster string, attrs map[string]string) Row {
	r := Row{Attributes: attrs}
	r.Key, r.Data, r.EpochMS, r.Level, r.Cluster, r.Source = key, data, ms, level, cluster, SourceLoki
	return r
}

func TestLokiMapping(t *testing.T) {
	api := map[string]string{"env": "prod", "app": "api"}
	tests := []struct {
		name   string
		stream testStream
		order  []string
		want   []Row
	}{
		{
			name:   "key is the canonical selector, labels sorted, attributes are the labels",
			stream: testStream{labels: api, lines: []testLine{{ns: 1_700_000_000_123_456_789, line: "hello"}}},
			order:  []string{"env", "app"},
			want:   []Row{row(`{app="api",env="prod"}`, "hello", 1_700_000_000_123, 0, "", api)},
		},
		{
			name:   "finelog_key sets the key and is not an attribute",
			stream: testStream{labels: map[string]string{"app": "api", "finelog_key": "/user/job/0:1"}, lines: []testLine{{ns: 2e6, line: "x"}}},
			order:  []string{"finelog_key", "app"},
			want:   []Row{row("/user/job/0:1", "x", 2, 0, "", map[string]string{"app": "api"})},
		},
		{
			name:   "finelog_cluster asks for a cluster and is not an attribute",
			stream: testStream{labels: map[string]string{"app": "api", "finelog_cluster": "east"}, lines: []testLine{{ns: 2e6, line: "x"}}},
			order:  []string{"app", "finelog_cluster"},
			want:   []Row{row(`{app="api"}`, "x", 2, 0, "east", map[string]string{"app": "api"})},
		},
		{
			name:   "level label",
			stream: testStream{labels: map[string]string{"app": "a", "level": "WARN"}, lines: []testLine{{ns: 1e6, line: "x"}}},
			order:  []string{"level", "app"},
			want:   []Row{row(`{app="a",level="WARN"}`, "x", 1, store.LevelWarning, "", map[string]string{"app": "a", "level": "WARN"})},
		},
		{
			name:   "detected_level label",
			stream: testStream{labels: map[string]string{"detected_level": "error"}, lines: []testLine{{ns: 1e6, line: "x"}}},
			order:  []string{"detected_level"},
			want:   []Row{row(`{detected_level="error"}`, "x", 1, store.LevelError, "", map[string]string{"detected_level": "error"})},
		},
		{
			name:   "severity label",
			stream: testStream{labels: map[string]string{"severity": "critical"}, lines: []testLine{{ns: 1e6, line: "x"}}},
			order:  []string{"severity"},
			want:   []Row{row(`{severity="critical"}`, "x", 1, store.LevelCritical, "", map[string]string{"severity": "critical"})},
		},
		{
			name:   "level wins over detected_level and severity",
			stream: testStream{labels: map[string]string{"severity": "critical", "level": "debug", "detected_level": "error"}, lines: []testLine{{ns: 1e6, line: "x"}}},
			order:  []string{"severity", "level", "detected_level"},
			want: []Row{row(`{detected_level="error",level="debug",severity="critical"}`, "x", 1, store.LevelDebug, "",
				map[string]string{"severity": "critical", "level": "debug", "detected_level": "error"})},
		},
		{
			name:   "an unknown level word is UNKNOWN",
			stream: testStream{labels: map[string]string{"level": "loud"}, lines: []testLine{{ns: 1e6, line: "x"}}},
			order:  []string{"level"},
			want:   []Row{row(`{level="loud"}`, "x", 1, store.LevelUnknown, "", map[string]string{"level": "loud"})},
		},
		{
			name: "structured metadata becomes attributes, a label wins over metadata of its name, metadata can set the level",
			stream: testStream{labels: map[string]string{"app": "a"}, lines: []testLine{
				{ns: 1e6, line: "x", meta: [][2]string{{"trace_id", "abc"}, {"app", "spoof"}, {"detected_level", "info"}}},
				{ns: 3e6, line: "y"},
			}},
			order: []string{"app"},
			want: []Row{
				row(`{app="a"}`, "x", 1, store.LevelInfo, "", map[string]string{"app": "a", "trace_id": "abc", "detected_level": "info"}),
				row(`{app="a"}`, "y", 3, 0, "", map[string]string{"app": "a"}),
			},
		},
		{
			name:   "nanoseconds floor to milliseconds",
			stream: testStream{labels: map[string]string{"a": "b"}, lines: []testLine{{ns: 1_999_999, line: "x"}, {ns: -1, line: "before 1970"}}},
			order:  []string{"a"},
			want: []Row{
				row(`{a="b"}`, "x", 1, 0, "", map[string]string{"a": "b"}),
				row(`{a="b"}`, "before 1970", -1, 0, "", map[string]string{"a": "b"}),
			},
		},
		{
			name:   "a zero timestamp is the receive time",
			stream: testStream{labels: map[string]string{"a": "b"}, lines: []testLine{{ns: 0, line: "x"}}},
			order:  []string{"a"},
			want:   []Row{row(`{a="b"}`, "x", now, 0, "", map[string]string{"a": "b"})},
		},
		{
			name:   "label values are quoted Go-style in the key",
			stream: testStream{labels: map[string]string{"path": "C:\\x \"y\"\n"}, lines: []testLine{{ns: 1e6, line: "x"}}},
			order:  []string{"path"},
			want:   []Row{row(`{path="C:\\x \"y\"\n"}`, "x", 1, 0, "", map[string]string{"path": "C:\\x \"y\"\n"})},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, form := range []string{"protobuf", "json"} {
				var b Batch
				var err error
				if form == "protobuf" {
					b, err = DecodeLokiProto(lokiProto(t, []testStream{tc.stream}, [][]string{tc.order}), 1<<20, now)
				} else {
					b, err = DecodeLokiJSON(lokiJSONBody(t, []testStream{tc.stream}), now)
				}
				if err != nil {
					t.Fatalf("%s: %v", form, err)
				}
				if len(b.Rejected) > 0 {
					t.Fatalf("%s: rejected %s", form, b.RejectionMessage())
				}
				if diff := cmp.Diff(tc.want, storedAs(t, b.Rows)); diff != "" {
					t.Errorf("%s rows (-want +got):\n%s", form, diff)
				}
			}
		})
	}
}

// TestLokiProtoMatchesJSON: a multi-stream push decodes to the same rows
// from both bodies.
func TestLokiProtoMatchesJSON(t *testing.T) {
	streams := []testStream{
		{labels: map[string]string{"app": "api", "env": "prod", "level": "info"}, lines: []testLine{
			{ns: 1_700_000_000_000_000_001, line: "GET /"},
			{ns: 1_700_000_000_500_000_000, line: "POST /x", meta: [][2]string{{"trace_id", "0af7651916cd43dd8448eb211c80319c"}}},
		}},
		{labels: map[string]string{"app": "db", "finelog_key": "/db/primary"}, lines: []testLine{{ns: 1_700_000_001_000_000_000, line: "checkpoint"}}},
	}
	pb, err := DecodeLokiProto(lokiProto(t, streams, [][]string{{"level", "env", "app"}, {"finelog_key", "app"}}), 1<<20, now)
	if err != nil {
		t.Fatal(err)
	}
	js, err := DecodeLokiJSON(lokiJSONBody(t, streams), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(pb.Rows) != 3 {
		t.Fatalf("protobuf decoded %d rows, want 3", len(pb.Rows))
	}
	if diff := cmp.Diff(pb, js, batchCmp); diff != "" {
		t.Errorf("protobuf vs JSON (-pb +json):\n%s", diff)
	}
}

func TestLokiMalformed(t *testing.T) {
	good := lokiProto(t, []testStream{{labels: map[string]string{"a": "b"}, lines: []testLine{{ns: 1, line: "x"}}}}, [][]string{{"a"}})
	raw, _ := snappy.Decode(nil, good)
	tests := []struct {
		name, form string
		body       []byte
		want       string
	}{
		{"not snappy", "protobuf", []byte("\xff\xff\xff\xff\xff\xff"), "snappy"},
		{"snappy framed stream, not a block", "protobuf", []byte("\xff\x06\x00\x00sNaPpY"), "snappy"},
		{"uncompressed protobuf", "protobuf", raw, ""},
		{"snappy of garbage", "protobuf", snappy.Encode(nil, []byte{0x0a, 0xff, 0xff}), "PushRequest"},
		{"snappy bomb over the limit", "protobuf", snappy.Encode(nil, make([]byte, 2<<20)), "limit is 1048576"},
		{"not JSON", "json", []byte(`{"streams":[`), "JSON"},
		{"non-numeric timestamp", "json", []byte(`{"streams":[{"stream":{"a":"b"},"values":[["yesterday","x"]]}]}`), `timestamp "yesterday"`},
		{"numeric (not string) timestamp", "json", []byte(`{"streams":[{"stream":{"a":"b"},"values":[[1700000000000000000,"x"]]}]}`), "string of unix nanoseconds"},
		{"value with one element", "json", []byte(`{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}`), "want"},
		{"line not a string", "json", []byte(`{"streams":[{"stream":{"a":"b"},"values":[["1",5]]}]}`), "line: want a string"},
		{"metadata not strings", "json", []byte(`{"streams":[{"stream":{"a":"b"},"values":[["1","x",{"k":1}]]}]}`), `"k": want a string value`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.form == "protobuf" {
				_, err = DecodeLokiProto(tc.body, 1<<20, now)
			} else {
				_, err = DecodeLokiJSON(tc.body, now)
			}
			if tc.want == "" {
				// An uncompressed body is not what Loki accepts either;
				// it must fail, whatever the reason.
				if err == nil {
					t.Fatal("decoded an uncompressed protobuf body")
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

// TestLokiLimits: a stream over a limit is refused with its name and the
// limit, and the other streams of the request are kept.
func TestLokiLimits(t *testing.T) {
	many := map[string]string{}
	for i := 0; i < MaxAttributes+1; i++ {
		many["l"+strconv.Itoa(i)] = "v"
	}
	ok := testStream{labels: map[string]string{"app": "ok"}, lines: []testLine{{ns: 1e6, line: "kept"}}}
	tests := []struct {
		name string
		bad  testStream
		want string
	}{
		{"too many labels", testStream{labels: many, lines: []testLine{{ns: 1, line: "x"}}}, "65 attributes, limit is 64"},
		{"label value too long", testStream{labels: map[string]string{"app": strings.Repeat("v", MaxAttributeValueBytes+1)}, lines: []testLine{{ns: 1, line: "x"}}},
			"value is 4097 bytes, limit is 4096"},
		{"metadata name too long", testStream{labels: map[string]string{"app": "m"}, lines: []testLine{{ns: 1, line: "x", meta: [][2]string{{strings.Repeat("n", 257), "v"}}}}},
			"257 bytes, limit is 256"},
		{"key over MaxKeyBytes", testStream{labels: map[string]string{"app": "k", "finelog_key": strings.Repeat("k", store.MaxKeyBytes+1)}, lines: []testLine{{ns: 1, line: "x"}}},
			"key is 1025 bytes"},
		{"attributes push the row over MaxRowBytes", testStream{labels: map[string]string{"finelog_key": "/big", "app": strings.Repeat("a", 4000)}, lines: []testLine{{ns: 1, line: strings.Repeat("x", store.MaxRowBytes-4000)}}},
			"with its attributes, limit is 1048576"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			order := make([][]string, 2)
			for _, s := range []int{0, 1} {
				st := []testStream{ok, tc.bad}[s]
				for k := range st.labels {
					order[s] = append(order[s], k)
				}
			}
			for _, form := range []string{"protobuf", "json"} {
				var b Batch
				var err error
				if form == "protobuf" {
					b, err = DecodeLokiProto(lokiProto(t, []testStream{ok, tc.bad}, order), 4<<20, now)
				} else {
					b, err = DecodeLokiJSON(lokiJSONBody(t, []testStream{ok, tc.bad}), now)
				}
				if err != nil {
					t.Fatalf("%s: %v", form, err)
				}
				if len(b.Rows) != 1 || b.Rows[0].Data != "kept" {
					t.Errorf("%s: kept %d rows, want only the good stream's", form, len(b.Rows))
				}
				if b.RejectedRecords() != 1 || !errors.Is(b.Rejected[0].Err, ErrRefused) {
					t.Fatalf("%s: rejected %+v, want one refused entry", form, b.Rejected)
				}
				msg := b.RejectionMessage()
				if !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "stream {") {
					t.Errorf("%s: message %q, want the stream named and %q", form, msg, tc.want)
				}
			}
		})
	}
}

func TestParseSelector(t *testing.T) {
	tests := []struct {
		in      string
		want    string // canonical form, or "" for an error
		wantErr string
	}{
		{`{}`, `{}`, ""},
		{`{ a="1" }`, `{a="1"}`, ""},
		{`{b="2",a="1"}`, `{a="1",b="2"}`, ""},
		{"{a=`raw\\n`}", `{a="raw\\n"}`, ""},
		{`{a="x,y}z", b="\u00e9"}`, `{a="x,y}z",b="é"}`, ""},
		{`{a="1",a="2"}`, "", "twice"},
		{`a="1"`, "", "want {"},
		{`{a}`, "", "no ="},
		{`{a=1}`, "", "not a quoted string"},
		{`{a="1" b="2"}`, "", "want , or }"},
		{`{9a="1"}`, "", "not a label name"},
		{`{a="\q"}`, "", "value of a"},
		{`{a="unterminated}`, "", "not a quoted string"},
	}
	for _, tc := range tests {
		ls, err := parseSelector(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseSelector(%s) err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseSelector(%s): %v", tc.in, err)
			continue
		}
		if got := canonicalSelector(ls); got != tc.want {
			t.Errorf("parseSelector(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestLokiBadLabelsRefuseTheStream: a stream whose label string does not
// parse is refused by name; the rest of the request is kept.
func TestLokiBadLabelsRefuseTheStream(t *testing.T) {
	req := &pushpb.PushRequest{Streams: []*pushpb.StreamAdapter{
		{Labels: `{app="ok"}`, Entries: []*pushpb.EntryAdapter{{Line: "kept"}}},
		{Labels: `{app=broken}`, Entries: []*pushpb.EntryAdapter{{Line: "a"}, {Line: "b"}}},
	}}
	raw, _ := proto.Marshal(req)
	b, err := DecodeLokiProto(snappy.Encode(nil, raw), 1<<20, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Rows) != 1 || b.Rows[0].EpochMS != now {
		t.Errorf("rows %+v, want the good stream's one line stamped now (no timestamp)", b.Rows)
	}
	if b.RejectedRecords() != 2 || !strings.Contains(b.RejectionMessage(), "{app=broken}") {
		t.Errorf("rejection %q (%d records), want the broken stream's 2", b.RejectionMessage(), b.RejectedRecords())
	}
}

func TestLevelFromName(t *testing.T) {
	for in, want := range map[string]int32{
		"trace": store.LevelDebug, "DEBUG": store.LevelDebug, "info": store.LevelInfo, "Notice": store.LevelInfo,
		"warn": store.LevelWarning, "WARNING": store.LevelWarning, "err": store.LevelError, "error": store.LevelError,
		"fatal": store.LevelCritical, "CRITICAL": store.LevelCritical, "panic": store.LevelCritical,
		"": store.LevelUnknown, "verbose-ish": store.LevelUnknown,
	} {
		if got := levelFromName(in); got != want {
			t.Errorf("levelFromName(%q) = %d, want %d", in, got, want)
		}
	}
}

func timeFromNS(ns int64) time.Time { return time.Unix(0, ns) }
