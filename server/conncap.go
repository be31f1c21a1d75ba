package server

import (
	"net"
	"net/netip"
	"sync"
)

// Connection caps. Every open connection costs a file descriptor and a
// goroutine whether or not it sends anything, and keep-alive holds them
// (2,000 idle connections took 2,000 fds). Past a cap a new connection is
// closed as soon as it is accepted; the ones already open are untouched.
const (
	DefaultMaxConnections        = 4096
	DefaultMaxConnectionsPerPeer = 256
)

// capListener enforces a global and a per-peer-address connection cap.
type capListener struct {
	net.Listener
	max, perPeer int
	refused      func()

	mu     sync.Mutex
	open   int
	byPeer map[netip.Addr]int
}

func newCapListener(ln net.Listener, max, perPeer int, refused func()) *capListener {
	return &capListener{Listener: ln, max: max, perPeer: perPeer, refused: refused, byPeer: map[netip.Addr]int{}}
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := peerOf(c)
		if l.admit(peer) {
			return &cappedConn{Conn: c, l: l, peer: peer}, nil
		}
		c.Close()
		if l.refused != nil {
			l.refused()
		}
	}
}

func peerOf(c net.Conn) netip.Addr {
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (l *capListener) admit(peer netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.max || l.byPeer[peer] >= l.perPeer {
		return false
	}
	l.open++
	l.byPeer[peer]++
	return true
}

func (l *capListener) done(peer netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byPeer[peer]--; l.byPeer[peer] <= 0 {
		delete(l.byPeer, peer)
	}
}

// cappedConn gives its slot back when it is closed (once).
type cappedConn struct {
	net.Conn
	l    *capListener
	peer netip.Addr
	once sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.done(c.peer) })
	return err
}
