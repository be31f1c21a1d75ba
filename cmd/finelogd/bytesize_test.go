package main

import (
	"strings"
	"testing"
)

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "4096": 4096, "64KiB": 64 << 10, "32MiB": 32 << 20, " 2 GiB": 2 << 30, "1TiB": 1 << 40} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "12MB", "1.5GiB", "MiB", "9999999999TiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted %d; want an error", in, b)
		} else if !strings.Contains(err.Error(), in) {
			t.Errorf("Set(%q) error %q does not name the input", in, err)
		}
	}
	for v, want := range map[int64]string{0: "0", 1000: "1000", 1024: "1KiB", 1536: "1536", 32 << 20: "32MiB", 3 << 30: "3GiB"} {
		b := byteSize(v)
		if got := b.String(); got != want {
			t.Errorf("String(%d) = %q, want %q", v, got, want)
		}
	}
}
