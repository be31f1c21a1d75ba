package wire_test

import (
	"testing"

	"github.com/finelog/finelog/store"
	"github.com/finelog/finelog/wire"
)

// A client that sizes its requests by these constants must be held to the
// limits the store really enforces.
func TestLimitsMatchTheStore(t *testing.T) {
	for _, c := range []struct {
		name       string
		wire, real int
	}{
		{"MaxRowBytes", wire.MaxRowBytes, store.MaxRowBytes},
		{"MaxBatchBytes", wire.MaxBatchBytes, store.MaxBatchBytes},
		{"MaxMaxLines", wire.MaxMaxLines, store.MaxMaxLines},
	} {
		if c.wire != c.real {
			t.Errorf("wire.%s = %d, store enforces %d", c.name, c.wire, c.real)
		}
	}
}
