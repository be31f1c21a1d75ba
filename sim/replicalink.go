package sim

import (
	"errors"
	"fmt"
	"math/rand"

	"github.com/finelog/finelog/peer"
	"github.com/finelog/finelog/store"
)

// This file is the replica world's link: dials and handshakes, the
// frames each way, the faults on it and the intruder.

// replicaLink is the link between the standby and whoever answered its
// dial: the primary (pc, pl) or the intruder (intruder).
type replicaLink struct {
	pipe     *peerPipe
	pc, rc   *peer.Conn
	pl       *peer.PrimaryLink // after the primary took the Subscribe
	rl       *peer.ReplicaLink
	intruder *peer.Conn
}

// replicaIntruderKey is the key the intruder holds: long enough, but not the
// cluster's.
func replicaIntruderKey() peer.PSK {
	k, err := peer.NewPSK([]byte(replicaIntruderPSK), "sim intruder")
	if err != nil {
		panic(err) // a harness bug
	}
	return k
}

// Dial: the standby, without a link, dials the primary's peer port and
// runs the real handshake; on success it subscribes. When the network is
// hijacked the intruder answers instead.
func (w *ReplicaWorld) Dial() error {
	if w.link != nil || w.S.Server == nil || !w.S.Server.Following() {
		return nil
	}
	hijacked := w.hijack
	w.hijack = false
	if !hijacked && (w.partitioned || w.P.Server == nil) {
		w.Trace.Addf("standby dial: unreachable")
		w.S.Server.PeerReplica().Disconnected(errors.New("sim: primary unreachable"))
		return nil
	}
	pipe := newPeerPipe("standby:40001", replicaPeerAddr)
	type accepted struct {
		c   *peer.Conn
		err error
	}
	res := make(chan accepted, 1)
	if hijacked {
		acc, err := peer.NewAcceptor(peer.AcceptorConfig{Cluster: peer.NameID("global"), Node: peer.NameID(replicaPrimary), PSK: replicaIntruderKey(),
			Rand: rand.New(rand.NewSource(w.rng.Int63())), Clock: w.P.Clock, Defects: peer.Defects{SkipMACCheck: true}})
		if err != nil {
			return err
		}
		go func() { c, err := acc.Accept(pipe.acceptor()); res <- accepted{c, err} }()
	} else {
		p := w.P.Server.PeerPrimary()
		go func() { c, err := p.Accept(pipe.acceptor()); res <- accepted{c, err} }()
	}
	rc, derr := w.S.Server.PeerReplica().Handshake(pipe.dialer())
	if derr != nil {
		pipe.close()
	}
	a := <-res
	pipe.manual()
	who := "primary"
	if hijacked {
		who = "intruder"
	}
	w.Trace.Addf("standby dial (%s): standby %s, acceptor %s", who, replicaFirstLine(derr), replicaFirstLine(a.err))
	if derr == nil && hijacked {
		w.IntruderHandshakes++
	}
	if derr != nil || a.err != nil {
		pipe.close()
		w.S.Server.PeerReplica().Disconnected(errors.Join(derr, a.err))
		return nil
	}
	rl, err := w.S.Server.PeerReplica().Attach(rc)
	if err != nil {
		pipe.close()
		return nil
	}
	w.link = &replicaLink{pipe: pipe, rc: rc, rl: rl}
	if hijacked {
		// The intruder feeds the standby rows of its own.
		w.link.intruder = a.c
		if err := a.c.Send(peer.TypeRecords, w.forgedRecords()); err != nil {
			return nil
		}
	} else {
		w.link.pc = a.c
	}
	return nil
}

// forgedRecords is a Records body with one row the primary never wrote,
// at the standby's next seq.
func (w *ReplicaWorld) forgedRecords() []byte {
	next := w.S.Store.LastSeq() + 1
	row := store.Row{Seq: next, Key: "/job/client", Source: "stdout", Data: fmt.Sprintf("forged row %d", next), EpochMS: Epoch.UnixMilli(), Level: store.LevelInfo, Cluster: "global"}
	return peer.EncodeRecords(nil, peer.Records{Floor: w.S.Store.Floor(), PrimaryLast: next,
		Records: []store.Record{{First: next, Last: next, Rows: []store.Row{row}, Floor: w.S.Store.Floor()}}})
}

