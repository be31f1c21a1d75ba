package loggen

import (
	"strings"
	"testing"
	"time"
)

func TestLinesLookReal(t *testing.T) {
	g := New(1, time.Date(2026, 11, 24, 3, 53, 22, 0, time.UTC), 1000)
	total := 0
	prev := int64(0)
	for i := 0; i < 10000; i++ {
		l := g.Next()
		total += len(l.Data)
		if !strings.HasPrefix(l.Key, "/user/job-") || !strings.Contains(l.Data, "["+l.Key[len("/user/"):]+"]") {
			t.Fatalf("line %q for key %q", l.Data, l.Key)
		}
		if l.EpochMS < prev {
			t.Fatal("time went backwards")
		}
		prev = l.EpochMS
	}
	if avg := total / 10000; avg < 110 || avg > 190 {
		t.Fatalf("average line is %d bytes, want about 150", avg)
	}
	a, b := New(7, time.Unix(0, 0), 10), New(7, time.Unix(0, 0), 10)
	if a.Next() != b.Next() {
		t.Fatal("same seed, different lines")
	}
}
