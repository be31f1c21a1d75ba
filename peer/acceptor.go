package peer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

// DefaultMaxHandshakes is how many handshakes may be in flight at once;
// the next one is answered with StatusBusy.
const DefaultMaxHandshakes = 256

// AcceptorConfig is what a primary needs to authenticate replicas.
type AcceptorConfig struct {
	Cluster ID
	Node    ID
	// PSK is the current key; NextPSK, when set, the key being rolled in
	// (--peer-psk-next-file). The acceptor accepts a dialer holding either.
	PSK     PSK
	NextPSK PSK
	// Rand supplies nonces (crypto/rand.Reader in production).
	Rand             io.Reader
	Clock            clock.Clock
	HandshakeTimeout time.Duration // default DefaultHandshakeTimeout
	MaxFrame         int           // default DefaultMaxFrame
	MaxHandshakes    int           // default DefaultMaxHandshakes
	Stats            *Stats
	// Defects is for the simulation's canaries only.
	Defects Defects
}

// maxKeyPrefs bounds the per-dialer key memory, which unauthenticated
// Hellos can write to.
const maxKeyPrefs = 4096

// Acceptor runs the acceptor's side of handshakes, enforcing the timeout
// and the in-flight limit. Safe for concurrent use.
type Acceptor struct {
	cfg      AcceptorConfig
	keys     []*key // mac keys: current, then next
	inflight chan struct{}
	// busy bounds the connections being turned away with StatusBusy, so a
	// flood costs bounded goroutines too.
	busy chan struct{}

	mu sync.Mutex
	// pref: which key to MAC the Challenge with for a dialer id. The
	// Challenge must be MACed before the dialer proves which key it holds,
	// so during a roll a dialer on the other key fails its first attempt
	// (it closes without a Finish) and the next attempt uses the other key.
	pref map[ID]int
}

