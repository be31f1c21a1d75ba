package peer

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
)

// Role is which end of the link a Conn is.
type Role int

const (
	// RoleDialer is the replica: it dials and subscribes.
	RoleDialer Role = iota
	// RoleAcceptor is the primary: it listens and streams records.
	RoleAcceptor
)

func (r Role) String() string {
	if r == RoleDialer {
		return "dialer"
	}
	return "acceptor"
}

// Conn is an authenticated peer link: every frame sent is tagged under
// this end's direction key, every frame received is checked under the
// other's, and each direction counts its frames from 0 without sending the
// counter. One goroutine may Send while another Recvs. Any error from Recv
// (bad tag, unknown type, a type the other end may not send, a malformed
// body, an oversized or truncated frame) closes the connection: after it the
// stream can no longer be trusted.
type Conn struct {
	nc       net.Conn
	role     Role
	maxFrame int
	stats    *Stats
	// Remote is the other end's node id from the handshake.
	Remote ID

	wmu   sync.Mutex
	wkey  *key
	wctr  uint64
	wbuf  []byte
	rkey  *key
	rctr  uint64
	rhdr  [4]byte
	close sync.Once
	// skipTag is the SkipTagCheck canary.
	skipTag bool
}

func newConn(nc net.Conn, role Role, kda, kad key, maxFrame int, stats *Stats, remote ID, d Defects) *Conn {
	c := &Conn{nc: nc, role: role, maxFrame: maxFrame, stats: stats, Remote: remote, skipTag: d.SkipTagCheck}
	if role == RoleDialer {
		c.wkey, c.rkey = &kda, &kad
	} else {
		c.wkey, c.rkey = &kad, &kda
	}
	return c
}

// sealCopyMax is the largest body Send copies into its frame buffer to
// write the frame with one write; larger ones are written in place.
const sealCopyMax = 64 << 10

// Send writes one tagged frame.
func (c *Conn) Send(typ byte, body []byte) error {
	if 1+len(body)+TagBytes > c.maxFrame {
		return fmt.Errorf("peer: frame of %d bytes over the %d-byte limit (--peer-max-frame)", 1+len(body)+TagBytes, c.maxFrame)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var n int
	var err error
	if len(body) <= sealCopyMax {
		c.wbuf = SealFrame(c.wbuf[:0], (*[32]byte)(c.wkey), c.wctr, typ, body)
		n, err = c.nc.Write(c.wbuf)
	} else {
		// A large body (a Records frame, a segment chunk) goes out as it
		// is, between its header and tag, in one writev: copying it into
		// a frame buffer first would cost a pass over every replicated
		// byte and a buffer as large as the frame.
		var hdr [5]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(1+len(body)+TagBytes))
		hdr[4] = typ
		tag := frameTag(c.wkey, c.wctr, typ, body)
		bufs := net.Buffers{hdr[:], body, tag[:]}
		var m int64
		m, err = bufs.WriteTo(c.nc)
		n = int(m)
	}
	c.wctr++
	if err != nil {
		c.Close()
		return fmt.Errorf("peer: send: %w", err)
	}
	c.stats.sent(n)
	return nil
}

// Recv reads and verifies the next frame. Only one goroutine may call it.
// The body is a buffer of its own that Conn never reuses, so its bytes may
// be aliased (decodeOwnedRecords) for as long as the caller likes.
func (c *Conn) Recv() (typ byte, body []byte, err error) {
	typ, body, err = c.recv()
	if err != nil {
		c.Close()
	}
	return typ, body, err
}

func (c *Conn) recv() (byte, []byte, error) {
	if _, err := io.ReadFull(c.nc, c.rhdr[:]); err != nil {
		return 0, nil, err
	}
	l := binary.BigEndian.Uint32(c.rhdr[:])
	if err := checkTaggedLen(l, c.maxFrame); err != nil {
		c.stats.protocolError()
		return 0, nil, err
	}
	f := make([]byte, l)
	if _, err := io.ReadFull(c.nc, f); err != nil {
		c.stats.protocolError()
		return 0, nil, truncated(err)
	}
	typ, body := f[0], f[1:len(f)-TagBytes]
	if err := checkTag(c.rkey, c.rctr, typ, body, f[len(f)-TagBytes:]); err != nil && !c.skipTag {
		c.stats.tagFailure(c.nc.RemoteAddr())
		return 0, nil, err
	}
	c.rctr++
	c.stats.received(4 + int(l))
	if err := checkMessage(c.role, typ, body); err != nil {
		c.stats.protocolError()
		return 0, nil, err
	}
	return typ, body, nil
}

// checkMessage enforces which types each end may send and the fixed body
// sizes. Anything not listed is refused: deny is the default.
func checkMessage(receiver Role, typ byte, body []byte) error {
	want := -1
	switch {
	case typ == TypeHeartbeat:
		want = 0
	case receiver == RoleAcceptor && typ == TypeSubscribe && len(body) == subscribeFlagsBytes:
		// from_seq, the flags byte (SubscribeSegments) and
		// segments_through; 8 bytes is the original form, without flags.
		return nil
	case receiver == RoleAcceptor && (typ == TypeSubscribe || typ == TypeAck):
		want = 8
	case receiver == RoleDialer && (typ == TypeRecords || typ == TypeSegment):
		return nil // DecodeRecords and DecodeSegmentChunk check the body
	default:
		return fmt.Errorf("%w: frame type 0x%02x is not one the %s accepts", ErrProtocol, typ, receiver)
	}
	if len(body) != want {
		return fmt.Errorf("%w: frame type 0x%02x has a %d-byte body, want %d", ErrProtocol, typ, len(body), want)
	}
	return nil
}

// Close closes the underlying connection.
func (c *Conn) Close() error {
	var err error
	c.close.Do(func() { err = c.nc.Close() })
	return err
}

// RemoteAddr is the transport peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// SendSeq sends a Subscribe or Ack: a frame whose body is one u64.
func (c *Conn) SendSeq(typ byte, seq int64) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	return c.Send(typ, b[:])
}

// Seq decodes a Subscribe or Ack body (checked to be 8 or, for a
// Subscribe with flags, subscribeFlagsBytes by Recv).
func Seq(body []byte) int64 { return int64(binary.BigEndian.Uint64(body)) }
