package fuzz

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pushpb "github.com/finelog/finelog/gen/loki/push"
	"github.com/finelog/finelog/ingest"
	"github.com/finelog/finelog/store"
)

const ingestNowMS = int64(1_700_000_000_000)

// checkRows asserts what every decoded row must satisfy whatever the
// input: the store's key and row limits and the attribute limits, so a
// decoded row can never fail the append that follows.
func checkRows(t *testing.T, b ingest.Batch) {
	t.Helper()
	for i, r := range b.Rows {
		n := 48 + len(r.Key) + len(r.Source) + len(r.Data) + len(r.Cluster)
		if r.Key == "" || len(r.Key) > store.MaxKeyBytes || !utf8.ValidString(r.Key) {
			t.Fatalf("row %d: key %q breaks the store's key rules", i, r.Key)
		}
		if !utf8.ValidString(r.Data) || !utf8.ValidString(r.Source) {
			t.Fatalf("row %d: data or source is not valid UTF-8", i)
		}
		if len(r.Attributes) > ingest.MaxAttributes {
			t.Fatalf("row %d: %d attributes", i, len(r.Attributes))
		}
		for k, v := range r.Attributes {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				t.Fatalf("row %d: attribute %q is not valid UTF-8", i, k)
			}
			if k == "" || len(k) > ingest.MaxAttributeNameBytes || len(v) > ingest.MaxAttributeValueBytes {
				t.Fatalf("row %d: attribute %q (%d bytes) = %d bytes breaks a limit", i, k, len(k), len(v))
			}
			n += len(k) + len(v)
		}
		if n > store.MaxRowBytes {
			t.Fatalf("row %d: %d bytes with attributes, over MaxRowBytes", i, n)
		}
	}
	for _, rj := range b.Rejected {
		if !errors.Is(rj.Err, ingest.ErrRefused) || rj.Records <= 0 {
			t.Fatalf("rejection %+v: want ErrRefused and a positive count", rj)
		}
	}
}

// FuzzLokiPush: the first byte picks the form (0: the bytes are the
// snappy body, 1: the bytes are snappy-compressed first so they reach the
// protobuf decoder, 2: the bytes are a JSON body). Decoding never panics,
// every row it keeps is storable, and no entry is lost or invented: kept
// plus refused is every entry of the request.
func FuzzLokiPush(f *testing.F) {
	req := &pushpb.PushRequest{Streams: []*pushpb.StreamAdapter{
		{Labels: `{app="api", env="prod", level="info"}`, Entries: []*pushpb.EntryAdapter{
			{Line: "GET / 200", StructuredMetadata: []*pushpb.LabelPairAdapter{{Name: "trace_id", Value: "0af7651916cd43dd"}}},
			{Line: "POST /x 500"},
		}},
		{Labels: `{finelog_key="/user/job/0:1", finelog_cluster="east"}`, Entries: []*pushpb.EntryAdapter{{Line: "x"}}},
		{Labels: `{broken`, Entries: []*pushpb.EntryAdapter{{Line: "refused"}}},
	}}
	raw, _ := proto.Marshal(req)
	f.Add(append([]byte{0}, snappy.Encode(nil, raw)...))
	f.Add(append([]byte{1}, raw...))
	f.Add(append([]byte{2}, `{"streams":[{"stream":{"app":"api"},"values":[["1700000000000000000","line"],["1","x",{"trace_id":"abc"}]]}]}`...))
	f.Add(append([]byte{2}, `{"streams":[{"stream":{"9bad":"x"},"values":[["1","x"]]}]}`...))
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		form, body := in[0]%3, in[1:]
		if form == 2 {
			b, err := ingest.DecodeLokiJSON(body, ingestNowMS)
			if err != nil {
				if !errors.Is(err, ingest.ErrMalformed) {
					t.Fatalf("JSON error %v is not ErrMalformed", err)
				}
				return
			}
			checkRows(t, b)
			return
		}
		if form == 1 {
			body = snappy.Encode(nil, body)
		}
		b, err := ingest.DecodeLokiProto(body, 1<<20, ingestNowMS)
		if err != nil {
			if !errors.Is(err, ingest.ErrMalformed) {
				t.Fatalf("protobuf error %v is not ErrMalformed", err)
			}
			return
		}
		checkRows(t, b)
		plain, err := snappy.Decode(nil, body)
		if err != nil {
			t.Fatalf("decoded a body that is not snappy: %v", err)
		}
		var req pushpb.PushRequest
		if err := proto.Unmarshal(plain, &req); err != nil {
			// The decoder keeps lines with invalid UTF-8, replaced by
			// U+FFFD (checkRows checks the rows are valid), as a shipper's
			// log line may hold any bytes; the reference refuses them.
			if strings.Contains(err.Error(), "invalid UTF-8") {
				return
			}
			t.Fatalf("decoded a body that is not a PushRequest: %v", err)
		}
		total := 0
		for _, s := range req.GetStreams() {
			total += len(s.GetEntries())
		}
		if got := len(b.Rows) + b.RejectedRecords(); got != total {
			t.Fatalf("%d entries in, %d kept + %d refused out", total, len(b.Rows), b.RejectedRecords())
		}
	})
}

