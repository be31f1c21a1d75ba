package peer

import (
	"sync"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// logLimit lets a burst of lines through, then one per interval, so a flood
// of bad handshakes cannot fill the disk with log lines. Suppressed lines
// are counted and reported with the next one allowed.
type logLimit struct {
	clk      clock.Clock
	burst    int
	interval time.Duration

	mu         sync.Mutex
	tokens     int
	last       time.Time
	suppressed int
}

func newLogLimit(clk clock.Clock, burst int, interval time.Duration) *logLimit {
	return &logLimit{clk: clk, burst: burst, interval: interval, tokens: burst, last: clk.Now()}
}

// allow reports whether to log now, and how many lines were suppressed
// since the last one logged.
func (l *logLimit) allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clk.Now()
	if refill := int(now.Sub(l.last) / l.interval); refill > 0 {
		l.tokens = min(l.burst, l.tokens+refill)
		l.last = l.last.Add(time.Duration(refill) * l.interval)
	}
	if l.tokens == 0 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
