package server

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"pgregory.net/rapid"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

// dropUnknown clears unknown fields everywhere (decodePush skips them; the
// library keeps them).
func dropUnknown(m protoreflect.Message) {
	m.SetUnknown(nil)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				dropUnknown(v.List().Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			dropUnknown(v.Message())
		}
		return true
	})
}

func genString(t *rapid.T, label string) string {
	return rapid.OneOf(
		rapid.Just(""),
		rapid.StringMatching(`[a-z/:0-9]{0,12}`),
		rapid.String(),
	).Draw(t, label)
}

func genPush(t *rapid.T) *loggingpb.PushLogsRequest {
	req := &loggingpb.PushLogsRequest{
		Key:      genString(t, "key"),
		Cluster:  genString(t, "cluster"),
		Producer: genString(t, "producer"),
		FirstSeq: rapid.Int64().Draw(t, "first"),
		LastSeq:  rapid.Int64().Draw(t, "last"),
	}
	for i := range rapid.IntRange(0, 6).Draw(t, "entries") {
		_ = i
		e := &loggingpb.LogEntry{
			Source:    genString(t, "source"),
			Data:      genString(t, "data"),
			AttemptId: rapid.Int32().Draw(t, "attempt"),
			Level:     loggingpb.LogLevel(rapid.Int32().Draw(t, "level")),
			Key:       genString(t, "ekey"),
			Seq:       rapid.Int64().Draw(t, "seq"),
			Cluster:   genString(t, "ecluster"),
		}
		for range rapid.IntRange(0, 3).Draw(t, "attrs") {
			if e.Attributes == nil {
				e.Attributes = map[string]string{}
			}
			e.Attributes[genString(t, "aname")] = genString(t, "avalue")
		}
		if rapid.Bool().Draw(t, "hasTS") {
			e.Timestamp = &loggingpb.Timestamp{EpochMs: rapid.Int64().Draw(t, "ts")}
		}
		req.Entries = append(req.Entries, e)
	}
	return req
}

// check decodes b both ways: they must agree on success, and on the
// message (ignoring unknown fields) when both succeed.
func check(t interface {
	Fatalf(string, ...any)
}, b []byte) {
	want := &loggingpb.PushLogsRequest{}
	wantErr := proto.Unmarshal(b, want)
	got := &loggingpb.PushLogsRequest{}
	gotErr := decodePush(b, got)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("input %x: library error %v, decodePush error %v", b, wantErr, gotErr)
	}
	if wantErr != nil {
		return
	}
	dropUnknown(want.ProtoReflect())
	if !proto.Equal(want, got) {
		t.Fatalf("input %x:\nlibrary    %v\ndecodePush %v", b, want, got)
	}
}

func TestPushDecoderMatchesProto(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		b, err := proto.Marshal(genPush(t))
		if err != nil {
			t.Fatal(err)
		}
		// Extra fields the decoder must skip or merge: unknown numbers,
		// known numbers with the wrong wire type, a second timestamp.
		for range rapid.IntRange(0, 3).Draw(t, "extras") {
			num := protowire.Number(rapid.SampledFrom([]int{1, 2, 3, 7, 100, 101, 102, 999}).Draw(t, "num"))
			switch rapid.IntRange(0, 2).Draw(t, "wt") {
			case 0:
				b = protowire.AppendTag(b, num, protowire.VarintType)
				b = protowire.AppendVarint(b, rapid.Uint64().Draw(t, "v"))
			case 1:
				b = protowire.AppendTag(b, num, protowire.Fixed64Type)
				b = protowire.AppendFixed64(b, rapid.Uint64().Draw(t, "v"))
			case 2:
				b = protowire.AppendTag(b, num, protowire.BytesType)
				b = protowire.AppendBytes(b, []byte(rapid.String().Draw(t, "bytes")))
			}
		}
		// A hand-made attributes entry appended to a last entry: repeated
		// keys, missing key or value, unknown and mistyped fields inside.
		if rapid.Bool().Draw(t, "rawAttr") {
			var me []byte
			for range rapid.IntRange(0, 3).Draw(t, "meFields") {
				num := protowire.Number(rapid.SampledFrom([]int{1, 2, 3}).Draw(t, "meNum"))
				if rapid.Bool().Draw(t, "meBytes") {
					me = protowire.AppendTag(me, num, protowire.BytesType)
					me = protowire.AppendString(me, genString(t, "meVal"))
				} else {
					me = protowire.AppendTag(me, num, protowire.VarintType)
					me = protowire.AppendVarint(me, rapid.Uint64().Draw(t, "meInt"))
				}
			}
			ent := protowire.AppendTag(nil, fEntAttrs, protowire.BytesType)
			ent = protowire.AppendBytes(ent, me)
			b = protowire.AppendTag(b, fReqEntries, protowire.BytesType)
			b = protowire.AppendBytes(b, ent)
		}
		check(t, b)
		// Corrupt it: the two decoders must still agree.
		if len(b) > 0 {
			i := rapid.IntRange(0, len(b)-1).Draw(t, "at")
			c := append([]byte(nil), b...)
			c[i] = rapid.Byte().Draw(t, "byte")
			check(t, c)
			check(t, b[:i])
		}
	})
}

