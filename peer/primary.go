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
	// Defects is for the simulation's canaries only.
	Defects Defects
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
// stream records while a reader goroutine takes Acks and Heartbeats. The
// goroutines only wait and hand over; the work is PrimaryLink's steps.
func (p *Primary) serveReplica(ctx context.Context, c *Conn) error {
	pl, err := p.awaitSubscribe(c)
	if err != nil {
		return err
	}
	defer pl.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readErr := make(chan error, 1)
	go func() {
		readErr <- p.readAcks(c, pl)
		cancel()
	}()
	go watchdog(ctx, p.cfg.Clock, p.cfg.Heartbeat, c, pl.lastHeard)
	err = p.stream(ctx, pl)
	c.Close()
	if rerr := <-readErr; rerr != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = rerr
	}
	return err
}

func (p *Primary) awaitSubscribe(c *Conn) (*PrimaryLink, error) {
	for {
		typ, body, err := c.Recv()
		if err != nil {
			return nil, err
		}
		pl, err := p.Open(c, typ, body)
		if pl != nil || err != nil {
			return pl, err
		}
	}
}

// readAcks takes the replica's Acks and Heartbeats.
func (p *Primary) readAcks(c *Conn, pl *PrimaryLink) error {
	for {
		typ, body, err := c.Recv()
		if err != nil {
			return err
		}
		if err := pl.Handle(typ, body); err != nil {
			return err
		}
	}
}

// stream sends records as Records frames, batching what is already
// available up to the frame limit, and a Heartbeat when idle.
func (p *Primary) stream(ctx context.Context, pl *PrimaryLink) error {
	ctx, cancel := context.WithCancel(ctx)
	recs := make(chan store.Record, 64)
	pumpErr := make(chan error, 1)
	go func() {
		defer close(recs)
		for {
			rec, err := pl.stream.Next(ctx)
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
	// ready takes what the pump has already read, without waiting.
	ready := func() (store.Record, bool, error) {
		select {
		case rec, ok := <-recs:
			return rec, ok, nil
		default:
			return store.Record{}, false, nil
		}
	}
	shipping := false
	for {
		var rec store.Record
		var ok bool
		if shipping {
			// A segment is on its way: one chunk between Records frames,
			// so the records (and the Acks they bring) are not held up.
			select {
			case rec, ok = <-recs:
			default:
				var err error
				if shipping, err = pl.ShipChunk(); err != nil {
					return err
				}
				continue
			}
		} else {
			t := p.cfg.Clock.NewTimer(p.cfg.Heartbeat)
			select {
			case rec, ok = <-recs:
				t.Stop()
			case <-t.C():
				if err := pl.Idle(); err != nil {
					return err
				}
				var err error
				if shipping, err = pl.ShipChunk(); err != nil {
					return err
				}
				continue
			}
		}
		if !ok {
			return <-pumpErr
		}
		if err := pl.send(rec, ready); err != nil {
			return err
		}
		var err error
		if shipping, err = pl.ShipChunk(); err != nil {
			return err
		}
	}
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
