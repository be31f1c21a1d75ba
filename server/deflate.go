package server

import (
	"bufio"
	"io"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zlib"
)

// deflate is HTTP's "deflate" Content-Encoding, which log shippers send
// two ways: RFC 9110 says zlib-wrapped (RFC 1950), but many clients send a
// raw deflate stream (RFC 1951). The zlib header is recognisable (CM=8 and
// a 16-bit check divisible by 31), so Reset looks at it and picks the
// reader. The intake pools it like the gzip and zstd decompressors.
type deflate struct {
	br   *bufio.Reader
	zr   io.ReadCloser
	fr   io.ReadCloser
	cur  io.Reader
	zlib bool
}

func newDeflate() *deflate { return &deflate{br: bufio.NewReader(nil)} }

// Reset starts reading a new body from src.
func (d *deflate) Reset(src io.Reader) error {
	d.br.Reset(src)
	h, err := d.br.Peek(2)
	if err == nil && h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
		if d.zr == nil {
			d.zr, err = zlib.NewReader(d.br)
		} else {
			err = d.zr.(zlib.Resetter).Reset(d.br, nil)
		}
		if err != nil {
			return err
		}
		d.cur = d.zr
		return nil
	}
	if d.fr == nil {
		d.fr = flate.NewReader(d.br)
	} else if err := d.fr.(flate.Resetter).Reset(d.br, nil); err != nil {
		return err
	}
	d.cur = d.fr
	return nil
}

func (d *deflate) Read(p []byte) (int, error) {
	if d.cur == nil {
		return 0, io.ErrUnexpectedEOF
	}
	return d.cur.Read(p)
}

// Close ends the current body; the reader stays reusable.
func (d *deflate) Close() error {
	d.cur = nil
	d.br.Reset(nil)
	return nil
}
