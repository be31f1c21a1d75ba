package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"

	"github.com/finelog/finelog/internal/wirecompress"
)

// intake reads request bodies for the RPC handler. It is where a request's
// bytes are bounded before the RPC library buffers them:
//
//   - the body must arrive within the body deadline (HTTP/1 and h2 alike,
//     through the connection's or stream's read deadline), so a client that
//     stalls loses its request, and with it its share of the budget;
//   - every byte handed on is charged to the in-flight budget as it arrives
//     (inflight.go);
//   - a compressed body is inflated here, incrementally, and inflation stops
//     at --max-request-bytes + 1: the rest of the stream is never inflated,
//     not even to report its size (the RPC library would inflate it all
//     just to count it). The handler then sees an uncompressed request;
//   - a request over --max-request-bytes (by Content-Length, a gRPC envelope's
//     length, or bytes delivered) fails with invalid_argument naming the
//     limit: it can never succeed, so it must not look retryable.
type intake struct {
	limit       *inflightLimit
	maxBytes    int64
	bodyTimeout time.Duration
	// writeTimeout bounds the whole exchange (body, handler including a
	// long-poll, response): the per-route equivalent of http.Server's
	// WriteTimeout, which would also cut long-polls short.
	writeTimeout time.Duration
	ew           *connect.ErrorWriter
	// onInflate, when set (tests), counts bytes produced by decompressors.
	onInflate func(n int)

	gzip, zstd sync.Pool
	// deflate serves only unary bodies (the shipper routes): no RPC
	// protocol names it.
	deflate sync.Pool
	// zstdSlots bounds the zstd decoders inflating at once (zstdwindow.go).
	zstdSlots chan struct{}
}

func newIntake(limit *inflightLimit, maxBytes int64, bodyTimeout, writeTimeout time.Duration) *intake {
	in := &intake{limit: limit, maxBytes: maxBytes, bodyTimeout: bodyTimeout, writeTimeout: writeTimeout, ew: connect.NewErrorWriter()}
	in.gzip.New = func() any { return wirecompress.GzipDecompressor() }
	in.zstd.New = func() any { return newServerZstd() }
	in.deflate.New = func() any { return newDeflate() }
	in.zstdSlots = make(chan struct{}, zstdDecoders)
	return in
}

func (in *intake) oversize(what string, n int64) *connect.Error {
	detail := ""
	if n > 0 {
		detail = fmt.Sprintf(" (%d bytes)", n)
	}
	return connect.NewError(connect.CodeInvalidArgument, &oversizeError{fmt.Sprintf(
		"%s%s is larger than the %d-byte limit (--max-request-bytes); it cannot succeed as sent: split it into smaller requests",
		what, detail, in.maxBytes)})
}

// oversizeError marks a request refused for --max-request-bytes, so
// handlers that answer in their own protocol (ingest.go) can say 413.
type oversizeError struct{ msg string }

func (e *oversizeError) Error() string { return e.msg }

// enveloped reports whether the protocol frames messages (gRPC, gRPC-Web,
// Connect streaming), and the header naming their compression.
func enveloped(r *http.Request) (bool, string) {
	ct := r.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "application/grpc"):
		return true, "Grpc-Encoding"
	case strings.HasPrefix(ct, "application/connect+"):
		return true, "Connect-Content-Encoding"
	}
	return false, "Content-Encoding"
}

func (in *intake) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env, encHeader := enveloped(r)
		if !env && r.ContentLength > in.maxBytes {
			writeError(w, r, in.ew, in.oversize("request body", r.ContentLength))
			return
		}
		// Wall-clock deadlines: they are the transport's, not simulated
		// time.
		rc := http.NewResponseController(w)
		now := time.Now()
		// A request without a body gets no read deadline: for HTTP/1 the
		// connection is already being watched for the client going away,
		// and a deadline there would cancel a long handler.
		deadlineSet := r.Body != nil && r.Body != http.NoBody && rc.SetReadDeadline(now.Add(in.bodyTimeout)) == nil
		_ = rc.SetWriteDeadline(now.Add(in.writeTimeout))

		c := in.limit.open(r.Context(), callerFrom(r.Context()).key)
		defer c.release()
		b := &body{in: in, src: r.Body, c: c, rc: rc, deadlineSet: deadlineSet}
		defer b.finish()
		switch enc := strings.ToLower(r.Header.Get(encHeader)); enc {
		case "", "identity":
		case wirecompress.Gzip, wirecompress.Zstd:
			b.pool = &in.gzip
			if enc == wirecompress.Zstd {
				b.pool = &in.zstd
			}
			r.Header.Del(encHeader)
		case "deflate":
			if !env {
				b.pool = &in.deflate
				r.Header.Del(encHeader)
			}
		default:
			// Not one we inflate: the RPC library refuses it by name.
		}
		r.Body = b
		if env {
			r.Body = &envelopes{b: b}
		} else if b.pool != nil {
			b.sentLength = r.ContentLength
			r.ContentLength = -1
			r.Header.Del("Content-Length")
			b.inflateAll = true
		}
		next.ServeHTTP(w, r)
	})
}