// IntruderDial: the intruder dials the primary's peer port as a replica,
// with its own key.
func (w *ReplicaWorld) IntruderDial() error {
	if w.P.Server == nil {
		return nil
	}
	pipe := newPeerPipe("intruder:40002", replicaPeerAddr)
	res := make(chan error, 1)
	p := w.P.Server.PeerPrimary()
	go func() {
		c, err := p.Accept(pipe.acceptor())
		if c != nil {
			c.Close()
		}
		res <- err
	}()
	dc, derr := peer.Handshake(pipe.dialer(), peer.DialerConfig{Cluster: peer.NameID("global"), Node: peer.NameID(replicaStandby), PSK: replicaIntruderKey(),
		Rand: rand.New(rand.NewSource(w.rng.Int63())), Clock: w.P.Clock, Defects: peer.Defects{SkipMACCheck: true}})
	if dc != nil {
		// The acceptor reads the Finish before it answers nothing or
		// returns a link; closing after that keeps the outcome the MAC's.
		defer dc.Close()
	}
	_ = derr
	aerr := <-res
	pipe.close()
	w.Trace.Addf("intruder dials the primary: primary %s", replicaFirstLine(aerr))
	if aerr == nil {
		w.IntruderHandshakes++
	}
	return nil
}

// Hijack makes the standby's next dial reach the intruder (a poisoned
// name or a spoofed address); the current link is cut so it redials.
func (w *ReplicaWorld) Hijack() error {
	w.hijack = true
	return w.linkDown("hijack: the network reroutes the standby's link")
}

// Inject: a node on the path puts a Records frame of its own, tagged
// with a key it made up, into the stream towards the standby.
func (w *ReplicaWorld) Inject() error {
	l := w.link
	if l == nil || l.pipe.isClosed() {
		return nil
	}
	var k [32]byte
	w.rng.Read(k[:])
	l.pipe.inject(0, peer.SealFrame(nil, &k, 0, peer.TypeRecords, w.forgedRecords()))
	w.Injected++
	w.Trace.Addf("intruder injects a Records frame towards the standby")
	return nil
}

// Ship: the primary sends everything its store has for the standby.
func (w *ReplicaWorld) Ship() error {
	l := w.link
	if l == nil || l.pl == nil {
		return nil
	}
	sent, err := l.pl.SendReady(w.ctx)
	w.Trace.Addf("primary ship: sent %v: %s", sent, replicaFirstLine(err))
	if err != nil {
		return w.linkDown("ship: " + err.Error())
	}
	return nil
}

// Beat is the primary's idle beat on the link (a floor-only frame or a
// Heartbeat).
func (w *ReplicaWorld) Beat() error {
	l := w.link
	if l == nil || l.pl == nil {
		return nil
	}
	if err := l.pl.Idle(); err != nil {
		return w.linkDown("beat: " + err.Error())
	}
	return nil
}

// ToStandby delivers what is in flight to the standby, which reads every
// frame that arrived and applies their records with one write and one
// Ack, as its applier does with what arrived during the last fdatasync.
func (w *ReplicaWorld) ToStandby() error {
	l := w.link
	if l == nil {
		return nil
	}
	if w.partitioned && l.intruder == nil {
		w.Trace.Addf("to standby: partitioned")
		return nil
	}
	l.pipe.deliver(1)
	var frames []peer.Records
	// apply writes the Records frames read so far, as the applier does
	// before it takes a segment chunk that follows them.
	apply := func() error {
		if len(frames) == 0 {
			return nil
		}
		err := l.rl.Apply(w.ctx, frames)
		w.Trace.Addf("standby applies %d frames: last seq %d: %s", len(frames), w.S.Store.LastSeq(), replicaFirstLine(err))
		frames = frames[:0]
		if err != nil {
			return w.linkDown("standby apply: " + err.Error())
		}
		return nil
	}
	for l.pipe.frameReady(0) {
		typ, body, err := l.rc.Recv()
		if err != nil {
			if errors.Is(err, peer.ErrBadTag) {
				w.TagFailures++
			}
			return w.linkDown("standby recv: " + err.Error())
		}
		l.rl.Heard()
		switch typ {
		case peer.TypeRecords:
			b, err := peer.DecodeRecords(body)
			if err != nil {
				return w.linkDown("standby decode: " + err.Error())
			}
			frames = append(frames, b)
		case peer.TypeSegment:
			c, err := peer.DecodeSegmentChunk(body)
			if err != nil {
				return w.linkDown("standby decode segment: " + err.Error())
			}
			if err := apply(); err != nil || w.link == nil {
				return err
			}
			before := w.S.Server.PeerReplica().SegmentResults()
			err = l.rl.TakeSegment(w.ctx, c)
			if c.Offset+int64(len(c.Data)) == c.Size {
				after := w.S.Server.PeerReplica().SegmentResults()
				adopted := after[store.AdoptedSegment] > before[store.AdoptedSegment] || after[store.AdoptSkippedChecks] > before[store.AdoptSkippedChecks]
				if adopted {
					w.SegmentsAdopted++
				}
				w.Trace.Addf("standby takes segment [%d,%d]: adopted %v: %s", c.First, c.Last, adopted, replicaFirstLine(err))
			}
			if err != nil {
				return w.linkDown("standby segment: " + err.Error())
			}
		}
	}
	return apply()
}

