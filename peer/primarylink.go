package peer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/finelog/finelog/store"
)

// PrimaryLink is one subscribed replica on the primary, as steps: take a
// frame the replica sent (Handle), send what the store has (send,
// SendReady), say something on an idle beat (Idle). Serve's goroutines
// drive these steps in production; the simulation drives them itself, one
// at a time, so a run is a function of its schedule.
type PrimaryLink struct {
	p      *Primary
	c      *Conn
	l      *link
	stream RecordStream
	// floorSent is the highest floor sent on this link: a replica that
	// (re)subscribes caught up hears a nonzero floor at the first idle beat.
	floorSent int64
	body      []byte
	budget    int
	// ship is nil unless the replica asked for sealed segments.
	ship *shipper
}

// Accept runs the acceptor's handshake on a transport connection to the
// peer port.
func (p *Primary) Accept(nc net.Conn) (*Conn, error) {
	return p.cfg.Acceptor.Accept(nc)
}

// Open takes a frame received on c before the replica subscribed. A
// Heartbeat returns nil, nil (keep reading); a Subscribe starts the link:
// the stream from the replica's seq, registered for WaitSynced and status.
// Anything else, or a replica ahead of this store, is an error and closes c.
func (p *Primary) Open(c *Conn, typ byte, body []byte) (*PrimaryLink, error) {
	switch typ {
	case TypeHeartbeat:
		return nil, nil
	case TypeSubscribe:
	default:
		c.Close()
		return nil, fmt.Errorf("%w: frame type 0x%02x before subscribe", ErrProtocol, typ)
	}
	from := Seq(body)
	if from < 0 {
		c.Close()
		return nil, fmt.Errorf("%w: subscribe from seq %d", ErrProtocol, from)
	}
	var flags byte
	var through int64
	if len(body) == subscribeFlagsBytes {
		flags, through = body[8], int64(binary.BigEndian.Uint64(body[9:]))
	}
	if flags&^SubscribeSegments != 0 {
		c.Close()
		return nil, fmt.Errorf("%w: subscribe flags 0x%02x: only 0x%02x (segments) is known", ErrProtocol, flags, SubscribeSegments)
	}
	stream, err := p.cfg.Source.Tail(from)
	if errors.Is(err, store.ErrTailAhead) {
		p.cfg.Log.Error("replica holds seqs this primary never committed: refusing it (it followed another primary, or this primary lost its data dir; rebuild the replica's data dir or promote it instead)",
			"replica", nodeName(c.Remote), "replica_seq", from, "primary_last_seq", p.cfg.Source.LastSeq())
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	// The shipper is made before the link is registered: once the replica
	// shows in the primary's status, every later flush or merge is shipped
	// to it.
	var ship *shipper
	if src, ok := p.cfg.Source.(SegmentSource); ok && flags&SubscribeSegments != 0 {
		if through < 0 || through > from {
			c.Close()
			return nil, fmt.Errorf("%w: subscribe from seq %d with segments through %d", ErrProtocol, from, through)
		}
		if left, ok := p.takeShipLeft(c.Remote); ok {
			ship = resumeShipper(src, left)
		} else {
			ship = newShipper(src, from, through)
		}
	}
	now := p.cfg.Clock.Now()
	l := &link{conn: c, since: now, synced: from, sent: from, caughtUp: now, lastHeard: now, subscribeAt: from}
	p.register(c.Remote, l)
	// Frames stay within MinMaxFrame, which every replica accepts whatever
	// its own --peer-max-frame, so the two ends need not agree on it.
	budget := min(p.cfg.MaxFrame, MinMaxFrame) - 1 - TagBytes - recordsHeader
	return &PrimaryLink{p: p, c: c, l: l, stream: stream, budget: budget, ship: ship}, nil
}

// Close ends the link: the stream is released and the replica no longer
// counts for WaitSynced.
func (pl *PrimaryLink) Close() {
	pl.c.Close()
	pl.stream.Close()
	if pl.ship != nil {
		pl.p.keepShipLeft(pl.c.Remote, pl.ship.leftover())
	}
	pl.ship.close()
	pl.p.unregister(pl.c.Remote, pl.l)
}

func (pl *PrimaryLink) lastHeard() time.Time {
	pl.p.mu.Lock()
	defer pl.p.mu.Unlock()
	return pl.l.lastHeard
}

// Handle takes a frame the replica sent after Subscribe: an Ack moves its
// synced seq (and wakes WaitSynced), a Heartbeat only says it is alive.
func (pl *PrimaryLink) Handle(typ byte, body []byte) error {
	p, l, c := pl.p, pl.l, pl.c
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	l.lastHeard = now
	switch typ {
	case TypeHeartbeat:
		return nil
	case TypeAck:
	default:
		c.Close()
		return fmt.Errorf("%w: frame type 0x%02x after subscribe", ErrProtocol, typ)
	}
	seq := Seq(body)
	switch {
	case seq > l.sent || seq < 0:
		c.Close()
		return fmt.Errorf("%w: ack of seq %d, only up to %d was sent", ErrProtocol, seq, l.sent)
	case seq > l.synced:
		l.synced = seq
		p.notifyLocked()
	}
	if l.synced >= p.cfg.Source.LastSeq() {
		l.caughtUp = now
	}
	return nil
}

// Idle is the idle beat: records carry the floor, but none is due, so a
// rise goes in a Records frame of its own, otherwise a Heartbeat. Only up
// to what was sent: past it the stream's next record is a floor jump.
func (pl *PrimaryLink) Idle() error {
	pl.p.mu.Lock()
	sent := pl.l.sent
	pl.p.mu.Unlock()
	if f := pl.p.cfg.Source.Floor(); f > pl.floorSent && f <= sent {
		if err := pl.sendRecords(Records{Floor: f}); err != nil {
			return err
		}
		pl.floorSent = f
		return nil
	}
	return pl.c.Send(TypeHeartbeat, nil)
}

// readyStream is a stream that can say it has nothing without waiting
// (store.RecordStream.TryNext).
type readyStream interface {
	TryNext(ctx context.Context) (store.Record, bool, error)
}

// SendReady sends, in as few Records frames as the frame budget allows,
// every record the store has for the replica now, then every chunk of the
// sealed segments that are due (ShipChunk), and reports whether it sent
// any. It never waits for a commit. The stream must be a
// store.RecordStream (StoreSource).
func (pl *PrimaryLink) SendReady(ctx context.Context) (bool, error) {
	rs, ok := pl.stream.(readyStream)
	if !ok {
		return false, fmt.Errorf("peer: SendReady needs a stream with TryNext, not %T", pl.stream)
	}
	next := func() (store.Record, bool, error) { return rs.TryNext(ctx) }
	sent := false
	shipAll := func() error {
		for more := true; more; {
			var err error
			if more, err = pl.ShipChunk(); err != nil {
				return err
			}
			sent = sent || more
		}
		return nil
	}
	if pl.p.cfg.Defects.ShipUnchecked {
		// The canary's primary ships what it sealed before the rows.
		if err := shipAll(); err != nil {
			return sent, err
		}
	}
	for {
		rec, ok, err := next()
		if err != nil {
			return sent, err
		}
		if !ok {
			return sent, shipAll()
		}
		if err := pl.send(rec, next); err != nil {
			return sent, err
		}
		sent = true
	}
}

// send sends rec, joined with the records next has ready, as Records
// frames: one frame per floor, each within the budget.
func (pl *PrimaryLink) send(rec store.Record, next func() (store.Record, bool, error)) error {
	batch := Records{Floor: rec.Floor, Records: []store.Record{rec}}
	size := recordSize(&rec)
	for size < pl.budget/2 {
		more, ok, err := next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if more.Floor != batch.Floor || size+recordSize(&more) > pl.budget {
			if err := pl.sendRecords(batch); err != nil {
				return err
			}
			batch, size = Records{Floor: more.Floor}, 0
		}
		batch.Records = append(batch.Records, more)
		size += recordSize(&more)
	}
	return pl.sendRecords(batch)
}

// recordSize bounds a record's encoded size from above.
func recordSize(r *store.Record) int {
	n := 4 + 24 + 20
	for i := range r.Rows {
		row := &r.Rows[i]
		n += len(row.Key) + len(row.Source) + len(row.Data) + len(row.Cluster) + len(row.Attributes) + 4*10 + 4 + 4
	}
	for _, m := range r.Marks {
		n += len(m.Producer) + 20
	}
	return n
}

func (pl *PrimaryLink) sendRecords(batch Records) error {
	p, l := pl.p, pl.l
	batch.PrimaryLast = p.cfg.Source.LastSeq()
	// Sized once from the records' bound: growing by appends would copy
	// the frame's bytes again at each doubling.
	bound := recordsHeader
	for i := range batch.Records {
		bound += recordSize(&batch.Records[i])
	}
	pl.body = EncodeRecords(slices.Grow(pl.body[:0], bound), batch)
	// Before the send: the replica's Ack can arrive before Send returns.
	if n := len(batch.Records); n > 0 {
		p.mu.Lock()
		l.sent = max(l.sent, batch.Records[n-1].Last)
		p.mu.Unlock()
	}
	if err := pl.c.Send(TypeRecords, pl.body); err != nil {
		return err
	}
	pl.floorSent = max(pl.floorSent, batch.Floor)
	if cap(pl.body) > keepBodyMax {
		pl.body = nil
	}
	return nil
}

// keepBodyMax is the largest Records buffer a link keeps between frames: a
// link streaming under load reuses it for every frame, an idle one pins at
// most this much.
const keepBodyMax = 4 << 20
