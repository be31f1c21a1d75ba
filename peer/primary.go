package peer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/store"
)

// DefaultHeartbeat is how often an idle link sends a Heartbeat; a link
// that hears nothing for deadAfter heartbeats is closed.
const (
	DefaultHeartbeat = time.Second
	deadAfter        = 5
)

// MinMaxFrame is the smallest --peer-max-frame accepted: one store record
// (store.TailMaxBytes plus its one oversized row and its marks) must fit in
// a Records frame.
const MinMaxFrame = 8 << 20

// PrimaryConfig configures the primary's side of the replica port.
type PrimaryConfig struct {
	Source    RecordSource
	Acceptor  *Acceptor
	Clock     clock.Clock
	Log       *slog.Logger
	Heartbeat time.Duration // default DefaultHeartbeat
	// MaxFrame caps a Records frame (the Acceptor's limit for received
	// frames is its own).
	MaxFrame int
}

// Primary streams its store to subscribed replicas and tracks what each has
// made durable, for --min-replica-acks and status.
type Primary struct {
	cfg PrimaryConfig

	failLog *logLimit

	mu       sync.Mutex
	replicas map[ID]*link
	changed  chan struct{} // closed and replaced when an ack arrives or a link goes
	// gen counts the replacements of changed; waiters are the parked
	// WaitSynced calls (Parked).
	gen     uint64
	waiters map[*waiter]struct{}
	wg      sync.WaitGroup
}

// link is one connected replica as the primary sees it.
type link struct {
	conn        *Conn
	since       time.Time
	synced      int64 // replica's durable seq (its last Ack)
	sent        int64 // last seq sent to it
	caughtUp    time.Time
	lastHeard   time.Time
	subscribeAt int64
}

// NewPrimary checks cfg.
func NewPrimary(cfg PrimaryConfig) (*Primary, error) {
	if cfg.Source == nil || cfg.Acceptor == nil {
		return nil, errors.New("peer: PrimaryConfig needs Source and Acceptor")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Heartbeat = orDefault(cfg.Heartbeat, DefaultHeartbeat)
	cfg.MaxFrame = orDefault(cfg.MaxFrame, DefaultMaxFrame)
	return &Primary{cfg: cfg, replicas: map[ID]*link{}, changed: make(chan struct{}), waiters: map[*waiter]struct{}{}, failLog: newLogLimit(cfg.Clock, 10, time.Second)}, nil
}

// Serve accepts replica connections on ln until ctx is done or ln fails,
// then closes every link and waits for their goroutines.
func (p *Primary) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer p.wg.Wait()
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("peer: accept: %w", err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(ctx, nc)
		}()
	}
}

func (p *Primary) handle(ctx context.Context, nc net.Conn) {
	c, err := p.cfg.Acceptor.Accept(nc)
	if err != nil {
		// Counted in finelog_peer_handshakes_total; logged within a budget.
		if ok, n := p.failLog.allow(); ok {
			p.cfg.Log.Warn("peer handshake failed", "remote", addrString(nc.RemoteAddr()), "err", err, "suppressed", n)
		}
		return
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	err = p.serveReplica(ctx, c)
	c.Close()
	if ctx.Err() == nil {
		p.cfg.Log.Info("replica disconnected", "replica", nodeName(c.Remote), "remote", addrString(c.RemoteAddr()), "err", err)
	}
}

func nodeName(id ID) string { return hex.EncodeToString(id[:]) }

// serveReplica runs one authenticated link: wait for Subscribe, then
// stream records while a reader goroutine takes Acks and Heartbeats.
func (p *Primary) serveReplica(ctx context.Context, c *Conn) error {
	from, err := p.awaitSubscribe(c)
	if err != nil {
		return err
	}
	stream, err := p.cfg.Source.Tail(from)
	if errors.Is(err, store.ErrTailAhead) {
		p.cfg.Log.Error("replica holds seqs this primary never committed: refusing it (it followed another primary, or this primary lost its data dir; rebuild the replica's data dir or promote it instead)",
			"replica", nodeName(c.Remote), "replica_seq", from, "primary_last_seq", p.cfg.Source.LastSeq())
		return err
	}
	if err != nil {
		return err
	}
	defer stream.Close()
	now := p.cfg.Clock.Now()
	l := &link{conn: c, since: now, synced: from, sent: from, caughtUp: now, lastHeard: now, subscribeAt: from}
	p.register(c.Remote, l)
	defer p.unregister(c.Remote, l)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readErr := make(chan error, 1)
	go func() {
		readErr <- p.readAcks(c, l)
		cancel()
	}()
	go watchdog(ctx, p.cfg.Clock, p.cfg.Heartbeat, c, func() time.Time {
		p.mu.Lock()
		defer p.mu.Unlock()
		return l.lastHeard
	})
	err = p.stream(ctx, c, l, stream)
	c.Close()
	if rerr := <-readErr; rerr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = rerr
	}
	return err
}

