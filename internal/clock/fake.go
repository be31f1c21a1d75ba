package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a virtual clock for tests and the simulation. Time moves only on
// Advance or Set; timers whose deadline is reached fire in deadline order
// (ties in creation order) so runs are deterministic.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	nextID uint64
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the virtual time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer makes a timer that fires when virtual time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	t := &fakeTimer{f: f, id: f.nextID, at: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
		return t
	}
	f.timers = append(f.timers, t)
	return t
}

// Advance moves virtual time forward by d, firing due timers.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.setLocked(f.now.Add(d))
	f.mu.Unlock()
}

// Set jumps the clock to t, forwards or backwards (a skewed or corrected
// node clock). Timers fire only when virtual time reaches their deadline.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.setLocked(t)
	f.mu.Unlock()
}

// Pending returns how many timers are waiting to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// NextDeadline reports the earliest pending timer deadline.
func (f *Fake) NextDeadline() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.timers) == 0 {
		return time.Time{}, false
	}
	f.sortLocked()
	return f.timers[0].at, true
}

func (f *Fake) sortLocked() {
	sort.SliceStable(f.timers, func(i, j int) bool {
		if !f.timers[i].at.Equal(f.timers[j].at) {
			return f.timers[i].at.Before(f.timers[j].at)
		}
		return f.timers[i].id < f.timers[j].id
	})
}

func (f *Fake) setLocked(t time.Time) {
	f.now = t
	f.sortLocked()
	kept := f.timers[:0]
	for _, tm := range f.timers {
		if !tm.at.After(t) {
			tm.c <- t
			continue
		}
		kept = append(kept, tm)
	}
	for i := len(kept); i < len(f.timers); i++ {
		f.timers[i] = nil
	}
	f.timers = kept
}

type fakeTimer struct {
	f  *Fake
	id uint64
	at time.Time
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for i, tm := range t.f.timers {
		if tm == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			return true
		}
	}
	return false
}
