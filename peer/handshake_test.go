package peer

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/finelog/finelog/internal/clock"
)

func TestHandshakeRoundTrip(t *testing.T) {
	psk := testPSK(t, 'k')
	a := newAcceptor(t, acceptorCfg(t, psk))
	d, acc := handshakePair(t, a, dialerCfg(psk, 2))
	if d.err != nil || acc.err != nil {
		t.Fatalf("handshake: dialer %v, acceptor %v", d.err, acc.err)
	}
	if d.c.Remote != testAcceptor || acc.c.Remote != testDialer {
		t.Fatalf("remote ids: dialer sees %x, acceptor sees %x", d.c.Remote, acc.c.Remote)
	}
	// Frames flow both ways under the session keys.
	errc := make(chan error, 1)
	go func() { errc <- d.c.SendSeq(TypeSubscribe, 41) }()
	typ, body, err := acc.c.Recv()
	if err != nil || typ != TypeSubscribe || Seq(body) != 41 {
		t.Fatalf("acceptor got type 0x%02x body %x err %v", typ, body, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() { errc <- acc.c.Send(TypeHeartbeat, nil) }()
	if typ, _, err := d.c.Recv(); err != nil || typ != TypeHeartbeat {
		t.Fatalf("dialer got type 0x%02x err %v", typ, err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeWrongPSK(t *testing.T) {
	a := newAcceptor(t, acceptorCfg(t, testPSK(t, 'k')))
	d, acc := handshakePair(t, a, dialerCfg(testPSK(t, 'x'), 2))
	if !errors.Is(d.err, ErrBadMAC) {
		t.Fatalf("dialer with the wrong PSK: %v, want ErrBadMAC", d.err)
	}
	if !errors.Is(acc.err, ErrBadMAC) {
		t.Fatalf("acceptor facing the wrong PSK: %v, want ErrBadMAC", acc.err)
	}
}

// fakeDialer speaks the dialer side by hand, for attacks a real dialer
// would never make. It returns the Challenge body.
func fakeHello(t *testing.T, nc net.Conn, hello []byte) []byte {
	t.Helper()
	go nc.Write(appendRawFrame(nil, TypeHello, hello))
	typ, body := rawFrame(t, nc)
	if typ != TypeChallenge || len(body) != challengeBody {
		t.Fatalf("got type 0x%02x, %d bytes", typ, len(body))
	}
	return body
}

func acceptInBackground(a *Acceptor, nc net.Conn) <-chan result {
	ch := make(chan result, 1)
	go func() {
		c, err := a.Accept(nc)
		ch <- result{c, err}
	}()
	return ch
}

func TestHandshakeReflectionRefused(t *testing.T) {
	a := newAcceptor(t, acceptorCfg(t, testPSK(t, 'k')))
	dn, an := net.Pipe()
	defer dn.Close()
	res := acceptInBackground(a, an)
	nonce := [32]byte{9}
	ch := fakeHello(t, dn, helloMsg(Version, testCluster, testDialer, &nonce))
	// Offer the acceptor's own MAC back as the dialer's.
	go dn.Write(appendRawFrame(nil, TypeFinish, ch[49:81]))
	r := <-res
	if !errors.Is(r.err, ErrBadMAC) {
		t.Fatalf("reflected mac_a: %v, want ErrBadMAC", r.err)
	}
	waitClosed(t, dn) // no reply, just a close
}

// tap records what flows through a connection, per direction.
type tap struct {
	net.Conn
	mu      sync.Mutex
	out, in []byte
}

func (t *tap) Write(b []byte) (int, error) {
	t.mu.Lock()
	t.out = append(t.out, b...)
	t.mu.Unlock()
	return t.Conn.Write(b)
}

func (t *tap) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	t.mu.Lock()
	t.in = append(t.in, b[:n]...)
	t.mu.Unlock()
	return n, err
}

// oldSession runs one real handshake and returns the dialer's Hello and
// Finish frames and the acceptor's Challenge frame, as an eavesdropper
// would have recorded them.
func oldSession(t *testing.T, psk PSK) (hello, challenge, finish []byte) {
	a := newAcceptor(t, acceptorCfg(t, psk))
	dn, an := net.Pipe()
	defer dn.Close()
	tp := &tap{Conn: dn}
	res := acceptInBackground(a, an)
	c, err := Handshake(tp, dialerCfg(psk, 3))
	if err != nil {
		t.Fatal(err)
	}
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	c.Close()
	r.c.Close()
	hl, cl := 4+1+helloBody, 4+1+challengeBody
	return tp.out[:hl], tp.in[:cl], tp.out[hl:]
}

func TestHandshakeReplayedChallengeRefused(t *testing.T) {
	psk := testPSK(t, 'k')
	_, oldChallenge, _ := oldSession(t, psk)
	// A fake acceptor replays the recorded Challenge to a new dialer.
	dn, an := net.Pipe()
	defer an.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		readRawFrame(an, MaxHandshakeFrame)
		an.Write(oldChallenge)
	}()
	_, err := Handshake(dn, dialerCfg(psk, 4))
	<-done
	if !errors.Is(err, ErrBadMAC) {
		t.Fatalf("replayed challenge: %v, want ErrBadMAC", err)
	}
	waitClosed(t, an) // the dialer closed instead of sending Finish
}

func TestHandshakeReplayedFinishRefused(t *testing.T) {
	psk := testPSK(t, 'k')
	oldHello, _, oldFinish := oldSession(t, psk)
	a := newAcceptor(t, AcceptorConfig{Cluster: testCluster, Node: testAcceptor, PSK: psk, Rand: seeded(77)})
	dn, an := net.Pipe()
	defer dn.Close()
	res := acceptInBackground(a, an)
	go dn.Write(oldHello)
	rawFrame(t, dn) // a fresh Challenge with a new nonce_a
	go dn.Write(oldFinish)
	if r := <-res; !errors.Is(r.err, ErrBadMAC) {
		t.Fatalf("replayed hello+finish: %v, want ErrBadMAC", r.err)
	}
	waitClosed(t, dn)
}

func TestHandshakeSwappedIDsRefused(t *testing.T) {
	psk := testPSK(t, 'k')
	mk := macKey(psk)
	t.Run("acceptor MACs with ids swapped", func(t *testing.T) {
		dn, an := net.Pipe()
		defer an.Close()
		go func() {
			_, body, err := readRawFrame(an, MaxHandshakeFrame)
			if err != nil {
				return
			}
			var nd [32]byte
			copy(nd[:], body[33:65])
			na := [32]byte{5}
			mac := handshakeMAC(&mk, transcript(testCluster, testAcceptor, testDialer, &nd, &na), labelAcceptor)
			an.Write(appendRawFrame(nil, TypeChallenge, challengeMsg(StatusOK, testAcceptor, &na, &mac)))
		}()
		if _, err := Handshake(dn, dialerCfg(psk, 5)); !errors.Is(err, ErrBadMAC) {
			t.Fatalf("swapped ids in mac_a: %v, want ErrBadMAC", err)
		}
	})
	t.Run("dialer MACs with ids swapped", func(t *testing.T) {
		a := newAcceptor(t, acceptorCfg(t, psk))
		dn, an := net.Pipe()
		defer dn.Close()
		res := acceptInBackground(a, an)
		nd := [32]byte{6}
		ch := fakeHello(t, dn, helloMsg(Version, testCluster, testDialer, &nd))
		var na [32]byte
		copy(na[:], ch[17:49])
		mac := handshakeMAC(&mk, transcript(testCluster, testAcceptor, testDialer, &nd, &na), labelDialer)
		go dn.Write(appendRawFrame(nil, TypeFinish, mac[:]))
		if r := <-res; !errors.Is(r.err, ErrBadMAC) {
			t.Fatalf("swapped ids in mac_d: %v, want ErrBadMAC", r.err)
		}
	})
}

// mitm relays between a real dialer and a real acceptor, letting edit
// change the n-th frame (0: Hello, 1: Challenge) in flight.
func mitm(t *testing.T, psk PSK, edit func(i int, frame []byte)) (d, acc result) {
	a := newAcceptor(t, acceptorCfg(t, psk))
	dn, m1 := net.Pipe()
	m2, an := net.Pipe()
	res := acceptInBackground(a, an)
	go func() {
		defer m1.Close()
		defer m2.Close()
		for i, pair := range [][2]net.Conn{{m1, m2}, {m2, m1}, {m1, m2}} {
			typ, body, err := readRawFrame(pair[0], MaxHandshakeFrame)
			if err != nil {
				return
			}
			f := appendRawFrame(nil, typ, body)
			edit(i, f)
			if _, err := pair[1].Write(f); err != nil {
				return
			}
		}
	}()
	c, err := Handshake(dn, dialerCfg(psk, 8))
	d = result{c, err}
	acc = <-res
	return d, acc
}

func TestHandshakeChangedNonceRefused(t *testing.T) {
	psk := testPSK(t, 'k')
	t.Run("nonce_d", func(t *testing.T) {
		d, acc := mitm(t, psk, func(i int, f []byte) {
			if i == 0 {
				f[5+33] ^= 1
			}
		})
		if !errors.Is(d.err, ErrBadMAC) || acc.err == nil {
			t.Fatalf("changed nonce_d: dialer %v, acceptor %v", d.err, acc.err)
		}
	})
	t.Run("nonce_a", func(t *testing.T) {
		d, acc := mitm(t, psk, func(i int, f []byte) {
			if i == 1 {
				f[5+17] ^= 0x80
			}
		})
		if !errors.Is(d.err, ErrBadMAC) || acc.err == nil {
			t.Fatalf("changed nonce_a: dialer %v, acceptor %v", d.err, acc.err)
		}
	})
	t.Run("untouched", func(t *testing.T) {
		d, acc := mitm(t, psk, func(int, []byte) {})
		if d.err != nil || acc.err != nil {
			t.Fatalf("relay without edits: dialer %v, acceptor %v", d.err, acc.err)
		}
		d.c.Close()
		acc.c.Close()
	})
}

// rejected runs hello against an acceptor and checks the reject Challenge.
func rejected(t *testing.T, a *Acceptor, hello []byte, want Status) {
	t.Helper()
	dn, an := net.Pipe()
	defer dn.Close()
	res := acceptInBackground(a, an)
	ch := fakeHello(t, dn, hello)
	if Status(ch[0]) != want {
		t.Fatalf("status %d, want %d (%s)", ch[0], want, want)
	}
	for i, b := range ch[1:] {
		if b != 0 {
			t.Fatalf("reject byte %d is %#x: acceptor_id, nonce_a and mac_a must be zero", i+1, b)
		}
	}
	var re *RejectError
	if r := <-res; !errors.As(r.err, &re) || re.Status != want {
		t.Fatalf("acceptor returned %v", r.err)
	}
	waitClosed(t, dn)
}

func TestHandshakeRejects(t *testing.T) {
	a := newAcceptor(t, acceptorCfg(t, testPSK(t, 'k')))
	nonce := [32]byte{1}
	t.Run("cluster mismatch", func(t *testing.T) {
		rejected(t, a, helloMsg(Version, NameID("west"), testDialer, &nonce), StatusClusterMismatch)
	})
	t.Run("legacy all-zero hello", func(t *testing.T) {
		rejected(t, a, helloMsg(Version, testCluster, testDialer, &[32]byte{}), StatusRefused)
	})
	t.Run("unsupported version", func(t *testing.T) {
		rejected(t, a, helloMsg(2, testCluster, testDialer, &nonce), StatusUnsupportedVersion)
	})
	t.Run("dialer sees cluster mismatch as status 2", func(t *testing.T) {
		cfg := dialerCfg(testPSK(t, 'k'), 2)
		cfg.Cluster = NameID("west")
		d, _ := handshakePair(t, a, cfg)
		var re *RejectError
		if !errors.As(d.err, &re) || re.Status != StatusClusterMismatch {
			t.Fatalf("dialer got %v", d.err)
		}
	})
}

func TestHandshakeUnknownStatusIsReject(t *testing.T) {
	psk := testPSK(t, 'k')
	mk := macKey(psk)
	dn, an := net.Pipe()
	defer an.Close()
	go func() {
		_, body, err := readRawFrame(an, MaxHandshakeFrame)
		if err != nil {
			return
		}
		var nd [32]byte
		copy(nd[:], body[33:65])
		na := [32]byte{5}
		// A valid mac_a, but a status this dialer does not know.
		mac := handshakeMAC(&mk, transcript(testCluster, testDialer, testAcceptor, &nd, &na), labelAcceptor)
		an.Write(appendRawFrame(nil, TypeChallenge, challengeMsg(Status(7), testAcceptor, &na, &mac)))
	}()
	_, err := Handshake(dn, dialerCfg(psk, 5))
	var re *RejectError
	if !errors.As(err, &re) || re.Status != 7 {
		t.Fatalf("unknown status: %v, want a reject with status 7", err)
	}
	waitClosed(t, an) // and no Finish was sent
}

func TestHandshakeRotationWindow(t *testing.T) {
	oldKey, newKey, other := testPSK(t, 'o'), testPSK(t, 'n'), testPSK(t, 'z')
	cfg := acceptorCfg(t, oldKey)
	cfg.NextPSK = newKey
	a := newAcceptor(t, cfg)
	// connects reports whether a dialer holding psk gets in within two
	// attempts (a dialer on the key the acceptor did not guess fails its
	// first attempt and reconnects, as the replica does).
	connects := func(psk PSK, node string) bool {
		for attempt := range 2 {
			dc := dialerCfg(psk, byte(10+attempt))
			dc.Node = NameID(node)
			d, acc := handshakePair(t, a, dc)
			if d.err == nil && acc.err == nil {
				d.c.Close()
				acc.c.Close()
				return true
			}
		}
		return false
	}
	if !connects(oldKey, "r-old") {
		t.Fatal("a dialer on the current key was refused during the roll")
	}
	if !connects(newKey, "r-new") {
		t.Fatal("a dialer on the next key was refused during the roll")
	}
	if !connects(newKey, "r-new") {
		t.Fatal("a dialer on the next key was refused on reconnect")
	}
	if connects(other, "r-other") {
		t.Fatal("a dialer on neither key got in")
	}
	// Step 3 of the roll: the next key becomes the only one.
	done := newAcceptor(t, acceptorCfg(t, newKey))
	a = done
	if connects(oldKey, "r-old") {
		t.Fatal("the retired key still gets in after the roll")
	}
	if !connects(newKey, "r-new") {
		t.Fatal("the new key is refused after the roll")
	}
}

func TestHandshakeTimeoutClosesSilentDialer(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	cfg := acceptorCfg(t, testPSK(t, 'k'))
	cfg.Clock = clk
	a := newAcceptor(t, cfg)
	dn, an := net.Pipe()
	defer dn.Close()
	res := acceptInBackground(a, an)
	for clk.Pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(DefaultHandshakeTimeout - time.Millisecond)
	select {
	case r := <-res:
		t.Fatalf("closed before the timeout: %v", r.err)
	case <-time.After(20 * time.Millisecond):
	}
	clk.Advance(time.Millisecond)
	if r := <-res; !errors.Is(r.err, ErrHandshakeTimeout) {
		t.Fatalf("silent dialer: %v, want ErrHandshakeTimeout", r.err)
	}
	waitClosed(t, dn)
}

func TestHandshakeBusyAt257(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	cfg := acceptorCfg(t, testPSK(t, 'k'))
	cfg.Clock = clk
	a := newAcceptor(t, cfg)
	var silent []net.Conn
	var results []<-chan result
	for range DefaultMaxHandshakes {
		dn, an := net.Pipe()
		silent = append(silent, dn)
		results = append(results, acceptInBackground(a, an))
	}
	for clk.Pending() < DefaultMaxHandshakes {
		time.Sleep(time.Millisecond)
	}
	nonce := [32]byte{1}
	rejected(t, a, helloMsg(Version, testCluster, testDialer, &nonce), StatusBusy)
	// The slots free up as the silent dialers go away.
	for _, c := range silent {
		c.Close()
	}
	for _, r := range results {
		<-r
	}
	d, acc := handshakePair(t, a, dialerCfg(testPSK(t, 'k'), 2))
	if d.err != nil || acc.err != nil {
		t.Fatalf("after the flood: dialer %v, acceptor %v", d.err, acc.err)
	}
	d.c.Close()
	acc.c.Close()
}
