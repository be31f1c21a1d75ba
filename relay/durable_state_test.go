package relay

import (
	"context"
	"errors"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

// W6's root cause: the relay's seed write renamed the watermark into place
// but its directory sync failed; the next Step read the visible file and
// resumed from it, and a crash then took the file away. A watermark the
// relay has resumed from must survive a crash.
func TestResumedWatermarkSurvivesCrash(t *testing.T) {
	h := newHarness(t)
	h.src.addN(50)
	// The first directory sync is the seed's (written when the relay is
	// enabled); the second is the watermark's.
	syncs := 0
	h.fs.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpSyncDir {
			if syncs++; syncs == 2 {
				return errors.New("injected: syncdir failed")
			}
		}
		return nil
	}
	f := h.forwarder(t)
	if _, err := f.Step(context.Background()); err == nil {
		t.Fatal("first step succeeded although the seed's directory sync failed")
	}
	// The seed is visible now; the relay resumes from it on the next Step
	// (which fails to push, so nothing else is written).
	h.tgt.fail = errors.New("target down")
	f.Step(context.Background())
	h.tgt.fail = nil
	h.fs.Crash(nil)
	w, err := readWatermark(h.fs, statePath)
	if err != nil || w == nil {
		t.Fatalf("after the crash the watermark the relay resumed from is gone (%v, %v)", w, err)
	}
	// And a restarted relay forwards everything from it.
	f = h.forwarder(t)
	h.drain(t, f, 10)
	checkDelivery(t, h.src, h.tgt, h.fs, dlPath, "east", 0, 50)
}

func TestProducerIDSurvivesCrashAfterFailedSync(t *testing.T) {
	fs := vfs.NewMemFS()
	if err := fs.MkdirAll("/r"); err != nil {
		t.Fatal(err)
	}
	failSync := true
	fs.Inject = func(op vfs.Op, name string) error {
		if op == vfs.OpSyncDir && failSync {
			failSync = false
			return errors.New("injected: syncdir failed")
		}
		return nil
	}
	if _, err := LoadProducerID(fs, "/r/producer", "east"); err == nil {
		t.Fatal("creating the producer id succeeded although its directory sync failed")
	}
	id, err := LoadProducerID(fs, "/r/producer", "east")
	if err != nil {
		t.Fatal(err)
	}
	fs.Crash(nil)
	again, err := LoadProducerID(fs, "/r/producer", "east")
	if err != nil || again != id {
		t.Fatalf("after a crash the producer id is %q (%v), was %q: the relay would become a new producer", again, err, id)
	}
}
