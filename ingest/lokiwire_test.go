package ingest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pushpb "github.com/finelog/finelog/gen/loki/push"
)

type wireStream struct {
	labels  string
	entries []lokiEntry
}

// decodeGeneric is the oracle: the same walk over a PushRequest decoded
// by the protobuf library.
func decodeGeneric(raw []byte) ([]wireStream, error) {
	var req pushpb.PushRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		return nil, err
	}
	var out []wireStream
	for _, s := range req.GetStreams() {
		ws := wireStream{labels: s.GetLabels()}
		for _, e := range s.GetEntries() {
			ts := e.GetTimestamp()
			le := lokiEntry{ns: ts.GetSeconds()*1e9 + int64(ts.GetNanos()), line: e.GetLine(), noTimestamp: ts == nil}
			for _, m := range e.GetStructuredMetadata() {
				le.meta = append(le.meta, label{m.GetName(), m.GetValue()})
			}
			ws.entries = append(ws.entries, le)
		}
		out = append(out, ws)
	}
	return out, nil
}

func decodeWire(raw []byte) ([]wireStream, error) {
	var out []wireStream
	var d lokiWire
	err := d.decode(raw, func(labels string, entries []lokiEntry) {
		out = append(out, wireStream{labels: labels, entries: append([]lokiEntry(nil), entries...)})
	})
	return out, err
}

var wireCmp = cmp.AllowUnexported(wireStream{}, lokiEntry{}, label{})

// checkWireMatchesProto: where the library decodes, the hand decoder
// decodes to the same streams; where the library fails, the hand decoder
// fails too, unless the library's only complaint is invalid UTF-8, which
// the hand decoder replaces.
func checkWireMatchesProto(t *testing.T, raw []byte) {
	t.Helper()
	want, gerr := decodeGeneric(raw)
	got, werr := decodeWire(raw)
	switch {
	case gerr == nil && werr != nil:
		t.Fatalf("library decodes, hand decoder fails: %v", werr)
	case gerr == nil:
		if diff := cmp.Diff(want, got, wireCmp); diff != "" {
			t.Fatalf("(-library +hand):\n%s", diff)
		}
	case werr == nil && !strings.Contains(gerr.Error(), "UTF-8"):
		t.Fatalf("library fails (%v), hand decoder decodes %v", gerr, got)
	}
}

func TestLokiWireMatchesProto(t *testing.T) {
	full, _ := proto.Marshal(&pushpb.PushRequest{Streams: []*pushpb.StreamAdapter{
		{Labels: `{a="b"}`, Hash: 99, Entries: []*pushpb.EntryAdapter{
			{Timestamp: &timestamppb.Timestamp{Seconds: -5, Nanos: 999_999_999}, Line: "x",
				StructuredMetadata: []*pushpb.LabelPairAdapter{{Name: "k", Value: "v"}, {Name: "", Value: ""}}},
			{},
		}},
		{},
	}})
	var merged []byte // a repeated timestamp merges; a repeated line: last wins
	ts1, _ := proto.Marshal(&timestamppb.Timestamp{Seconds: 7})
	ts2, _ := proto.Marshal(&timestamppb.Timestamp{Nanos: 3})
	ent := protowire.AppendTag(nil, 1, protowire.BytesType)
	ent = protowire.AppendBytes(ent, ts1)
	ent = protowire.AppendTag(ent, 2, protowire.BytesType)
	ent = protowire.AppendString(ent, "first")
	ent = protowire.AppendTag(ent, 1, protowire.BytesType)
	ent = protowire.AppendBytes(ent, ts2)
	ent = protowire.AppendTag(ent, 2, protowire.BytesType)
	ent = protowire.AppendString(ent, "second")
	ent = protowire.AppendTag(ent, 2, protowire.VarintType) // wrong wire type: unknown
	ent = protowire.AppendVarint(ent, 1)
	ent = protowire.AppendTag(ent, 50, protowire.Fixed32Type)
	ent = append(ent, 1, 2, 3, 4)
	st := protowire.AppendTag(nil, 2, protowire.BytesType)
	st = protowire.AppendBytes(st, ent)
	merged = protowire.AppendTag(nil, 1, protowire.BytesType)
	merged = protowire.AppendBytes(merged, st)
	for name, raw := range map[string][]byte{
		"full":      full,
		"merged":    merged,
		"empty":     {},
		"truncated": full[:len(full)-3],
		"field 0":   {0x00, 0x01},
		"bad UTF-8": append(protowire.AppendTag(nil, 1, protowire.BytesType), 4, 0x0a, 2, 0xff, 0xfe),
	} {
		t.Run(name, func(t *testing.T) { checkWireMatchesProto(t, raw) })
	}
	got, err := decodeWire(append(protowire.AppendTag(nil, 1, protowire.BytesType), 4, 0x0a, 2, 0xff, 'a'))
	if err != nil || got[0].labels != "\uFFFDa" {
		t.Errorf("invalid UTF-8 labels decode to %+v (%v), want the bad byte replaced", got, err)
	}
}

// FuzzLokiWire checks the hand decoder against the protobuf library.
func FuzzLokiWire(f *testing.F) {
	full, _ := proto.Marshal(&pushpb.PushRequest{Streams: []*pushpb.StreamAdapter{
		{Labels: `{a="b"}`, Entries: []*pushpb.EntryAdapter{
			{Timestamp: &timestamppb.Timestamp{Seconds: 1, Nanos: 2}, Line: "x", StructuredMetadata: []*pushpb.LabelPairAdapter{{Name: "k", Value: "v"}}}}},
	}})
	f.Add(full)
	f.Add([]byte{})
	f.Fuzz(checkWireMatchesProto)
}
