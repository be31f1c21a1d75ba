package federation

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	loggingpb "github.com/finelog/finelog/gen/finelog/logging"
)

func answerBytes(t testing.TB, clusters ...string) []byte {
	t.Helper()
	resp := &loggingpb.FetchLogsResponse{Cursor: 9, MaxLinesApplied: 1000,
		Clusters: []*loggingpb.ClusterStatus{{Cluster: "x", Cursor: -3, Stale: true}}}
	for i, c := range clusters {
		resp.Entries = append(resp.Entries, &loggingpb.LogEntry{
			Timestamp: &loggingpb.Timestamp{EpochMs: int64(i)}, Source: "stdout", Data: "line é", AttemptId: 2,
			Level: loggingpb.LogLevel(42), Key: "/k:2", Seq: int64(i + 1), Cluster: c,
		})
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckAnswer(t *testing.T) {
	good := answerBytes(t, "east", "east", "east")
	if n, err := checkAnswer(good, "east"); n != 3 || err != nil {
		t.Fatalf("valid answer: %d rows, %v", n, err)
	}
	if _, err := checkAnswer(answerBytes(t, "east", "home"), "east"); err == nil || !strings.Contains(err.Error(), `row of cluster "home" (seq 2)`) {
		t.Fatalf("foreign row: %v", err)
	}
	if _, err := checkAnswer(answerBytes(t, ""), "east"); err == nil {
		t.Fatal("a row without a cluster passed")
	}
	entry := func(fields ...[]byte) []byte {
		var e []byte
		for _, f := range fields {
			e = append(e, f...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, fRespEntries, protowire.BytesType), e)
	}
	str := func(num protowire.Number, v string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), v)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	east := str(fEntryCluster, "east")
	for name, raw := range map[string][]byte{
		"invalid UTF-8 data":    entry(str(fEntryData, "\xff\xfe"), east),
		"timestamp inner bytes": entry(protowire.AppendBytes(protowire.AppendTag(nil, fEntryTimestamp, protowire.BytesType), []byte{0x0a, 0x05}), east),
		"bad cluster status":    protowire.AppendBytes(protowire.AppendTag(nil, fRespClusters, protowire.BytesType), []byte{0x0a, 0x01, 0xff}),
		"truncated":             good[:len(good)-3],
	} {
		if _, err := checkAnswer(raw, "east"); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if proto.Unmarshal(raw, &loggingpb.FetchLogsResponse{}) == nil {
			t.Errorf("%s: proto.Unmarshal accepts what checkAnswer refuses", name)
		}
	}
	// A known field with another wire type is an unknown field to the
	// protobuf decoders, so it passes; a cluster sent that way is absent.
	if n, err := checkAnswer(entry(varint(fEntryData, 1), str(fEntrySeq, "1"), east), "east"); n != 1 || err != nil {
		t.Errorf("mistyped fields: %d %v", n, err)
	}
	if _, err := checkAnswer(entry(varint(fEntryCluster, 1)), "east"); err == nil {
		t.Error("a cluster sent as a varint counted as east")
	}
	// Unknown fields are tolerated, in the answer and in an entry.
	withUnknown := append(entry(varint(900, 7), east), varint(901, 1)...)
	if n, err := checkAnswer(withUnknown, "east"); n != 1 || err != nil {
		t.Fatalf("unknown fields: %d %v", n, err)
	}
}

func TestAnswerCodecRoundTrip(t *testing.T) {
	good := answerBytes(t, "east", "east")
	var resp loggingpb.FetchLogsResponse
	buf := append([]byte(nil), good...)
	if err := (answerCodec{}).Unmarshal(buf, &resp); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 0 // connect reuses its buffer; the answer must not change
	}
	out, err := proto.Marshal(&resp)
	if err != nil || string(out) != string(good) {
		t.Fatalf("pass-through bytes differ from the peer's (%v)", err)
	}
	if err := Decode(&resp); err != nil || len(resp.Entries) != 2 || resp.Cursor != 9 || resp.Entries[1].Seq != 2 || len(resp.ProtoReflect().GetUnknown()) != 0 {
		t.Fatalf("decoded: %v %v", &resp, err)
	}
}

// FuzzCheckAnswer: checkAnswer accepts only what the protobuf decoder
// accepts, and then exactly when every row is of the peer's cluster.
func FuzzCheckAnswer(f *testing.F) {
	f.Add(answerBytes(f, "east", "east"))
	f.Add(answerBytes(f, "east", "west"))
	f.Add(answerBytes(f))
	f.Add([]byte{0x0a, 0x02, 0x1a, 0xff})
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := checkAnswer(raw, "east")
		var resp loggingpb.FetchLogsResponse
		decErr := proto.Unmarshal(raw, &resp)
		if err == nil {
			if decErr != nil {
				t.Fatalf("checkAnswer accepted what proto refuses: %v", decErr)
			}
			if n != len(resp.Entries) {
				t.Fatalf("counted %d rows, decoded %d", n, len(resp.Entries))
			}
			for _, e := range resp.Entries {
				if e.Cluster != "east" {
					t.Fatalf("accepted a row of cluster %q", e.Cluster)
				}
			}
			return
		}
		if decErr == nil {
			for _, e := range resp.Entries {
				if e.Cluster != "east" {
					return // refused for the foreign row: right
				}
			}
			t.Fatalf("checkAnswer refused (%v) an answer proto decodes with every row of east", err)
		}
	})
}
