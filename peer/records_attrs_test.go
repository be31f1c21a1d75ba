package peer

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/finelog/finelog/store"
)

// The docs/replica.md example of a record whose row has attributes, byte
// for byte, and the same record without them keeps the format from before
// attributes existed (n_rows without bit 31, no attributes field).
func TestRecordsAttributesVector(t *testing.T) {
	attrs, err := store.MakeAttributes(map[string]string{"env": "prod"})
	if err != nil {
		t.Fatal(err)
	}
	row := store.Row{Seq: 7, Key: "/k", Source: "s", Data: "hi", EpochMS: 5, Level: 2, Cluster: "c", Attributes: attrs}
	r := Records{PrimaryLast: 7, Records: []store.Record{{First: 7, Last: 7, Rows: []store.Row{row}}}}
	want := strings.Join(strings.Fields(`0000000000000000 0000000000000007 00000001 0000000000000007
	0000000000000007 00000000 80000001 00000002 2f6b 00000001 73 00000002 6869
	0000000000000005 00000000 00000002 00000001 63 00000009 03656e760470726f64`), "")
	b := EncodeRecords(nil, r)
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	got, err := DecodeRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	if g := got.Records[0].Rows[0]; g.Attributes != attrs || g.Cluster != "c" || g.Data != "hi" {
		t.Fatalf("decoded row %+v", g)
	}

	row.Attributes = ""
	r.Records[0].Rows = []store.Row{row}
	plain := hex.EncodeToString(EncodeRecords(nil, r))
	if wantPlain := strings.Replace(strings.TrimSuffix(want, "0000000903656e760470726f64"), "80000001", "00000001", 1); plain != wantPlain {
		t.Fatalf("record without attributes\n got %s\nwant %s", plain, wantPlain)
	}

	// Rows after the first may repeat the previous row's attributes; the
	// first may not.
	two := Records{PrimaryLast: 8, Records: []store.Record{{First: 7, Last: 8, Rows: []store.Row{
		{Seq: 7, Key: "/k", Attributes: attrs}, {Seq: 8, Key: "/k", Attributes: attrs}}}}}
	got, err = DecodeRecords(EncodeRecords(nil, two))
	if err != nil || got.Records[0].Rows[1].Attributes != attrs {
		t.Fatalf("repeated attributes: %+v, %v", got, err)
	}
	bad, _ := hex.DecodeString(strings.Replace(want, "0000000903656e760470726f64", "ffffffff", 1))
	if _, err := DecodeRecords(bad); err == nil {
		t.Fatal("a first row that repeats the previous row's attributes was accepted")
	}
}
