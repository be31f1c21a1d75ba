package peer

import (
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

func TestLogLimit(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	l := newLogLimit(clk, 3, time.Second)
	allowed := 0
	for range 100 {
		if ok, _ := l.allow(); ok {
			allowed++
		}
	}
	if allowed != 3 {
		t.Fatalf("a burst of 100 let %d lines through, want 3", allowed)
	}
	clk.Advance(time.Second)
	ok, n := l.allow()
	if !ok || n != 97 {
		t.Fatalf("after a second: allowed %v, suppressed %d, want true and 97", ok, n)
	}
	if ok, _ := l.allow(); ok {
		t.Fatal("a second line in the same second got through")
	}
}