// ToPrimary delivers what is in flight to the primary (Subscribe, Acks,
// Heartbeats), then lets the pushes the Acks release answer.
func (w *ReplicaWorld) ToPrimary() error {
	l := w.link
	if l == nil {
		return nil
	}
	if l.intruder != nil {
		l.pipe.deliver(0) // the intruder reads and ignores it
		return nil
	}
	if w.partitioned {
		w.Trace.Addf("to primary: partitioned")
		return nil
	}
	l.pipe.deliver(0)
	for l.pipe.frameReady(1) {
		typ, body, err := l.pc.Recv()
		if err == nil {
			if l.pl == nil {
				l.pl, err = w.P.Server.PeerPrimary().Open(l.pc, typ, body)
			} else {
				err = l.pl.Handle(typ, body)
			}
		}
		if err != nil {
			if errors.Is(err, peer.ErrBadTag) {
				w.TagFailures++
			}
			if errors.Is(err, store.ErrTailAhead) {
				w.Refused++
			}
			return w.linkDown("primary recv: " + err.Error())
		}
	}
	return w.settle()
}

// DropFrame loses the oldest segment in flight one way.
func (w *ReplicaWorld) DropFrame(toStandby bool) {
	if w.link == nil {
		return
	}
	from := 0
	if toStandby {
		from = 1
	}
	if w.link.pipe.drop(from) {
		w.Trace.Addf("net: a peer segment lost (to standby %v)", toStandby)
	}
}

// Cut closes the link.
func (w *ReplicaWorld) Cut() error { return w.linkDown("cut") }

// Partition separates the primary and the standby, or heals them.
func (w *ReplicaWorld) Partition(on bool) {
	w.partitioned = on
	w.Trace.Addf("partition %v", on)
}

func (w *ReplicaWorld) linkDown(why string) error {
	l := w.link
	if l == nil {
		return nil
	}
	w.link = nil
	l.pipe.close()
	if l.pl != nil {
		l.pl.Close()
	}
	if w.S.Server != nil {
		w.S.Server.PeerReplica().Disconnected(errors.New(why))
	}
	w.Trace.Addf("link down: %s", replicaFirstLine(errors.New(why)))
	return w.settle()
}

// StandbyBeat is the standby's Heartbeat, which it sends every second in
// production. It is how a link that lost a segment towards the primary
// fails even when nothing else is due: the primary's frame counter no
// longer matches (in production the watchdog would close a link that
// stays silent as well).
func (w *ReplicaWorld) StandbyBeat() error {
	l := w.link
	if l == nil {
		return nil
	}
	if err := l.rc.Send(peer.TypeHeartbeat, nil); err != nil {
		return w.linkDown("standby beat: " + err.Error())
	}
	return nil
}

// Round is one healthy exchange on the link: dial if down, the standby's
// Heartbeat, the primary takes what the standby sent, ships, the standby
// applies and acks, the primary takes the Acks, and an idle beat (which
// carries a floor rise).
func (w *ReplicaWorld) Round() error {
	for _, step := range []func() error{w.Dial, w.StandbyBeat, w.ToPrimary, w.Ship, w.ToStandby, w.ToPrimary, w.Beat, w.ToStandby, w.ToPrimary} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
