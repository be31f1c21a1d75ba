package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Long-line handling of `finelog push`: a line longer than a row may hold
// must not end the stream (`tail -f app.log | finelog push` would die on
// one long line and lose every later one).
const (
	longSplit    = "split"
	longTruncate = "truncate"
	// splitMark ends every piece of a split line but the last and starts
	// every piece but the first, so a reader sees where a line was cut.
	splitMark = "…"
	// truncMark ends a truncated line.
	truncMark = "…[truncated]"
)

// lineReader yields stdin lines as row data: invalid UTF-8 replaced by
// U+FFFD, and lines over max bytes split into marked pieces or truncated.
// It holds at most about one piece of a line (plus the read buffer), so a
// huge line costs no more memory than a normal one.
type lineReader struct {
	r    *bufio.Reader
	max  int // data bytes a piece may hold, markers included
	mode string

	cur      []byte // the current line's bytes not yet returned
	cont     bool   // a piece of the current line was already returned
	dropping bool   // truncate mode: the rest of the current line is dropped
	ended    bool   // cur holds the end of its line (the newline was read)
	eof      bool

	fixedUTF8 int // lines whose invalid bytes were replaced
	split     int // lines split into pieces
	truncated int // lines cut short (data dropped)
}

func newLineReader(r io.Reader, max int, mode string) (*lineReader, error) {
	if mode != longSplit && mode != longTruncate {
		return nil, fmt.Errorf("--long-lines %q: want %s or %s", mode, longSplit, longTruncate)
	}
	if max < 64 {
		return nil, fmt.Errorf("a line piece may hold only %d bytes: the key is too long", max)
	}
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10), max: max, mode: mode}, nil
}

// next returns the next piece of data, or io.EOF after the last.
func (l *lineReader) next() (string, error) {
	room := l.max - 2*len(splitMark)
	for {
		if !l.ended {
			if l.eof {
				return "", io.EOF
			}
			frag, err := l.r.ReadSlice('\n')
			switch {
			case err == nil:
				frag = bytes.TrimSuffix(frag, []byte{'\n'})
				l.ended = true
			case errors.Is(err, bufio.ErrBufferFull):
			case err == io.EOF:
				l.eof = true
				// A last line without a newline still counts.
				l.ended = len(frag) > 0 || len(l.cur) > 0 || l.cont || l.dropping
			default:
				return "", err
			}
			if l.dropping {
				if l.ended {
					l.dropping, l.ended = false, false
				}
				continue
			}
			l.cur = append(l.cur, frag...)
			if l.ended {
				// A CRLF line end (or a CR before EOF) loses its CR, as
				// with bufio.ScanLines; the CR may have come in the
				// previous fragment.
				l.cur = bytes.TrimSuffix(l.cur, []byte{'\r'})
			}
		}
		if validLen(l.cur) > room {
			cut := fitCut(l.cur, room)
			if l.mode == longTruncate {
				l.truncated++
				piece := string(l.fix(l.cur[:cut])) + truncMark
				l.cur = l.cur[:0]
				if l.ended {
					l.ended = false
				} else {
					l.dropping = true
				}
				return piece, nil
			}
			piece := string(l.fix(l.cur[:cut])) + splitMark
			if l.cont {
				piece = splitMark + piece
			} else {
				l.split++
			}
			l.cont = true
			l.cur = append(l.cur[:0], l.cur[cut:]...)
			return piece, nil
		}
		if !l.ended {
			continue // the line goes on
		}
		piece := string(l.fix(l.cur))
		if l.cont {
			piece = splitMark + piece
		}
		l.cur, l.cont, l.ended = l.cur[:0], false, false
		return piece, nil
	}
}

// fix replaces invalid UTF-8 with U+FFFD (the server refuses invalid
// UTF-8 in any string field, which would fail the whole batch).
func (l *lineReader) fix(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	l.fixedUTF8++
	return bytes.ToValidUTF8(b, []byte("\uFFFD"))
}

// validLen is len(b) once fix has replaced its invalid bytes (each of
// which becomes the 3-byte U+FFFD): what a piece of b weighs in a row.
func validLen(b []byte) int {
	if utf8.Valid(b) {
		return len(b)
	}
	return len(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}

// fitCut is the largest cut of b, not splitting a UTF-8 sequence, whose
// fixed bytes fit in room.
func fitCut(b []byte, room int) int {
	cut := len(b)
	if cut > room {
		cut = runeCut(b, room)
	}
	for {
		over := validLen(b[:cut]) - room
		if over <= 0 {
			return cut
		}
		// Every replaced byte grows by 2, so this converges, and room
		// (at least 58 bytes) keeps the cut above zero.
		cut = runeCut(b, cut-over)
	}
}

// runeCut is the largest cut <= n that does not split a UTF-8 sequence.
func runeCut(b []byte, n int) int {
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(b[i]) {
			return i
		}
	}
	return n
}
