package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/finelog/finelog/store"
)

// Trace is the ordered record of everything a run did and every outcome it
// saw. Two runs of the same schedule must produce byte-identical traces; the
// determinism test compares their hashes, so anything nondeterministic in
// simulated code (wall time, map order, global rand) shows up as a mismatch.
type Trace struct {
	lines []string
}

// Addf appends one event.
func (t *Trace) Addf(format string, args ...any) {
	t.lines = append(t.lines, fmt.Sprintf(format, args...))
}

// Len is the number of events.
func (t *Trace) Len() int { return len(t.lines) }

// Hash is a hex SHA-256 over every event, in order.
func (t *Trace) Hash() string {
	h := sha256.New()
	for _, l := range t.lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// String is the full trace, one event a line.
func (t *Trace) String() string { return strings.Join(t.lines, "\n") }

// Tail is the last n events, for failure messages that must stay readable.
func (t *Trace) Tail(n int) string {
	if n >= len(t.lines) {
		return t.String()
	}
	return fmt.Sprintf("... (%d earlier events)\n%s", len(t.lines)-n, strings.Join(t.lines[len(t.lines)-n:], "\n"))
}

// FirstDiff reports the first event where two traces differ, for a
// determinism failure that says where the runs diverged.
func FirstDiff(a, b *Trace) string {
	n := min(len(a.lines), len(b.lines))
	for i := 0; i < n; i++ {
		if a.lines[i] != b.lines[i] {
			return fmt.Sprintf("event %d:\n  run 1: %s\n  run 2: %s", i, a.lines[i], b.lines[i])
		}
	}
	if len(a.lines) != len(b.lines) {
		return fmt.Sprintf("run 1 has %d events, run 2 has %d", len(a.lines), len(b.lines))
	}
	return ""
}

// errString keeps trace lines stable: the Connect code plus the message.
func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func ackString(a store.Ack, err error) string {
	if err != nil {
		return "err " + errString(err)
	}
	return fmt.Sprintf("ok first=%d last=%d applied=%d", a.First, a.Last, a.ProducerApplied)
}