func (p *Primary) awaitSubscribe(c *Conn) (int64, error) {
	for {
		typ, body, err := c.Recv()
		if err != nil {
			return 0, err
		}
		switch typ {
		case TypeHeartbeat:
			continue
		case TypeSubscribe:
			from := Seq(body)
			if from < 0 {
				c.Close()
				return 0, fmt.Errorf("%w: subscribe from seq %d", ErrProtocol, from)
			}
			return from, nil
		default:
			c.Close()
			return 0, fmt.Errorf("%w: frame type 0x%02x before subscribe", ErrProtocol, typ)
		}
	}
}

// readAcks takes the replica's Acks and Heartbeats.
func (p *Primary) readAcks(c *Conn, l *link) error {
	for {
		typ, body, err := c.Recv()
		if err != nil {
			return err
		}
		now := p.cfg.Clock.Now()
		p.mu.Lock()
		l.lastHeard = now
		if typ == TypeAck {
			seq := Seq(body)
			switch {
			case seq > l.sent || seq < 0:
				sent := l.sent
				p.mu.Unlock()
				c.Close()
				return fmt.Errorf("%w: ack of seq %d, only up to %d was sent", ErrProtocol, seq, sent)
			case seq > l.synced:
				l.synced = seq
				p.notifyLocked()
			}
			if l.synced >= p.cfg.Source.LastSeq() {
				l.caughtUp = now
			}
		} else if typ != TypeHeartbeat {
			p.mu.Unlock()
			c.Close()
			return fmt.Errorf("%w: frame type 0x%02x after subscribe", ErrProtocol, typ)
		}
		p.mu.Unlock()
	}
}

// stream sends records as Records frames, batching what is already
// available up to the frame limit, and a Heartbeat when idle.
func (p *Primary) stream(ctx context.Context, c *Conn, l *link, st RecordStream) error {
	ctx, cancel := context.WithCancel(ctx)
	recs := make(chan store.Record, 64)
	pumpErr := make(chan error, 1)
	go func() {
		defer close(recs)
		for {
			rec, err := st.Next(ctx)
			if err != nil {
				pumpErr <- err
				return
			}
			select {
			case recs <- rec:
			case <-ctx.Done():
				pumpErr <- ctx.Err()
				return
			}
		}
	}()
	defer func() {
		cancel() // ends the pump, then wait for it
		for range recs {
		}
	}()
	// Frames stay within MinMaxFrame, which every replica accepts whatever
	// its own --peer-max-frame, so the two ends need not agree on it.
	budget := min(p.cfg.MaxFrame, MinMaxFrame) - 1 - TagBytes - recordsHeader
	var body []byte
	// floorSent is the highest floor sent on this link: a replica that
	// (re)subscribes caught up hears a nonzero floor at the first idle beat.
	floorSent := int64(0)
	for {
		t := p.cfg.Clock.NewTimer(p.cfg.Heartbeat)
		var rec store.Record
		var ok bool
		select {
		case rec, ok = <-recs:
			t.Stop()
		case <-t.C():
			// Idle: records carry the floor, but none is due, so a rise
			// goes in a Records frame of its own. Only up to what was sent:
			// past it the stream's next record is a floor jump.
			p.mu.Lock()
			sent := l.sent
			p.mu.Unlock()
			if f := p.cfg.Source.Floor(); f > floorSent && f <= sent {
				if err := p.sendRecords(c, l, &body, Records{Floor: f}); err != nil {
					return err
				}
				floorSent = f
				continue
			}
			if err := c.Send(TypeHeartbeat, nil); err != nil {
				return err
			}
			continue
		}
		if !ok {
			return <-pumpErr
		}
		batch := Records{Floor: rec.Floor, Records: []store.Record{rec}}
		size := recordSize(&rec)
	more:
		for size < budget/2 {
			select {
			case next, ok := <-recs:
				if !ok {
					break more
				}
				if next.Floor != batch.Floor || size+recordSize(&next) > budget {
					if err := p.sendRecords(c, l, &body, batch); err != nil {
						return err
					}
					floorSent = max(floorSent, batch.Floor)
					batch, size = Records{Floor: next.Floor}, 0
				}
				batch.Records = append(batch.Records, next)
				size += recordSize(&next)
			default:
				break more
			}
		}
		if err := p.sendRecords(c, l, &body, batch); err != nil {
			return err
		}
		floorSent = max(floorSent, batch.Floor)
	}
}

