package sim

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// peerPipe is one simulated TCP connection on the replica port. Each Write
// is one segment (the peer package writes a whole frame per Write); written
// segments wait in flight until the harness delivers, drops or holds them,
// so what a link carries and when is the schedule's choice. During the
// handshake (auto) segments arrive at once, as the handshake's two sides run
// on their own goroutines until it ends; after it, nothing moves unless the
// harness says so.
type peerPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	closed bool
	auto   bool
	// flight[i] are the segments written by end i, not yet delivered; in[i]
	// the bytes that reached end i, not yet read.
	flight [2][][]byte
	in     [2][]byte
	ends   [2]*pipeEnd
}

func newPeerPipe(dialerAddr, acceptorAddr string) *peerPipe {
	p := &peerPipe{auto: true}
	p.cond = sync.NewCond(&p.mu)
	p.ends[0] = &pipeEnd{p: p, i: 0, local: pipeAddr(dialerAddr), remote: pipeAddr(acceptorAddr)}
	p.ends[1] = &pipeEnd{p: p, i: 1, local: pipeAddr(acceptorAddr), remote: pipeAddr(dialerAddr)}
	return p
}

// dialer and acceptor are the two ends.
func (p *peerPipe) dialer() *pipeEnd   { return p.ends[0] }
func (p *peerPipe) acceptor() *pipeEnd { return p.ends[1] }

// manual ends the handshake phase: from now on the harness moves segments.
func (p *peerPipe) manual() {
	p.mu.Lock()
	p.auto = false
	p.mu.Unlock()
}

func (p *peerPipe) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// deliver moves every segment end `from` wrote to the other end; drop
// loses the oldest one instead (a dropped packet the transport never
// retransmits: the receiver's frame counter then no longer matches).
func (p *peerPipe) deliver(from int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.flight[from])
	for _, seg := range p.flight[from] {
		p.in[1-from] = append(p.in[1-from], seg...)
	}
	p.flight[from] = nil
	p.cond.Broadcast()
	return n
}

func (p *peerPipe) drop(from int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.flight[from]) == 0 {
		return false
	}
	p.flight[from] = p.flight[from][1:]
	return true
}

// inject puts raw bytes on the wire towards end to, as if they arrived
// there next: a node on the network path forging a segment.
func (p *peerPipe) inject(to int, b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.in[to] = append(p.in[to], b...)
	p.cond.Broadcast()
}

// inFlight is how many segments end from wrote that have not arrived.
func (p *peerPipe) inFlight(from int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.flight[from])
}

// frameReady: a whole frame (length prefix and what it counts) has arrived
// at end i, so a Recv there returns without waiting.
func (p *peerPipe) frameReady(i int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.in[i]
	if len(b) < 4 {
		return p.closed && len(b) > 0
	}
	return uint64(len(b)) >= 4+uint64(binary.BigEndian.Uint32(b))
}

func (p *peerPipe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.cond.Broadcast()
}

// pipeEnd is one end of a peerPipe, a net.Conn.
type pipeEnd struct {
	p             *peerPipe
	i             int
	local, remote pipeAddr
}

var errPipeClosed = errors.New("sim: peer connection closed")

func (e *pipeEnd) Read(b []byte) (int, error) {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.in[e.i]) == 0 {
		if p.closed {
			return 0, io.EOF
		}
		p.cond.Wait()
	}
	n := copy(b, p.in[e.i])
	p.in[e.i] = p.in[e.i][n:]
	return n, nil
}

func (e *pipeEnd) Write(b []byte) (int, error) {
	p := e.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, errPipeClosed
	}
	seg := append([]byte(nil), b...)
	if p.auto {
		p.in[1-e.i] = append(p.in[1-e.i], seg...)
		p.cond.Broadcast()
	} else {
		p.flight[e.i] = append(p.flight[e.i], seg)
	}
	return len(b), nil
}

func (e *pipeEnd) Close() error {
	e.p.close()
	return nil
}

func (e *pipeEnd) LocalAddr() net.Addr              { return e.local }
func (e *pipeEnd) RemoteAddr() net.Addr             { return e.remote }
func (e *pipeEnd) SetDeadline(time.Time) error      { return nil }
func (e *pipeEnd) SetReadDeadline(time.Time) error  { return nil }
func (e *pipeEnd) SetWriteDeadline(time.Time) error { return nil }

// pipeAddr is a node's address on the simulated network.
type pipeAddr string

func (a pipeAddr) Network() string { return "sim" }
func (a pipeAddr) String() string  { return string(a) }