// body is a request body as it arrives: bounded by the deadline, charged,
// and for a compressed unary request inflated.
type body struct {
	in          *intake
	src         io.ReadCloser
	c           *charge
	rc          *http.ResponseController
	deadlineSet bool
	pool        *sync.Pool // the decompressor pool, nil when uncompressed

	raw        int64 // transport bytes read
	inflateAll bool  // unary: the whole body is one compressed stream
	sentLength int64 // unary compressed: the Content-Length as sent, -1 if none
	dec        connect.Decompressor
	err        error
}

// rawSlack is what a body may carry beyond --max-request-bytes: envelope
// prefixes and compression framing.
const rawSlack = 64 << 10

// readRaw reads the transport body, at most the limit plus rawSlack. At its end the read deadline is
// lifted: what the handler does after reading (an fsync, a long-poll) is
// not bounded by how long the body may take.
func (b *body) readRaw(p []byte) (int, error) {
	if room := b.in.maxBytes + rawSlack + 1 - b.raw; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.src.Read(p)
	b.raw += int64(n)
	if b.raw > b.in.maxBytes+rawSlack {
		return 0, b.in.oversize("request body", 0)
	}
	if err == io.EOF && b.deadlineSet {
		_ = b.rc.SetReadDeadline(time.Time{})
		b.deadlineSet = false
	}
	if err != nil && err != io.EOF && isTimeout(err) {
		err = connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf(
			"request body did not arrive within %v (--request-body-timeout); the request was dropped", b.in.bodyTimeout))
	}
	return n, err
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// Read hands the handler the (inflated) body, charging every byte and
// stopping at the per-request limit.
func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	var n int
	var err error
	if b.inflateAll {
		if b.dec == nil {
			if b.dec, err = b.decompressor(rawReader{b}); err != nil {
				var ce *connect.Error
				if !errors.As(err, &ce) { // busy or cancelled keep their code
					ce = connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("decompress %s request body: %w", b.encoding(), err))
				}
				b.err = ce
				return 0, b.err
			}
		}
		n, err = b.inflate(p, b.dec)
	} else {
		// One byte past the limit is enough to know the request is over it.
		if room := b.in.maxBytes + 1 - b.c.used; int64(len(p)) > room {
			p = p[:room]
		}
		n, err = b.readRaw(p)
	}
	if b.c.used+int64(n) > b.in.maxBytes {
		what := "request body"
		if b.inflateAll {
			what = "request body after decompression"
		}
		b.err = b.in.oversize(what, 0)
		return 0, b.err
	}
	if cerr := b.c.take(int64(n)); cerr != nil {
		b.err = cerr
		return 0, cerr
	}
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// inflate reads from dec into p, never asking it for more than one byte
// past the limit.
func (b *body) inflate(p []byte, dec io.Reader) (int, error) {
	if room := b.in.maxBytes + 1 - b.c.used; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := dec.Read(p)
	if b.in.onInflate != nil {
		b.in.onInflate(n)
	}
	if err != nil && err != io.EOF {
		var ce *connect.Error
		if !errors.As(err, &ce) {
			err = connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("decompress %s request body: %w", b.encoding(), err))
		}
	}
	return n, err
}

// decompressor takes a pooled decompressor reading src; for zstd it first
// takes one of the decoder slots, waiting up to the in-flight wait.
func (b *body) decompressor(src io.Reader) (connect.Decompressor, error) {
	if b.pool == &b.in.zstd {
		t := time.NewTimer(b.in.limit.maxWait) // wall clock, like the in-flight wait
		defer t.Stop()
		select {
		case b.in.zstdSlots <- struct{}{}:
		case <-t.C:
			return nil, b.c.busy(nil, fmt.Sprintf("%d zstd requests are being inflated", zstdDecoders))
		case <-b.c.ctx.Done():
			return nil, contextError(b.c.ctx.Err())
		}
	}
	d := b.pool.Get().(connect.Decompressor)
	if err := d.Reset(src); err != nil {
		// A reader whose Reset failed has no stream to close (klauspost's
		// gzip.Reader.Close panics on it): drop it rather than pool it.
		if b.pool == &b.in.zstd {
			<-b.in.zstdSlots
		}
		return nil, err
	}
	return d, nil
}

