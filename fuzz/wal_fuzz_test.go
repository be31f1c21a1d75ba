// Package fuzz holds finelog's fuzz targets; their seed corpora are
// committed under testdata/fuzz/<Target>/ and run as plain tests.
package fuzz

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/finelog/finelog/store"
)

// FuzzWALRecord: decoding arbitrary bytes never panics, and a record is
// returned only when its CRC32C matches and its rows agree with its seq range.
func FuzzWALRecord(f *testing.F) {
	f.Add([]byte{})
	f.Add(store.AppendWALRecord(nil, store.WALRecord{First: 1, Last: 2, Rows: []store.Row{
		{Key: "/user/job-1/task-0", Source: "stdout", Data: "2026-11-24T03:53:22Z INFO hello", EpochMS: 1795489200000, Level: 2},
		{Key: "/user/job-1/task-0:3", Data: "x", AttemptID: 3, Cluster: "east"},
	}}))
	attrs, _ := store.MakeAttributes(map[string]string{"env": "prod", "trace_id": "0af7651916cd43dd"})
	f.Add(store.AppendWALRecord(nil, store.WALRecord{First: 3, Last: 5, Rows: []store.Row{
		{Key: "/k", Data: "a", Attributes: attrs}, {Key: "/k", Data: "b", Attributes: attrs}, {Key: "/k", Data: "c"},
	}}))
	f.Add(store.AppendWALRecord(nil, store.WALRecord{First: 7, Last: 6, Marks: []store.ProducerMark{{Producer: "relay", Seq: 99}}}))
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, n, err := store.DecodeWALRecord(b)
		if err != nil {
			return
		}
		if n < 24 || n > len(b) {
			t.Fatalf("decoded length %d of %d bytes", n, len(b))
		}
		if got, want := crc32.Checksum(b[4:n], castagnoli), binary.LittleEndian.Uint32(b); got != want {
			t.Fatalf("decoded a record whose crc32c %08x does not match the header's %08x", got, want)
		}
		if int64(len(rec.Rows)) != rec.Last-rec.First+1 {
			t.Fatalf("record [%d,%d] has %d rows", rec.First, rec.Last, len(rec.Rows))
		}
		for i, r := range rec.Rows {
			if r.Seq != rec.First+int64(i) {
				t.Fatalf("row %d has seq %d in record starting at %d", i, r.Seq, rec.First)
			}
		}
		// Re-encoding a decoded record decodes to the same record.
		again, _, err := store.DecodeWALRecord(store.AppendWALRecord(nil, rec))
		if err != nil || again.First != rec.First || len(again.Rows) != len(rec.Rows) {
			t.Fatalf("re-encoded record does not round-trip: %v", err)
		}
		for i := range rec.Rows {
			if again.Rows[i] != rec.Rows[i] {
				t.Fatalf("row %d re-encoded as %+v, was %+v", i, again.Rows[i], rec.Rows[i])
			}
		}
	})
}
