package auth

import (
	"bytes"
	"fmt"

	"github.com/finelog/finelog/internal/vfs"
)

// MinSecretBytes is the shortest HMAC key accepted. HS256 keys shorter than
// the hash output (32 bytes) weaken the MAC and are usually passwords typed
// by hand, so they are refused rather than warned about.
const MinSecretBytes = 32

// redacted is what every printed or marshalled form of a Secret shows.
const redacted = "[redacted]"

// Secret is key material. Its String, GoString, Format and MarshalJSON all
// redact, so a Secret that ends up in a log line, an error or a config dump
// shows "[redacted]" instead of the bytes.
type Secret []byte

func (Secret) String() string   { return redacted }
func (Secret) GoString() string { return redacted }

// Format redacts for every verb (%x and %q included), which String alone
// would not cover for a byte slice.
func (Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON redacts.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts too, so encoders that prefer TextMarshaler (slog's
// text handler, yaml) cannot leak the bytes.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// ReadSecretFile reads a key from path. One trailing newline ("\n" or
// "\r\n") is removed because editors and `echo` add one; anything else is
// part of the key. The key must be at least MinSecretBytes long.
func ReadSecretFile(fsys vfs.FS, path string) (Secret, error) {
	data, err := vfs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read secret file %s: %w", path, err)
	}
	switch {
	case bytes.HasSuffix(data, []byte("\r\n")):
		data = data[:len(data)-2]
	case bytes.HasSuffix(data, []byte("\n")):
		data = data[:len(data)-1]
	}
	if err := checkSecretLen(len(data)); err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, err)
	}
	return Secret(data), nil
}

func checkSecretLen(n int) error {
	if n < MinSecretBytes {
		return fmt.Errorf("secret is %d bytes, need at least %d", n, MinSecretBytes)
	}
	return nil
}
