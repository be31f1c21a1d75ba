package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	randv2 "math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
)

const (
	testSegDir  = "/data/segments"
	testTierDir = "/data/objstore"
)

// writeSeg makes a durable local segment file holding deterministic bytes
// for its seq range.
func writeSeg(t testing.TB, fsys vfs.FS, first, last int64, producers map[string]int64) Segment {
	t.Helper()
	name := fmt.Sprintf("%016d-%016d.parquet", first, last)
	path := filepath.Join(testSegDir, name)
	if err := fsys.MkdirAll(testSegDir); err != nil {
		t.Fatal(err)
	}
	if err := vfs.WriteFileAtomic(fsys, path, segBytes(first, last)); err != nil {
		t.Fatal(err)
	}
	return Segment{Name: name, Path: path, First: first, Last: last, Rows: last - first + 1, MinEpochMS: first * 1000, MaxEpochMS: last * 1000, Producers: producers}
}

func segBytes(first, last int64) []byte {
	var b bytes.Buffer
	for s := first; s <= last; s++ {
		fmt.Fprintf(&b, "row %d payload %x\n", s, s*7919)
	}
	return b.Bytes()
}

func openTestTier(t testing.TB, fsys vfs.FS, b Bucket, clk clock.Clock) *Tier {
	t.Helper()
	tier, err := OpenTier(context.Background(), TierOptions{FS: fsys, Dir: testTierDir, Bucket: b, Clock: clk,
		Rand: randv2.New(randv2.NewPCG(1, 2)), MinBackoff: time.Second, MaxBackoff: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return tier
}

// drain steps the tier to completion, advancing the fake clock over
// backoffs; it fails the test after too many steps.
func drain(t testing.TB, tier *Tier, clk *clock.Fake) {
	t.Helper()
	for i := 0; i < 1000; i++ {
		more, err := tier.Step(context.Background())
		if err != nil {
			if !Retryable(err) && !errors.Is(err, ErrBackoff) {
				t.Fatalf("step: %v", err)
			}
			clk.Advance(time.Minute)
			continue
		}
		if !more {
			return
		}
	}
	t.Fatal("tier did not drain in 1000 steps")
}

// checkBucket asserts the crash invariant on a manifest: every entry names
// an object holding exactly the bytes it records.
func checkEntries(t testing.TB, b *MemBucket, m Manifest, what string) {
	t.Helper()
	for _, e := range m.Entries {
		info, err := b.Stat(context.Background(), e.Object)
		if err != nil {
			t.Fatalf("%s manifest gen %d names %s but the bucket has no such object: %v", what, m.Generation, e.Object, err)
		}
		if info.Size != e.Size || info.SHA256 != e.SHA256 {
			t.Fatalf("%s manifest entry %s: object is %d bytes sha %s, entry says %d bytes sha %s", what, e.Object, info.Size, info.SHA256, e.Size, e.SHA256)
		}
	}
}

func objectOf(t testing.TB, m Manifest, s Segment) string {
	t.Helper()
	e, ok := m.FindSegment(s.Name)
	if !ok {
		t.Fatalf("segment %s not in manifest gen %d", s.Name, m.Generation)
	}
	return e.Object
}

func readObject(t testing.TB, b Bucket, name string) []byte {
	t.Helper()
	info, err := b.Stat(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := b.GetRange(context.Background(), name, 0, info.Size)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestTierUploadsVerifiesAndPublishes(t *testing.T) {
	fsys, b, clk := vfs.NewMemFS(), NewMemBucket("b"), clock.NewFake(time.Unix(1000, 0))
	tier := openTestTier(t, fsys, b, clk)
	segs := []Segment{
		writeSeg(t, fsys, 1, 10, map[string]int64{"east": 4}),
		writeSeg(t, fsys, 11, 25, map[string]int64{"east": 9, "west": 3}),
	}
	for _, s := range segs {
		tier.Sealed(s)
		if tier.Uploaded(s) {
			t.Fatalf("%s reported uploaded before any step", s.Name)
		}
	}
	drain(t, tier, clk)
	for _, s := range segs {
		if !tier.Uploaded(s) {
			t.Fatalf("%s not uploaded after drain", s.Name)
		}
		if got := readObject(t, b, objectOf(t, tier.Published(), s)); !bytes.Equal(got, segBytes(s.First, s.Last)) {
			t.Fatalf("object %s differs from the local segment", s.Name)
		}
	}
	m, err := LoadManifest(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) != 2 || m.HighestSeq() != 25 || m.Producers()["east"] != 9 || m.Producers()["west"] != 3 {
		t.Fatalf("bucket manifest = %+v", m)
	}
	checkEntries(t, b, m, "bucket")
	// Sealing an already published segment again (a store restart hands
	// over every local segment) uploads nothing.
	tier.Sealed(segs[0])
	if tier.Pending() {
		t.Fatal("re-sealing a published segment queued work")
	}
}

func TestTierFaultsRetryWithBackoff(t *testing.T) {
	for _, tc := range []struct {
		fault Fault
		want  error
	}{
		{FaultInternal, ErrUnavailable},
		{FaultSlowDown, ErrUnavailable},
		{FaultDown, ErrUnavailable},
		{FaultTorn, ErrVerify},
		{FaultApplyLoseReply, ErrUnavailable},
	} {
		t.Run(fmt.Sprint(tc.fault), func(t *testing.T) {
			fsys, b, clk := vfs.NewMemFS(), NewMemBucket("logs"), clock.NewFake(time.Unix(1000, 0))
			failures := 3
			b.Fault = func(op Op, name string) Fault {
				if op == OpPut && strings.HasPrefix(name, segmentsDir) && failures > 0 {
					failures--
					return tc.fault
				}
				return FaultNone
			}
			tier := openTestTier(t, fsys, b, clk)
			seg := writeSeg(t, fsys, 1, 50, nil)
			tier.Sealed(seg)
			_, err := tier.Step(context.Background())
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "mem://logs") {
				t.Fatalf("first step error = %v, want %v naming the bucket", err, tc.want)
			}
			if _, err := tier.Step(context.Background()); !errors.Is(err, ErrBackoff) {
				t.Fatalf("immediate retry error = %v, want ErrBackoff", err)
			}
			if tier.Uploaded(seg) || len(tier.Manifest().Entries) != 0 {
				t.Fatal("a failed upload reached the manifest")
			}
			first := tier.RetryAt()
			clk.Set(first)
			if _, err := tier.Step(context.Background()); err == nil {
				t.Fatal("second attempt should fail too")
			}
			if second := tier.RetryAt().Sub(first); second < time.Second {
				t.Fatalf("backoff after two failures is %v, want it to grow past 1s", second)
			}
			drain(t, tier, clk)
			if !tier.Uploaded(seg) {
				t.Fatal("not uploaded once the bucket recovered")
			}
			if got := readObject(t, b, objectOf(t, tier.Published(), seg)); !bytes.Equal(got, segBytes(1, 50)) {
				t.Fatal("object bytes differ after retries")
			}
		})
	}
}

func TestTierMergeDeletesInputsOnlyAfterPublish(t *testing.T) {
	fsys, b, clk := vfs.NewMemFS(), NewMemBucket("b"), clock.NewFake(time.Unix(1000, 0))
	tier := openTestTier(t, fsys, b, clk)
	a, c := writeSeg(t, fsys, 1, 10, nil), writeSeg(t, fsys, 11, 20, nil)
	tier.Sealed(a)
	tier.Sealed(c)
	drain(t, tier, clk)
	inputs := []string{objectOf(t, tier.Published(), a), objectOf(t, tier.Published(), c)}
	merged := writeSeg(t, fsys, 1, 20, map[string]int64{"p": 20})
	tier.Sealed(merged)
	if _, err := tier.Step(context.Background()); err != nil { // upload + local manifest
		t.Fatal(err)
	}
	pub, _ := LoadManifest(context.Background(), b)
	checkEntries(t, b, pub, "bucket")
	if _, err := b.Stat(context.Background(), inputs[0]); err != nil {
		t.Fatalf("input deleted before the manifest without it was published: %v", err)
	}
	drain(t, tier, clk)
	pub, _ = LoadManifest(context.Background(), b)
	if len(pub.Entries) != 1 || pub.Entries[0].Segment != merged.Name {
		t.Fatalf("bucket manifest after merge = %+v", pub.Entries)
	}
	for _, obj := range inputs {
		if _, err := b.Stat(context.Background(), obj); !errors.Is(err, ErrNotFound) {
			t.Fatalf("merge input %s still in the bucket: %v", obj, err)
		}
	}
	tier.Deleted([]string{merged.Name})
	drain(t, tier, clk)
	pub, _ = LoadManifest(context.Background(), b)
	if len(pub.Entries) != 0 {
		t.Fatalf("retention left %+v in the manifest", pub.Entries)
	}
	for _, n := range b.Names() {
		if strings.HasPrefix(n, segmentsDir) {
			t.Fatalf("retained segment object %s left in the bucket", n)
		}
	}
}

func TestTierRecoversFromBucketAlone(t *testing.T) {
	fsys, b, clk := vfs.NewMemFS(), NewMemBucket("b"), clock.NewFake(time.Unix(1000, 0))
	tier := openTestTier(t, fsys, b, clk)
	tier.Sealed(writeSeg(t, fsys, 1, 100, map[string]int64{"east": 70}))
	tier.Sealed(writeSeg(t, fsys, 101, 130, map[string]int64{"east": 88}))
	drain(t, tier, clk)

	fresh := openTestTier(t, vfs.NewMemFS(), b, clk)
	m := fresh.Manifest()
	if m.HighestSeq() != 130 || m.Producers()["east"] != 88 || len(m.Entries) != 2 {
		t.Fatalf("recovered manifest = %+v", m)
	}
	if !fresh.Published().Covers(1, 100) || !fresh.Published().Covers(101, 130) {
		t.Fatal("recovered tier does not treat the bucket's segments as uploaded")
	}
}

func TestTierStartsWhileBucketDown(t *testing.T) {
	fsys, b, clk := vfs.NewMemFS(), NewMemBucket("b"), clock.NewFake(time.Unix(1000, 0))
	tier := openTestTier(t, fsys, b, clk)
	seg := writeSeg(t, fsys, 1, 10, nil)
	tier.Sealed(seg)
	drain(t, tier, clk)
	b.Fault = func(Op, string) Fault { return FaultDown }
	again := openTestTier(t, fsys, b, clk)
	if len(again.Manifest().Entries) != 1 {
		t.Fatal("local manifest not used while the bucket is down")
	}
	if again.Uploaded(seg) {
		t.Fatal("segment counted as safely uploaded while the bucket could not confirm it")
	}
	b.Fault = nil
	drain(t, again, clk)
	if !again.Uploaded(seg) {
		t.Fatal("not confirmed once the bucket is back")
	}
	// With neither a local manifest nor a reachable bucket, start fails
	// naming the bucket rather than starting empty.
	b.Fault = func(Op, string) Fault { return FaultDown }
	_, err := OpenTier(context.Background(), TierOptions{FS: vfs.NewMemFS(), Dir: testTierDir, Bucket: b, Clock: clk})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "mem://b") {
		t.Fatalf("open with no local manifest and bucket down: %v", err)
	}
}

// TestTierCrashAtEveryStep cuts the process at every filesystem and bucket
// operation of an upload / merge / retention schedule, crashes the disk,
// restarts, and checks: no manifest copy ever names a missing or different
// object; after the restart finishes, the bucket holds every local row and
// garbage collection leaves only referenced objects.
func TestTierCrashAtEveryStep(t *testing.T) {
	for cut := 1; ; cut++ {
		fsys, b, clk := vfs.NewMemFS(), NewMemBucket("b"), clock.NewFake(time.Unix(1000, 0))
		segs := []Segment{writeSeg(t, fsys, 1, 10, nil), writeSeg(t, fsys, 11, 20, nil), writeSeg(t, fsys, 21, 30, nil)}
		ops, crashed := 0, false
		hit := func() bool {
			ops++
			if ops == cut {
				crashed = true
			}
			return crashed
		}
		fsys.Inject = func(op vfs.Op, name string) error {
			if strings.HasPrefix(name, testTierDir) && hit() {
				return errors.New("power cut")
			}
			return nil
		}
		b.Fault = func(op Op, name string) Fault {
			if hit() {
				if op == OpPut || op == OpDelete {
					return FaultApplyLoseReply
				}
				return FaultDown
			}
			return FaultNone
		}
		tier, err := OpenTier(context.Background(), TierOptions{FS: fsys, Dir: testTierDir, Bucket: b, Clock: clk, Rand: randv2.New(randv2.NewPCG(1, 2))})
		if err == nil {
			for _, s := range segs[:2] {
				tier.Sealed(s)
			}
			runUntilCrash(tier, clk, &crashed)
			if !crashed {
				// The merge of the first two, as the store does it: write
				// the output, remove the inputs, hand the output over.
				merged := writeSeg(t, fsys, 1, 20, nil)
				for _, s := range segs[:2] {
					fsys.Remove(s.Path)
				}
				fsys.SyncDir(testSegDir)
				tier.Sealed(merged)
				tier.Sealed(segs[2])
				runUntilCrash(tier, clk, &crashed)
			}
			if !crashed {
				tier.Deleted([]string{segs[2].Name})
				fsys.Remove(segs[2].Path)
				fsys.SyncDir(testSegDir)
				runUntilCrash(tier, clk, &crashed)
			}
		}
		if !crashed {
			if cut < 10 {
				t.Fatalf("schedule finished after only %d operations", ops)
			}
			t.Logf("covered %d crash points", cut-1)
			return
		}
		fsys.Inject, b.Fault = nil, nil
		fsys.Crash(rand.New(rand.NewSource(int64(cut))))
		pub, err := LoadManifest(context.Background(), b)
		if err != nil {
			t.Fatalf("cut %d: bucket manifest unreadable: %v", cut, err)
		}
		checkEntries(t, b, pub, fmt.Sprintf("cut %d: bucket", cut))
		if data, err := vfs.ReadFile(fsys, filepath.Join(testTierDir, localManifestName)); err == nil {
			local, err := DecodeManifest("local", data)
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			checkEntries(t, b, local, fmt.Sprintf("cut %d: local", cut))
		}

		// Restart: the store hands over every local segment.
		tier = openTestTier(t, fsys, b, clk)
		names, _ := fsys.List(testSegDir)
		var local []Segment
		for _, n := range names {
			var first, last int64
			if _, err := fmt.Sscanf(n, "%016d-%016d.parquet", &first, &last); err != nil {
				continue
			}
			s := Segment{Name: n, Path: filepath.Join(testSegDir, n), First: first, Last: last}
			local = append(local, s)
			tier.Sealed(s)
		}
		drain(t, tier, clk)
		if _, err := tier.Collect(context.Background()); err != nil {
			t.Fatal(err)
		}
		pub, _ = LoadManifest(context.Background(), b)
		checkEntries(t, b, pub, fmt.Sprintf("cut %d: after restart", cut))
		for _, s := range local {
			if !pub.Covers(s.First, s.Last) {
				t.Fatalf("cut %d: local segment %s not in the bucket manifest after restart: %+v", cut, s.Name, pub.Entries)
			}
		}
		for _, n := range b.Names() {
			if _, ok := pub.Find(n); strings.HasPrefix(n, segmentsDir) && !ok {
				t.Fatalf("cut %d: unreferenced object %s survived garbage collection", cut, n)
			}
		}
	}
}

func runUntilCrash(tier *Tier, clk *clock.Fake, crashed *bool) {
	for i := 0; i < 100 && !*crashed; i++ {
		more, err := tier.Step(context.Background())
		if err != nil {
			clk.Advance(time.Hour)
			continue
		}
		if !more {
			return
		}
	}
}

func TestTierUploadLag(t *testing.T) {
	fsys, b, clk := vfs.NewMemFS(), NewMemBucket("b"), clock.NewFake(time.Unix(1000, 0))
	tier := openTestTier(t, fsys, b, clk)
	seg := writeSeg(t, fsys, 1, 10, nil)
	tier.Sealed(seg)
	clk.Advance(30 * time.Second)
	if d, n := tier.Lag(); d != 30*time.Second || n != int64(len(segBytes(1, 10))) {
		t.Fatalf("lag of a queued segment = %v, %d bytes", d, n)
	}
	if _, err := tier.Step(context.Background()); err != nil { // uploaded, manifest local only
		t.Fatal(err)
	}
	if d, n := tier.Lag(); d != 30*time.Second || n == 0 {
		t.Fatalf("uploaded but unpublished segment not counted as lag: %v, %d", d, n)
	}
	drain(t, tier, clk)
	if d, n := tier.Lag(); d != 0 || n != 0 {
		t.Fatalf("lag after publish = %v, %d", d, n)
	}
}

// TestTierRepublishKeepsTheWholeManifest: a tier that started with the
// bucket down publishes its local manifest again once the bucket is back;
// that publish is torn and its cleanup delete fails. The bucket must still
// hold a whole manifest naming the uploaded segment (the re-put is a new
// generation, never an overwrite of the verified one).
func TestTierRepublishKeepsTheWholeManifest(t *testing.T) {
	ctx := context.Background()
	fsys, b, clk := vfs.NewMemFS(), NewMemBucket("b"), clock.NewFake(time.Unix(1000, 0))
	tier := openTestTier(t, fsys, b, clk)
	tier.Sealed(writeSeg(t, fsys, 1, 10, nil))
	drain(t, tier, clk)
	b.Fault = func(Op, string) Fault { return FaultDown }
	again := openTestTier(t, fsys, b, clk)
	b.Fault = func(op Op, name string) Fault {
		switch {
		case op == OpPut && strings.HasPrefix(name, manifestDir):
			return FaultTorn
		case op == OpDelete:
			return FaultDown
		}
		return FaultNone
	}
	if _, err := again.Step(ctx); !errors.Is(err, ErrVerify) {
		t.Fatalf("republish with a torn put: %v, want ErrVerify", err)
	}
	b.Fault = nil
	m, err := LoadManifest(ctx, b)
	if err != nil || !m.Covers(1, 10) {
		t.Fatalf("after a torn republish the bucket's manifest is %+v (%v); want the verified one naming seqs 1-10", m.Entries, err)
	}
}
