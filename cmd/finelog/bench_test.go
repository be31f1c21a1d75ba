package main

import "testing"

// TestLineGenLooksLikeLogs: the generated lines average about 150 bytes
// (the size the bench targets are stated for) and vary.
func TestLineGenLooksLikeLogs(t *testing.T) {
	g := newLineGen(1)
	const n = 20000
	total, distinct := 0, map[string]bool{}
	for range n {
		e := g.entry()
		total += len(e.Data)
		distinct[e.Data] = true
	}
	avg := float64(total) / n
	t.Logf("average line %.1f bytes", avg)
	if avg < 140 || avg > 160 {
		t.Errorf("average line %.1f bytes, want about 150", avg)
	}
	if len(distinct) < n*99/100 {
		t.Errorf("only %d distinct lines of %d", len(distinct), n)
	}
}
