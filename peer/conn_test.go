package peer

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/finelog/finelog/store"
)

// A body over sealCopyMax is written in place (header, body, tag in one
// writev) instead of copied into a frame buffer; the bytes on the wire
// must be exactly the sealed frame either way, at each counter.
func TestSendLargeBodyIsTheSealedFrame(t *testing.T) {
	d, a := linked(t)
	defer d.Close()
	defer a.Close()
	small := []byte("small body")
	large := bytes.Repeat([]byte("0123456789abcdef"), (sealCopyMax+4096)/16)
	want := append(seal(a, 0, TypeRecords, small), seal(a, 1, TypeRecords, large)...)
	want = append(want, seal(a, 2, TypeSegment, large)...)
	errc := make(chan error, 1)
	go func() {
		for _, f := range []struct {
			typ  byte
			body []byte
		}{{TypeRecords, small}, {TypeRecords, large}, {TypeSegment, large}} {
			if err := a.Send(f.typ, f.body); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(d.nc, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("a frame sent in place differs from SealFrame's bytes")
	}
}

// The receiving end checks a large frame's tag like any other: the intact
// frame opens with its body, one flipped body byte closes the link.
func TestLargeFrameTagChecked(t *testing.T) {
	large := bytes.Repeat([]byte{0x5a}, sealCopyMax+1)
	d, a := linked(t)
	go a.Send(TypeRecords, large)
	typ, body, err := d.Recv()
	if err != nil || typ != TypeRecords || !bytes.Equal(body, large) {
		t.Fatalf("Recv: type 0x%02x, %d bytes, %v; want the %d-byte Records body", typ, len(body), err, len(large))
	}
	d.Close()
	a.Close()

	d, a = linked(t)
	f := seal(a, 0, TypeRecords, large)
	f[5+len(large)/2] ^= 0x01
	inject(a, f)
	expectClosed(t, d, ErrBadTag)
}

// A replica decodes Records bodies without copying them; the result must
// equal the copying decoder's, also with attributes and repeated fields.
func TestDecodeOwnedRecordsMatchesDecodeRecords(t *testing.T) {
	in := Records{Floor: 2, PrimaryLast: 9, Records: []store.Record{{First: 3, Last: 5, Floor: 2,
		Rows: []store.Row{
			{Seq: 3, Key: "/a", Source: "stdout", Data: "one", Cluster: "east", Attributes: "\x03env\x04prod"},
			{Seq: 4, Key: "/a", Source: "stdout", Data: "two", Cluster: "east", Attributes: "\x03env\x04prod"},
			{Seq: 5, Key: "/b", Data: "three"},
		},
		Marks: []store.ProducerMark{{Producer: "relay", Seq: 7}}}}}
	b := EncodeRecords(nil, in)
	want, err := DecodeRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeOwnedRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 1 || len(got.Records[0].Rows) != 3 {
		t.Fatalf("decoded %+v", got)
	}
	for i := range want.Records[0].Rows {
		if got.Records[0].Rows[i] != want.Records[0].Rows[i] {
			t.Fatalf("row %d: %+v, want %+v", i, got.Records[0].Rows[i], want.Records[0].Rows[i])
		}
	}
	if _, err := decodeOwnedRecords(b[:len(b)-1]); !errors.Is(err, ErrProtocol) {
		t.Fatalf("truncated body: %v, want ErrProtocol", err)
	}
	if _, err := decodeOwnedRecords(nil); !errors.Is(err, ErrProtocol) {
		t.Fatalf("empty body: %v, want ErrProtocol", err)
	}
}
