package peer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/store"
)

// ReplicaConfig configures a standby that follows a primary.
type ReplicaConfig struct {
	// Primary is the primary's HOST:PORT, for status and logs.
	Primary string
	// Dial opens a transport connection to the primary.
	Dial   func(ctx context.Context) (net.Conn, error)
	Dialer DialerConfig
	Store  RecordApplier
	Clock  clock.Clock
	Log    *slog.Logger
	// Heartbeat: default DefaultHeartbeat.
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnects
	// (defaults 100 ms and 5 s), doubling per consecutive failure.
	MinBackoff, MaxBackoff time.Duration
	// Defects is for the simulation's canaries only.
	Defects Defects
}

// Replica follows a primary: it subscribes from its last seq, applies the
// records it receives durably and acknowledges each frame once synced.
type Replica struct {
	cfg ReplicaConfig

	mu sync.Mutex
	st FollowStatus
	// handing: the reader is blocked passing a frame to the applier.
	handing bool
	// plainUntil: the primary closed links that asked for segments
	// before it sent anything (refusedInARow of them, see
	// plainAfterRefusals), as a primary from before segment shipping
	// does; links until then subscribe without the flags byte.
	plainUntil    time.Time
	refusedInARow int
	segResults    map[string]int
}

// FollowStatus is a replica's view of its primary.
type FollowStatus struct {
	Primary     string    `json:"primary"`
	Connected   bool      `json:"connected"`
	AppliedSeq  int64     `json:"applied_seq"`
	PrimaryLast int64     `json:"primary_last_seq"`
	LagRows     int64     `json:"lag_rows"`
	LagSeconds  float64   `json:"lag_seconds"`
	LastContact time.Time `json:"last_contact,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	caughtUp    time.Time
}

// NewReplica checks cfg.
func NewReplica(cfg ReplicaConfig) (*Replica, error) {
	if cfg.Dial == nil || cfg.Store == nil {
		return nil, errors.New("peer: ReplicaConfig needs Dial and Store")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Dialer.Clock == nil {
		cfg.Dialer.Clock = cfg.Clock
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Heartbeat = orDefault(cfg.Heartbeat, DefaultHeartbeat)
	cfg.MinBackoff = orDefault(cfg.MinBackoff, 100*time.Millisecond)
	cfg.MaxBackoff = orDefault(cfg.MaxBackoff, 5*time.Second)
	r := &Replica{cfg: cfg}
	r.st.Primary = cfg.Primary
	r.st.caughtUp = cfg.Clock.Now()
	return r, nil
}

// Run follows the primary until ctx ends, reconnecting with backoff after
// any failure. It returns nil once ctx is done and every goroutine it
// started has stopped.
func (r *Replica) Run(ctx context.Context) error {
	backoff := r.cfg.MinBackoff
	for ctx.Err() == nil {
		followed, err := r.once(ctx)
		if ctx.Err() != nil {
			break
		}
		r.Disconnected(err)
		r.cfg.Log.Warn("replica link to the primary failed; reconnecting", "primary", r.cfg.Primary, "err", err, "retry_in", backoff)
		if followed {
			backoff = r.cfg.MinBackoff
		}
		if clock.Sleep(ctx, r.cfg.Clock, backoff) != nil {
			break
		}
		if !followed {
			backoff = min(2*backoff, r.cfg.MaxBackoff)
		}
	}
	r.mu.Lock()
	r.st.Connected = false
	r.mu.Unlock()
	return nil
}

// once dials, authenticates and follows until the link fails; followed
// reports whether it got as far as applying records.
func (r *Replica) once(ctx context.Context) (followed bool, err error) {
	nc, err := r.cfg.Dial(ctx)
	if err != nil {
		return false, fmt.Errorf("dial primary %s: %w", r.cfg.Primary, err)
	}
	c, err := Handshake(nc, r.cfg.Dialer)
	if err != nil {
		return false, fmt.Errorf("primary %s: %w", r.cfg.Primary, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	rl, err := r.Attach(c)
	if err != nil {
		return false, err
	}
	defer rl.abortSegment()
	var silent atomic.Bool // this end's watchdog closed the link
	defer func() {
		if !rl.segments {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if rl.heardAny || silent.Load() || ctx.Err() != nil {
			r.refusedInARow = 0
			return
		}
		// A primary that merely dropped one link at that moment (a
		// restart, a loaded machine) is not taken for an old one; an old
		// one refuses every such Subscribe.
		if r.refusedInARow++; r.refusedInARow < plainAfterRefusals {
			return
		}
		r.refusedInARow = 0
		r.plainUntil = r.cfg.Clock.Now().Add(plainSubscribeFor)
		r.cfg.Log.Warn("the primary closed links after a Subscribe asking for segment files without sending anything (a primary from before segment shipping?): following without them for a minute; upgrade the primary to ship segments", "primary", r.cfg.Primary, "links", plainAfterRefusals)
	}()

	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		for clock.Sleep(lctx, r.cfg.Clock, r.cfg.Heartbeat) == nil {
			if c.Send(TypeHeartbeat, nil) != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		silent.Store(watchdog(lctx, r.cfg.Clock, r.cfg.Heartbeat, c, func() time.Time {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.handing {
				// The reader waits for the applier (a slow disk), not
				// for the primary.
				return r.cfg.Clock.Now()
			}
			return r.st.LastContact
		}))
	}()
	// The reader decodes frames while the applier writes: everything that
	// arrived during one fdatasync is applied with the next. A few frames
	// of buffer (up to 8 MiB each); past that TCP pushes back on the
	// primary.
	frames := make(chan inbound, 4)
	readErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(frames)
		readErr <- r.readFrames(lctx, rl, frames)
	}()
	// Segment files are written and adopted beside the applier: a file's
	// fdatasync and swap must not hold up the records (and the Acks)
	// that follow it. The chunks still go in link order, after the
	// records before them were applied.
	chunks := make(chan SegmentChunk, 16)
	adoptErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		adoptErr <- rl.takeSegments(lctx, chunks)
	}()
	end := func(err error, fromReader bool) (bool, error) {
		close(chunks)
		if aerr := <-adoptErr; aerr != nil && (err == nil || fromReader) {
			err = aerr // the adopter closed the link: its error says why
		}
		return followed, err
	}
	var batch []Records
	for {
		first, ok := <-frames
		if !ok {
			return end(<-readErr, true)
		}
		var seg *SegmentChunk
		batch = batch[:0]
		if first.seg != nil {
			seg = first.seg
		} else {
			batch = append(batch, first.recs)
			size := batchRows(first.recs)
		drain:
			for size < mergeMaxBytes {
				select {
				case more, ok := <-frames:
					if !ok {
						break drain
					}
					if more.seg != nil {
						seg = more.seg
						break drain
					}
					batch = append(batch, more.recs)
					size += batchRows(more.recs)
				default:
					break drain
				}
			}
		}
		// Records before a segment chunk are written (and acked) first:
		// the segment's rows are among them.
		err := rl.Apply(ctx, batch)
		followed = followed || rl.applied
		if err != nil {
			return end(err, false)
		}
		if seg != nil {
			chunks <- *seg
		}
	}
}

// takeSegments passes chunks to TakeSegment in order until chunks is
// closed; after an error (which closed the link) it only drains them.
func (rl *ReplicaLink) takeSegments(ctx context.Context, chunks <-chan SegmentChunk) error {
	var err error
	for c := range chunks {
		if err == nil {
			err = rl.TakeSegment(ctx, c)
		}
	}
	return err
}

// plainSubscribeFor is how long a replica subscribes without asking for
// segments after a primary refused the request (see plainUntil).
const plainSubscribeFor = time.Minute

// plainAfterRefusals is how many links in a row a primary must close
// after a Subscribe with flags, before sending anything, for the replica
// to take it for a primary from before segment shipping.
const plainAfterRefusals = 2

// inbound is a frame the reader passes to the applier: a Records body or
// a segment chunk.
type inbound struct {
	recs Records
	seg  *SegmentChunk
}

// ReplicaLink is the replica's end of one authenticated link, as steps:
// Attach subscribes, Heard notes a frame from the primary, Apply writes
// what arrived and acks it. Run's goroutines drive them in production; the
// simulation drives them itself, one at a time.
type ReplicaLink struct {
	r *Replica
	c *Conn
	// applied: some frame was applied on this link (Run resets its backoff).
	applied bool
	// unwritten holds the records the AckBeforeSync canary acked but has
	// not written yet.
	unwritten []store.Record
	// segments: this link asked for sealed segment files; recv is the one
	// being received.
	segments bool
	recv     *receiving
	// heardAny: some frame arrived from the primary on this link.
	heardAny bool
}

// Attach starts following on c, an authenticated link to the primary: it
// subscribes from the store's last seq and marks the link up.
func (r *Replica) Attach(c *Conn) (*ReplicaLink, error) {
	from := r.cfg.Store.LastSeq()
	recv, canAdopt := r.cfg.Store.(SegmentReceiver)
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	segments := canAdopt && !now.Before(r.plainUntil)
	r.mu.Unlock()
	var body [subscribeFlagsBytes]byte
	binary.BigEndian.PutUint64(body[:], uint64(from))
	n := 8
	if segments {
		body[8], n = SubscribeSegments, subscribeFlagsBytes
		binary.BigEndian.PutUint64(body[9:], uint64(recv.SegmentsThrough()))
	}
	if err := c.Send(TypeSubscribe, body[:n]); err != nil {
		return nil, err
	}
	if canAdopt {
		recv.SetAdoptShipped(segments)
	}
	r.mu.Lock()
	r.st.Connected, r.st.LastContact, r.st.LastError = true, now, ""
	r.mu.Unlock()
	r.cfg.Log.Info("replica following the primary", "primary", r.cfg.Primary, "from_seq", from)
	return &ReplicaLink{r: r, c: c, segments: segments}, nil
}

// Disconnected records that the link failed with err (status: down, the
// error).
func (r *Replica) Disconnected(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Connected = false
	if err != nil {
		r.st.LastError = err.Error()
	}
}

// Heard notes that a frame from the primary arrived.
func (rl *ReplicaLink) Heard() {
	rl.heardAny = true
	now := rl.r.cfg.Clock.Now()
	rl.r.mu.Lock()
	rl.r.st.LastContact = now
	rl.r.mu.Unlock()
}

// Apply writes the Records frames that arrived, in order, as few store
// writes as their records join into (one fdatasync each), acks the
// replica's last seq, then takes the primary's floor. Any error closes the
// link.
func (rl *ReplicaLink) Apply(ctx context.Context, frames []Records) error {
	r, c := rl.r, rl.c
	if len(frames) == 0 {
		return nil
	}
	var recs []store.Record
	floor := int64(0)
	for _, f := range frames {
		recs = append(recs, f.Records...)
		floor = max(floor, f.Floor)
	}
	primaryLast := frames[len(frames)-1].PrimaryLast
	if r.cfg.Defects.AckBeforeSync {
		if n := len(recs); n > 0 {
			if err := c.SendSeq(TypeAck, recs[n-1].Last); err != nil {
				return err
			}
		}
		recs, rl.unwritten = rl.unwritten, recs
	}
	for _, rec := range mergeRecords(recs) {
		if err := r.cfg.Store.ApplyReplicated(ctx, rec); err != nil {
			c.Close()
			return fmt.Errorf("apply record [%d,%d] from the primary: %w", rec.First, rec.Last, err)
		}
	}
	rl.applied = true
	applied := r.cfg.Store.LastSeq()
	if err := c.SendSeq(TypeAck, applied); err != nil {
		return err
	}
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	r.st.AppliedSeq, r.st.PrimaryLast = applied, primaryLast
	if applied >= primaryLast {
		r.st.caughtUp = now
	}
	r.mu.Unlock()
	// After the Ack: a floor rise may flush the memtable, and the
	// primary's --min-replica-acks wait is for the rows, not for it.
	// A floor past the records sent so far breaks the stream's order
	// (the primary sends a floor jump record for that).
	if r.cfg.Defects.AckBeforeSync {
		floor = min(floor, applied)
	}
	if floor > applied {
		c.Close()
		return fmt.Errorf("%w: primary's floor %d is past the last seq it sent (%d)", ErrProtocol, floor, applied)
	}
	if err := r.cfg.Store.ApplyFloor(ctx, floor); err != nil {
		c.Close()
		return fmt.Errorf("apply the primary's retention floor %d: %w", floor, err)
	}
	return nil
}

// readFrames receives frames until the link fails, noting contact and
// passing Records on.
func (r *Replica) readFrames(ctx context.Context, rl *ReplicaLink, out chan<- inbound) error {
	c := rl.c
	defer func() {
		r.mu.Lock()
		r.handing = false
		r.mu.Unlock()
	}()
	for {
		typ, body, err := c.Recv()
		if err != nil {
			return err
		}
		rl.Heard()
		var in inbound
		switch typ {
		case TypeRecords:
			in.recs, err = decodeOwnedRecords(body)
		case TypeSegment:
			var sc SegmentChunk
			sc, err = DecodeSegmentChunk(body)
			in.seg = &sc
		default:
			continue // a Heartbeat; Recv refuses anything else
		}
		if err != nil {
			c.Close()
			return err
		}
		r.mu.Lock()
		r.handing = true
		r.mu.Unlock()
		select {
		case out <- in:
		case <-ctx.Done():
			return ctx.Err()
		}
		r.mu.Lock()
		r.handing, r.st.LastContact = false, r.cfg.Clock.Now()
		r.mu.Unlock()
	}
}

// batchRows is the rows' size in a Records batch, for the drain bound.
func batchRows(b Records) int {
	n := 0
	for i := range b.Records {
		n += rowsBytes(b.Records[i].Rows)
	}
	return n
}

// Status reports the link and the lag.
func (r *Replica) Status() FollowStatus {
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.AppliedSeq = r.cfg.Store.LastSeq()
	st.LagRows = max(0, st.PrimaryLast-st.AppliedSeq)
	if st.LagRows > 0 {
		st.LagSeconds = now.Sub(st.caughtUp).Seconds()
	}
	return st
}

// Handshake runs the dialer's handshake on nc with this replica's
// configuration, for a caller that dials itself (the simulation).
func (r *Replica) Handshake(nc net.Conn) (*Conn, error) {
	return Handshake(nc, r.cfg.Dialer)
}
