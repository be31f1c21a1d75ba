package peer

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/finelog/finelog/store"
)

func TestRecordsRoundTrip(t *testing.T) {
	in := Records{Floor: 4, PrimaryLast: 9, Records: []store.Record{
		{First: 5, Last: 4, Floor: 4}, // a floor jump
		{First: 5, Last: 7, Floor: 4, Rows: []store.Row{
			{Seq: 5, Key: "/a", Source: "stdout", Data: "one", EpochMS: -1, AttemptID: 3, Level: 99, Cluster: "east"},
			{Seq: 6, Key: "/a", Source: "stdout", Data: "", EpochMS: 2, Level: 2, Cluster: "east"},
			{Seq: 7, Key: "/b", Source: "", Data: "three", EpochMS: 3, Cluster: ""},
		}, Marks: []store.ProducerMark{{Producer: "relay-west", Seq: 1 << 40}}},
		{First: 8, Last: 7, Floor: 4, Marks: []store.ProducerMark{{Producer: "p", Seq: 1}, {Producer: "q", Seq: 2}}},
	}}
	b := EncodeRecords(nil, in)
	out, err := DecodeRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestRecordsRejectMalformed(t *testing.T) {
	one := func(rec store.Record) []byte { return EncodeRecords(nil, Records{Records: []store.Record{rec}}) }
	good := one(store.Record{First: 1, Last: 2, Rows: []store.Row{{Seq: 1, Key: "/k"}, {Seq: 2, Key: "/k"}}})
	rowCount := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(rowCount[recordsHeader+20:], 3) // n_rows disagrees with [1,2]
	firstSame := one(store.Record{First: 1, Last: 1, Rows: []store.Row{{Seq: 1}}})
	binary.BigEndian.PutUint32(firstSame[recordsHeader+24:], sameAsPrev) // the first row's key refers back
	gap := EncodeRecords(nil, Records{Records: []store.Record{{First: 1, Last: 0}, {First: 3, Last: 2}}})
	for name, b := range map[string][]byte{
		"short header":          good[:10],
		"truncated row":         good[:len(good)-3],
		"trailing bytes":        append(append([]byte(nil), good...), 0),
		"row count mismatch":    rowCount,
		"first row refers back": firstSame,
		"gap between records":   gap,
		"huge count":            {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff},
	} {
		_, err := DecodeRecords(b)
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
}
