package main

import (
	"testing"
	"time"

	"github.com/finelog/finelog/internal/loggen"
)

// TestBenchLinesLookLikeLogs: the pushed lines average about 150 bytes (the
// size the bench targets are stated for) and vary.
func TestBenchLinesLookLikeLogs(t *testing.T) {
	g := loggen.New(1, time.Unix(0, 0), 1000)
	const n = 20000
	total, distinct := 0, map[string]bool{}
	for i := range n {
		e := benchEntry(g, loggen.Key(i%1000))
		total += len(e.Data)
		distinct[e.Data] = true
	}
	avg := float64(total) / n
	t.Logf("average line %.1f bytes", avg)
	if avg < 130 || avg > 170 {
		t.Errorf("average line %.1f bytes, want about 150", avg)
	}
	if len(distinct) < n*99/100 {
		t.Errorf("only %d distinct lines of %d", len(distinct), n)
	}
}
