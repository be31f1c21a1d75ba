package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types. Handshake frames (0x01..0x03) are untagged; every frame
// after Finish is tagged.
const (
	TypeHello     byte = 0x01
	TypeChallenge byte = 0x02
	TypeFinish    byte = 0x03

	TypeSubscribe byte = 0x10
	TypeRecords   byte = 0x11
	TypeAck       byte = 0x12
	TypeHeartbeat byte = 0x13
)

// Frame size limits. A frame's length field counts everything after it.
const (
	// MaxHandshakeFrame: a handshake frame longer than this is a protocol
	// error.
	MaxHandshakeFrame = 256
	// DefaultMaxFrame is --peer-max-frame's default.
	DefaultMaxFrame = 16 << 20
	// minTaggedFrame is a type byte and a tag with an empty body.
	minTaggedFrame = 1 + TagBytes
)

// Errors a connection ends with. Each closes the connection.
var (
	// ErrProtocol: a frame broke the protocol (size, type, body length,
	// direction, order). The peer is buggy or hostile.
	ErrProtocol = errors.New("peer protocol error")
	// ErrBadTag: a tagged frame's tag did not verify: injected, replayed,
	// dropped, reordered or corrupted traffic.
	ErrBadTag = errors.New("peer frame tag mismatch")
)

// readRawFrame reads one length-prefixed frame (length | type | body) and
// refuses lengths of 0 or above limit before reading the rest.
func readRawFrame(r io.Reader, limit int) (typ byte, body []byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || uint64(n) > uint64(limit) {
		return 0, nil, fmt.Errorf("%w: frame length %d, limit %d", ErrProtocol, n, limit)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, truncated(err)
	}
	return buf[0], buf[1:], nil
}

// truncated turns an EOF inside a frame into a protocol error: the peer
// stopped mid-frame.
func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated frame", ErrProtocol)
	}
	return err
}

// appendRawFrame appends an untagged frame.
func appendRawFrame(dst []byte, typ byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(body)))
	dst = append(dst, typ)
	return append(dst, body...)
}

// SealFrame appends the tagged frame length | type | body | tag for the
// direction key k and the frame's counter. Exported so an independent
// implementation can be checked against this one.
func SealFrame(dst []byte, k *[32]byte, counter uint64, typ byte, body []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(1+len(body)+TagBytes))
	dst = append(dst, typ)
	dst = append(dst, body...)
	tag := frameTag((*key)(k), counter, typ, body)
	return append(dst, tag[:]...)
}

// OpenFrame parses the tagged frame at the start of b, checks its length
// against maxFrame and its tag against k and counter, and returns its type,
// body (aliasing b) and total size. It never panics; a short b is a
// truncated frame (ErrProtocol), a bad tag ErrBadTag. The type is not
// checked: that is the connection's job.
func OpenFrame(b []byte, k *[32]byte, counter uint64, maxFrame int) (typ byte, body []byte, n int, err error) {
	if len(b) < 4 {
		return 0, nil, 0, fmt.Errorf("%w: truncated frame header", ErrProtocol)
	}
	l := binary.BigEndian.Uint32(b)
	if err := checkTaggedLen(l, maxFrame); err != nil {
		return 0, nil, 0, err
	}
	if uint64(len(b)-4) < uint64(l) {
		return 0, nil, 0, fmt.Errorf("%w: truncated frame: length %d, %d bytes present", ErrProtocol, l, len(b)-4)
	}
	f := b[4 : 4+int(l)]
	typ, body = f[0], f[1:len(f)-TagBytes]
	if err := checkTag((*key)(k), counter, typ, body, f[len(f)-TagBytes:]); err != nil {
		return 0, nil, 0, err
	}
	return typ, body, 4 + int(l), nil
}

func checkTaggedLen(l uint32, maxFrame int) error {
	if l < minTaggedFrame {
		return fmt.Errorf("%w: frame length %d, a tagged frame needs at least %d", ErrProtocol, l, minTaggedFrame)
	}
	if uint64(l) > uint64(maxFrame) {
		return fmt.Errorf("%w: frame length %d over the %d-byte limit (--peer-max-frame)", ErrProtocol, l, maxFrame)
	}
	return nil
}

func checkTag(k *key, counter uint64, typ byte, body, tag []byte) error {
	want := frameTag(k, counter, typ, body)
	if !macEqual(want[:], tag) {
		return fmt.Errorf("%w: frame %d (type 0x%02x)", ErrBadTag, counter, typ)
	}
	return nil
}