func TestPushDecoderRejectsInvalidUTF8(t *testing.T) {
	bad := string([]byte{0xff, 0xfe})
	if utf8.ValidString(bad) {
		t.Fatal("test string is valid UTF-8")
	}
	b := protowire.AppendTag(nil, fReqEntries, protowire.BytesType)
	inner := protowire.AppendTag(nil, fEntData, protowire.BytesType)
	inner = protowire.AppendString(inner, bad)
	b = protowire.AppendBytes(b, inner)
	if err := decodePush(b, &loggingpb.PushLogsRequest{}); err == nil {
		t.Fatal("invalid UTF-8 in data accepted")
	}
	check(t, b)
	for _, field := range []protowire.Number{fMapKey, fMapValue} {
		me := protowire.AppendTag(nil, field, protowire.BytesType)
		me = protowire.AppendString(me, bad)
		ent := protowire.AppendTag(nil, fEntAttrs, protowire.BytesType)
		ent = protowire.AppendBytes(ent, me)
		b := protowire.AppendTag(nil, fReqEntries, protowire.BytesType)
		b = protowire.AppendBytes(b, ent)
		if err := decodePush(b, &loggingpb.PushLogsRequest{}); err == nil {
			t.Fatalf("invalid UTF-8 in an attribute's field %d accepted", field)
		}
		check(t, b)
	}
}

func FuzzPushDecoder(f *testing.F) {
	seed, _ := proto.Marshal(&loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{{Data: "x", Timestamp: &loggingpb.Timestamp{EpochMs: 5}, Level: 9}}})
	f.Add(seed)
	f.Add([]byte{0x12, 0x02, 0x0a, 0x00})
	withAttrs, _ := proto.Marshal(&loggingpb.PushLogsRequest{Key: "/k", Entries: []*loggingpb.LogEntry{{Data: "x", Attributes: map[string]string{"env": "prod", "": "v", "k": ""}}}})
	f.Add(withAttrs)
	f.Fuzz(func(t *testing.T, b []byte) { check(t, b) })
}

func BenchmarkDecodePush(b *testing.B) {
	g := newBenchReq()
	data, _ := proto.Marshal(g)
	b.Run("library", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			m := &loggingpb.PushLogsRequest{}
			if err := proto.Unmarshal(data, m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decodePush", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			m := &loggingpb.PushLogsRequest{}
			if err := decodePush(data, m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func newBenchReq() *loggingpb.PushLogsRequest {
	req := &loggingpb.PushLogsRequest{Key: "/bench/job-1/task-0:0"}
	for i := range 1000 {
		req.Entries = append(req.Entries, &loggingpb.LogEntry{
			Timestamp: &loggingpb.Timestamp{EpochMs: 1795495938378 + int64(i)},
			Source:    "stdout",
			Data:      "I1124 04:22:01.123456   12345 trainer.py:412] epoch 3 step 1234 loss=0.1234 lr=3.00e-04 grad_norm=1.234 tokens/s=45678 mem=23.4GiB",
			Level:     loggingpb.LogLevel_LOG_LEVEL_INFO,
		})
	}
	return req
}