// NewAcceptor checks cfg and returns an Acceptor.
func NewAcceptor(cfg AcceptorConfig) (*Acceptor, error) {
	if cfg.PSK.IsZero() {
		return nil, ErrNoPSK
	}
	if cfg.Rand == nil {
		return nil, errors.New("peer: AcceptorConfig.Rand is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	cfg.HandshakeTimeout = orDefault(cfg.HandshakeTimeout, DefaultHandshakeTimeout)
	cfg.MaxFrame = orDefault(cfg.MaxFrame, DefaultMaxFrame)
	cfg.MaxHandshakes = orDefault(cfg.MaxHandshakes, DefaultMaxHandshakes)
	a := &Acceptor{
		cfg:      cfg,
		keys:     []*key{ptr(macKey(cfg.PSK))},
		inflight: make(chan struct{}, cfg.MaxHandshakes),
		busy:     make(chan struct{}, cfg.MaxHandshakes),
		pref:     map[ID]int{},
	}
	if !cfg.NextPSK.IsZero() {
		a.keys = append(a.keys, ptr(macKey(cfg.NextPSK)))
	}
	return a, nil
}

// Accept runs the handshake on a freshly accepted nc and returns the
// authenticated Conn. On any failure nc is closed and the error says why;
// a reject was already sent as a Challenge with a nonzero status.
func (a *Acceptor) Accept(nc net.Conn) (*Conn, error) {
	select {
	case a.inflight <- struct{}{}:
		defer func() { <-a.inflight }()
	default:
		select {
		case a.busy <- struct{}{}:
			defer func() { <-a.busy }()
		default:
			nc.Close()
			a.cfg.Stats.handshake(RoleAcceptor, StatusBusy.String())
			return nil, &RejectError{Status: StatusBusy}
		}
		return nil, a.turnAway(nc)
	}
	stop := closeAfter(a.cfg.Clock, a.cfg.HandshakeTimeout, nc)
	c, result, err := a.accept(nc)
	if !stop() {
		err, result = ErrHandshakeTimeout, "timeout"
	}
	a.cfg.Stats.handshake(RoleAcceptor, result)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// turnAway reads the dialer's Hello (so the reject is not lost to a reset
// on a socket with unread data) and answers StatusBusy.
func (a *Acceptor) turnAway(nc net.Conn) error {
	stop := closeAfter(a.cfg.Clock, a.cfg.HandshakeTimeout, nc)
	if _, _, err := readRawFrame(nc, MaxHandshakeFrame); err == nil {
		a.reject(nc, StatusBusy)
	}
	stop()
	nc.Close()
	a.cfg.Stats.handshake(RoleAcceptor, StatusBusy.String())
	return &RejectError{Status: StatusBusy}
}

func (a *Acceptor) reject(nc net.Conn, st Status) {
	var zero [32]byte
	nc.Write(appendRawFrame(nil, TypeChallenge, challengeMsg(st, ID{}, &zero, &zero)))
}

func (a *Acceptor) accept(nc net.Conn) (*Conn, string, error) {
	typ, body, err := readRawFrame(nc, MaxHandshakeFrame)
	if err != nil {
		return nil, "protocol_error", fmt.Errorf("peer handshake: read hello: %w", truncated(err))
	}
	if typ != TypeHello || len(body) != helloBody {
		return nil, "protocol_error", fmt.Errorf("%w: expected a %d-byte hello, got type 0x%02x with %d bytes", ErrProtocol, helloBody, typ, len(body))
	}
	var cluster, dialer ID
	var nonceD [32]byte
	copy(cluster[:], body[1:17])
	copy(dialer[:], body[17:33])
	copy(nonceD[:], body[33:65])
	st := StatusOK
	switch {
	case body[0] != Version:
		st = StatusUnsupportedVersion
	case cluster != a.cfg.Cluster:
		st = StatusClusterMismatch
	case nonceD == [32]byte{}:
		st = StatusRefused // a legacy, unauthenticated hello
	}
	if st != StatusOK {
		a.reject(nc, st)
		return nil, st.String(), &RejectError{Status: st}
	}
	var nonceA [32]byte
	if err := readNonce(a.cfg.Rand, &nonceA); err != nil {
		a.reject(nc, StatusRefused)
		return nil, StatusRefused.String(), err
	}
	ki := a.keyFor(dialer)
	mk := a.keys[ki]
	tr := transcript(cluster, dialer, a.cfg.Node, &nonceD, &nonceA)
	macA := handshakeMAC(mk, tr, labelAcceptor)
	if _, err := nc.Write(appendRawFrame(nil, TypeChallenge, challengeMsg(StatusOK, a.cfg.Node, &nonceA, &macA))); err != nil {
		return nil, "protocol_error", fmt.Errorf("peer handshake: send challenge: %w", err)
	}
	typ, body, err = readRawFrame(nc, MaxHandshakeFrame)
	if errors.Is(err, io.EOF) {
		// A dialer closes without a Finish when our mac_a did not verify:
		// during a roll it holds the other key.
		a.switchKey(dialer, ki)
		return nil, "bad_mac", fmt.Errorf("peer handshake: the dialer closed after the challenge (it does not hold this PSK): %w", ErrBadMAC)
	}
	if err != nil {
		return nil, "protocol_error", fmt.Errorf("peer handshake: read finish: %w", truncated(err))
	}
	if typ != TypeFinish || len(body) != finishBody {
		return nil, "protocol_error", fmt.Errorf("%w: expected a %d-byte finish, got type 0x%02x with %d bytes", ErrProtocol, finishBody, typ, len(body))
	}
	want := handshakeMAC(mk, tr, labelDialer)
	if !macEqual(want[:], body) && !a.cfg.Defects.SkipMACCheck {
		// No reply: a dialer without the key learns nothing more.
		return nil, "bad_mac", ErrBadMAC
	}
	a.setKey(dialer, ki)
	kda, kad := sessionKeys(mk, &nonceD, &nonceA)
	return newConn(nc, RoleAcceptor, kda, kad, a.cfg.MaxFrame, a.cfg.Stats, dialer, a.cfg.Defects), "ok", nil
}

func (a *Acceptor) keyFor(dialer ID) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pref[dialer]
}

func (a *Acceptor) switchKey(dialer ID, used int) {
	if len(a.keys) < 2 {
		return
	}
	a.setKey(dialer, (used+1)%len(a.keys))
}

func (a *Acceptor) setKey(dialer ID, ki int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pref) >= maxKeyPrefs {
		clear(a.pref)
	}
	if ki == 0 {
		delete(a.pref, dialer)
		return
	}
	a.pref[dialer] = ki
}
