package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzLineReader: whatever stdin holds, every piece push sends is valid
// UTF-8 and fits a row, and for valid UTF-8 input without the split mark
// the pieces join back into exactly the input lines.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nb\r\nc"), uint8(0), false)
	f.Add([]byte(strings.Repeat("é", 200)+"\nz"), uint8(3), false)
	f.Add([]byte("x\xff\xfey\n"+strings.Repeat("q", 300)), uint8(10), true)
	f.Fuzz(func(t *testing.T, in []byte, maxExtra uint8, truncate bool) {
		max := 64 + int(maxExtra)
		mode := longSplit
		if truncate {
			mode = longTruncate
		}
		lr, err := newLineReader(bytes.NewReader(in), max, mode)
		if err != nil {
			t.Fatal(err)
		}
		var pieces []string
		for {
			p, err := lr.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !utf8.ValidString(p) {
				t.Fatalf("piece %q is not valid UTF-8", p)
			}
			if len(p) > max+len(truncMark) {
				t.Fatalf("piece of %d bytes, max %d", len(p), max)
			}
			pieces = append(pieces, p)
		}
		if truncate || !utf8.Valid(in) || bytes.Contains(in, []byte(splitMark)) {
			return
		}
		var lines []string
		cont := false
		for _, p := range pieces {
			body := strings.TrimSuffix(p, splitMark)
			if cont {
				body = strings.TrimPrefix(body, splitMark)
				lines[len(lines)-1] += body
			} else {
				lines = append(lines, body)
			}
			cont = strings.HasSuffix(p, splitMark)
		}
		var want []string
		if len(in) > 0 {
			want = strings.Split(strings.TrimSuffix(string(in), "\n"), "\n")
			for i := range want {
				want[i] = strings.TrimSuffix(want[i], "\r")
			}
		}
		if strings.Join(lines, "\n") != strings.Join(want, "\n") || len(lines) != len(want) {
			t.Fatalf("pieces %q join to %q, want lines %q", pieces, lines, want)
		}
	})
}

// A CR that ends one read buffer and the LF that starts the next are one
// CRLF line end.
func TestLineReaderCRLFAcrossBuffers(t *testing.T) {
	line := strings.Repeat("x", 64<<10-1) + "\r"
	lr, err := newLineReader(strings.NewReader(line+"\nnext\n"), 1<<20, longSplit)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := lr.next()
	second, _ := lr.next()
	if first != line[:len(line)-1] || second != "next" {
		t.Fatalf("pieces %d bytes (ends %q), %q; want the line without its CR, then next", len(first), first[len(first)-2:], second)
	}
}