// recordSize bounds a record's encoded size from above.
func recordSize(r *store.Record) int {
	n := 4 + 24 + 20
	for i := range r.Rows {
		row := &r.Rows[i]
		n += len(row.Key) + len(row.Source) + len(row.Data) + len(row.Cluster) + 4*10 + 4
	}
	for _, m := range r.Marks {
		n += len(m.Producer) + 20
	}
	return n
}

func (p *Primary) sendRecords(c *Conn, l *link, buf *[]byte, batch Records) error {
	batch.PrimaryLast = p.cfg.Source.LastSeq()
	*buf = EncodeRecords((*buf)[:0], batch)
	// Before the send: the replica's Ack can arrive before Send returns.
	if n := len(batch.Records); n > 0 {
		p.mu.Lock()
		l.sent = max(l.sent, batch.Records[n-1].Last)
		p.mu.Unlock()
	}
	if err := c.Send(TypeRecords, *buf); err != nil {
		return err
	}
	if cap(*buf) > 1<<20 {
		*buf = nil
	}
	return nil
}

func (p *Primary) register(id ID, l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.replicas[id]; ok {
		// The same replica reconnected: its old link is dead or dying, and
		// counting both would count one replica twice. (Two live replicas
		// with one --node-name displace each other: this line says so.)
		old.conn.Close()
		p.cfg.Log.Warn("replica node id connected again; closing its previous link (if this repeats, two replicas share a --node-name)",
			"replica", nodeName(id), "previous", addrString(old.conn.RemoteAddr()), "new", addrString(l.conn.RemoteAddr()))
	}
	p.replicas[id] = l
	p.notifyLocked()
}

func (p *Primary) unregister(id ID, l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.replicas[id] == l {
		delete(p.replicas, id)
	}
	p.notifyLocked()
}

func (p *Primary) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
	p.gen++
}

// ReplicaStatus is one connected replica as the primary sees it.
type ReplicaStatus struct {
	Node       string    `json:"node_id"`
	Remote     string    `json:"remote"`
	Since      time.Time `json:"connected_since"`
	SyncedSeq  int64     `json:"synced_seq"`
	LagRows    int64     `json:"lag_rows"`
	LagSeconds float64   `json:"lag_seconds"`
}

// Replicas reports the connected replicas, by node id.
func (p *Primary) Replicas() []ReplicaStatus {
	last := p.cfg.Source.LastSeq()
	now := p.cfg.Clock.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ReplicaStatus, 0, len(p.replicas))
	for id, l := range p.replicas {
		rs := ReplicaStatus{Node: nodeName(id), Remote: addrString(l.conn.RemoteAddr()), Since: l.since, SyncedSeq: l.synced, LagRows: max(0, last-l.synced)}
		if rs.LagRows > 0 {
			rs.LagSeconds = now.Sub(l.caughtUp).Seconds()
		}
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// watchdog closes c when nothing was heard for deadAfter heartbeats.
func watchdog(ctx context.Context, clk clock.Clock, hb time.Duration, c *Conn, heard func() time.Time) {
	for {
		if err := clock.Sleep(ctx, clk, hb); err != nil {
			return
		}
		if clk.Now().Sub(heard()) > deadAfter*hb {
			c.Close()
			return
		}
	}
}
