package peer

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/finelog/finelog/internal/vfs"
)

// MinPSKBytes is the shortest pre-shared key accepted: a key shorter than
// BLAKE3's 32-byte output weakens every MAC derived from it, and short keys
// are usually passwords typed by hand.
const MinPSKBytes = 32

const redacted = "[redacted]"

// PSK is the cluster's pre-shared replica key. Every printed or marshalled
// form of it (String, GoString, Format with any verb, MarshalJSON,
// MarshalText) shows "[redacted]", so a PSK that reaches a log line, an
// error or a config dump never shows its bytes. The bytes sit behind a
// pointer so that even a PSK in an unexported struct field, which fmt
// prints without calling its methods, shows only an address.
type PSK struct{ k *[]byte }

func (PSK) String() string   { return redacted }
func (PSK) GoString() string { return redacted }

// Format redacts for every verb, %x and %q included.
func (PSK) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON redacts.
func (PSK) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText redacts, for encoders that prefer TextMarshaler (slog).
func (PSK) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// IsZero reports whether no key is set.
func (p PSK) IsZero() bool { return p.k == nil || len(*p.k) == 0 }

func (p PSK) bytes() []byte {
	if p.k == nil {
		return nil
	}
	return *p.k
}

// NewPSK checks and wraps key material; source names where it came from
// (a flag or env variable) for the error. The bytes are copied.
func NewPSK(key []byte, source string) (PSK, error) {
	if len(key) < MinPSKBytes {
		return PSK{}, fmt.Errorf("%s: peer PSK is %d bytes, need at least %d", source, len(key), MinPSKBytes)
	}
	b := bytes.Clone(key)
	return PSK{k: &b}, nil
}

// ErrNoPSK: the peer port is configured but no key was given.
var ErrNoPSK = errors.New("no peer PSK: set --peer-psk-file or FINELOG_PEER_PSK (at least 32 bytes)")

// LoadPSK reads the current key from file, else from the environment value
// env (FINELOG_PEER_PSK). One trailing newline of a file is removed because
// editors and echo add one. Neither set: ErrNoPSK. Errors name the file or
// variable and the length, never the bytes.
func LoadPSK(fsys vfs.FS, file, env string) (PSK, error) {
	if file != "" {
		return readPSKFile(fsys, file, "--peer-psk-file")
	}
	if env != "" {
		return NewPSK([]byte(env), "FINELOG_PEER_PSK")
	}
	return PSK{}, ErrNoPSK
}

// LoadNextPSK reads --peer-psk-next-file (the key being rolled in); an
// empty path means no next key.
func LoadNextPSK(fsys vfs.FS, file string) (PSK, error) {
	if file == "" {
		return PSK{}, nil
	}
	return readPSKFile(fsys, file, "--peer-psk-next-file")
}

func readPSKFile(fsys vfs.FS, file, flag string) (PSK, error) {
	data, err := vfs.ReadFile(fsys, file)
	if err != nil {
		return PSK{}, fmt.Errorf("%s %s: %w", flag, file, err)
	}
	switch {
	case bytes.HasSuffix(data, []byte("\r\n")):
		data = data[:len(data)-2]
	case bytes.HasSuffix(data, []byte("\n")):
		data = data[:len(data)-1]
	}
	return NewPSK(data, flag+" "+file)
}
