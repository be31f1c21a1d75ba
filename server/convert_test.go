package server

import (
	"testing"

	"github.com/finelog/finelog/store"
)

// Every entry of a response carries its own row's fields, the attempt
// parsed from its own key, also when keys change between rows.
func TestEntriesFromRowsFields(t *testing.T) {
	attrs, err := store.AttributesOf(store.Attribute{Name: "gpu", Value: "3"})
	if err != nil {
		t.Fatal(err)
	}
	rows := []store.Row{
		{Seq: 1, Key: "/u/job/0:3", Source: "stdout", Data: "a", EpochMS: 10, Level: store.LevelInfo, Cluster: "east"},
		{Seq: 2, Key: "/u/job/0:3", Source: "stderr", Data: "b", EpochMS: 11, Level: store.LevelError, Attributes: attrs},
		{Seq: 3, Key: "/u/job/1:7", Source: "stdout", Data: "c", EpochMS: 12},
		{Seq: 4, Key: "/u/job/2", Data: "d", EpochMS: 13},
		{Seq: 5, Key: "/u/job/0:3", Data: "e", EpochMS: 14},
	}
	wantAttempt := []int32{3, 3, 7, 0, 3}
	got := entriesFromRows(rows)
	if len(got) != len(rows) {
		t.Fatalf("%d entries for %d rows", len(got), len(rows))
	}
	for i, e := range got {
		r := rows[i]
		if e.GetSeq() != r.Seq || e.GetKey() != r.Key || e.GetSource() != r.Source || e.GetData() != r.Data ||
			e.GetTimestamp().GetEpochMs() != r.EpochMS || int32(e.GetLevel()) != r.Level || e.GetCluster() != r.Cluster {
			t.Errorf("entry %d = %v, want the fields of %+v", i, e, r)
		}
		if e.GetAttemptId() != wantAttempt[i] {
			t.Errorf("entry %d (key %q): attempt %d, want %d", i, r.Key, e.GetAttemptId(), wantAttempt[i])
		}
		if want := r.Attributes.Map(); len(e.GetAttributes()) != len(want) || e.GetAttributes()["gpu"] != want["gpu"] {
			t.Errorf("entry %d: attributes %v, want %v", i, e.GetAttributes(), want)
		}
	}
}