// encoding names the body's compression for error messages.
func (b *body) encoding() string {
	switch b.pool {
	case &b.in.zstd:
		return wirecompress.Zstd
	case &b.in.deflate:
		return "deflate"
	}
	return wirecompress.Gzip
}

// putDecompressor returns d to its pool and gives back its zstd slot.
func (b *body) putDecompressor(d connect.Decompressor) {
	_ = d.Close()
	b.pool.Put(d)
	if b.pool == &b.in.zstd {
		<-b.in.zstdSlots
	}
}

// finish releases the unary decompressor once the handler is done,
// whether or not it closed the body.
func (b *body) finish() {
	if b.dec != nil {
		b.putDecompressor(b.dec)
		b.dec = nil
	}
}

func (b *body) Close() error { return b.src.Close() }

// rawReader reads the transport body of b (for a decompressor).
type rawReader struct{ b *body }

func (r rawReader) Read(p []byte) (int, error) { return r.b.readRaw(p) }

// envelopes reads an enveloped body (5-byte prefix: flags, big-endian
// length; then the message) and hands the handler the same envelopes with
// every compressed message inflated and its flag cleared. A message whose
// envelope announces more than the limit is refused at its prefix; an
// inflated message is buffered (it needs its new length first), charged as
// it grows.
type envelopes struct {
	b   *body
	out bytes.Buffer // pending output: a rewritten prefix and inflated message
	msg int64        // bytes of the current uncompressed message still to pass through
	err error
}

func (e *envelopes) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	for e.out.Len() == 0 && e.msg == 0 {
		if err := e.next(); err != nil {
			e.err = err
			return 0, err
		}
	}
	if e.out.Len() > 0 {
		return e.out.Read(p)
	}
	if int64(len(p)) > e.msg {
		p = p[:e.msg]
	}
	n, err := e.b.readRaw(p)
	e.msg -= int64(n)
	if cerr := e.b.c.take(int64(n)); cerr != nil {
		e.err = cerr
		return 0, cerr
	}
	if err == io.EOF && e.msg > 0 {
		err = io.ErrUnexpectedEOF
	}
	if err != nil && err != io.EOF {
		e.err = err
	} else {
		err = nil
	}
	return n, err
}

// next reads the next envelope prefix and prepares its output.
func (e *envelopes) next() error {
	var prefix [5]byte
	n, err := io.ReadFull(rawReader{e.b}, prefix[:])
	if err != nil {
		if err == io.EOF || (err == io.ErrUnexpectedEOF && n == 0) {
			return io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			// Hand on what there is; the protocol handler names the short prefix.
			e.out.Write(prefix[:n])
			return nil
		}
		return err
	}
	size := int64(binary.BigEndian.Uint32(prefix[1:]))
	if size > e.b.in.maxBytes || e.b.c.used+size > e.b.in.maxBytes {
		return e.b.in.oversize("request message", size)
	}
	if prefix[0]&1 == 0 || e.b.pool == nil {
		// Uncompressed (or compressed without a named encoding, which the
		// protocol handler refuses): pass the message through, charged
		// as it is read.
		e.out.Write(prefix[:])
		e.msg = size
		return nil
	}
	dec, err := e.b.decompressor(io.LimitReader(rawReader{e.b}, size))
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("decompress request message: %w", err))
	}
	defer e.b.putDecompressor(dec)
	// The prefix is written with a placeholder length and patched once
	// the message is inflated (straight into the output buffer).
	e.out.Write(prefix[:])
	buf := make([]byte, 32<<10)
	for {
		n, err := e.b.inflate(buf, dec)
		if e.b.c.used+int64(n) > e.b.in.maxBytes {
			return e.b.in.oversize("request message after decompression", 0)
		}
		if cerr := e.b.c.take(int64(n)); cerr != nil {
			return cerr
		}
		e.out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	out := e.out.Bytes()
	out[0] &^= 1
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-5))
	return nil
}

func (e *envelopes) Close() error { return e.b.Close() }

// sizeHint guesses how many bytes r's body holds once read, for sizing the
// buffer it is read into: the Content-Length, and for a body the intake
// inflates about 4x what was sent (log lines compress about that well).
func sizeHint(r *http.Request) int64 {
	if b, ok := r.Body.(*body); ok && b.inflateAll {
		return 4 * b.sentLength
	}
	return r.ContentLength
}
