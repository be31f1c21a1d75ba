package main

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a flag.Value for byte counts: a plain number of bytes, or a
// number with a binary unit (KiB, MiB, GiB, TiB), e.g. "256MiB".
type byteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

func (b *byteSize) Set(s string) error {
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a byte count: want a non-negative integer, optionally with KiB, MiB, GiB or TiB", s)
	}
	if n > (1<<63-1)/mult {
		return fmt.Errorf("%q is too large", s)
	}
	*b = byteSize(n * mult)
	return nil
}

// String prints the largest unit that divides the value exactly, so help
// text shows "32MiB" rather than 33554432.
func (b byteSize) String() string {
	for _, u := range byteUnits {
		if b != 0 && int64(b)%u.mult == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.mult, u.suffix)
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