// FuzzOTLPLogs: the bytes are an OTLP/HTTP protobuf body (first byte 0)
// or a JSON one (otherwise). Decoding never panics, every kept row is
// storable, kept plus refused is every record, and an export decodes to
// the same rows from protobuf and from its OTLP/JSON form.
func FuzzOTLPLogs(f *testing.F) {
	f.Add(append([]byte{1}, `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
"scopeLogs":[{"scope":{"name":"lib"},"logRecords":[{"timeUnixNano":"1700000000123456789","severityNumber":17,
"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","body":{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}}]}},
"attributes":[{"key":"k","value":{"arrayValue":{"values":[{"doubleValue":1.5},{"boolValue":true}]}}}],"futureField":1}]}]}]}`...))
	f.Add(append([]byte{1}, `{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"zz"}]}]}]}`...))
	f.Add([]byte{0, 0x0a, 0x0d, 0x12, 0x0b, 0x12, 0x09, 0x2a, 0x07, 0x0a, 0x05, 'h', 'e', 'l', 'l', 'o'})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		if in[0] != 0 {
			req, err := ingest.UnmarshalOTLPJSON(in[1:])
			if err != nil {
				if !errors.Is(err, ingest.ErrMalformed) {
					t.Fatalf("JSON error %v is not ErrMalformed", err)
				}
				return
			}
			checkRows(t, ingest.DecodeOTLP(req, ingestNowMS))
			return
		}
		// The server's protobuf path: every kept row storable whatever
		// the bytes (its agreement with the library is FuzzOTLPWire's).
		if wb, err := ingest.DecodeOTLPProto(in[1:], ingestNowMS); err == nil {
			checkRows(t, wb)
		} else if !errors.Is(err, ingest.ErrMalformed) {
			t.Fatalf("protobuf error %v is not ErrMalformed", err)
		}
		req, err := ingest.UnmarshalOTLPProto(in[1:])
		if err != nil {
			return
		}
		b := ingest.DecodeOTLP(req, ingestNowMS)
		checkRows(t, b)
		total, idsOK := 0, true
		for _, rl := range req.GetResourceLogs() {
			for _, sl := range rl.GetScopeLogs() {
				for _, lr := range sl.GetLogRecords() {
					total++
					tl, sl := len(lr.GetTraceId()), len(lr.GetSpanId())
					idsOK = idsOK && (tl == 0 || tl == 16) && (sl == 0 || sl == 8)
				}
			}
		}
		if got := len(b.Rows) + b.RejectedRecords(); got != total {
			t.Fatalf("%d records in, %d kept + %d refused out", total, len(b.Rows), b.RejectedRecords())
		}
		for _, r := range b.Rows {
			if id, ok := r.Attributes["trace_id"]; ok {
				if _, err := hex.DecodeString(id); err != nil {
					t.Fatalf("trace_id %q is not hex", id)
				}
			}
		}
		if !idsOK {
			return // ids of other sizes are not valid OTLP; JSON refuses them
		}
		// protojson writes ids as base64 of the right size, which the
		// JSON decoder keeps: the rows must not change.
		js, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		req2, err := ingest.UnmarshalOTLPJSON(js)
		if err != nil {
			t.Fatalf("OTLP/JSON of a valid export does not decode: %v\n%s", err, js)
		}
		if diff := cmp.Diff(b.Rows, ingest.DecodeOTLP(req2, ingestNowMS).Rows); diff != "" {
			t.Fatalf("protobuf vs its JSON form (-proto +json):\n%s", diff)
		}
	})
}
