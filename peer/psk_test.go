package peer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

func TestPSKNeverShowsItsBytes(t *testing.T) {
	const key = "peer-psk-0123456789abcdef0123456789"
	p, err := NewPSK([]byte(key), "test")
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "psk", p)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("x", "psk", p)
	js, _ := json.Marshal(map[string]any{"psk": p})
	for _, s := range []string{fmt.Sprint(p), fmt.Sprintf("%v %+v %#v %s %q %x %X", p, p, p, p, p, p, p), string(js), logged.String(),
		fmt.Sprintf("%v", DialerConfig{PSK: p}), fmt.Sprintf("%+v", AcceptorConfig{PSK: p, NextPSK: p})} {
		if strings.Contains(s, key) || strings.Contains(s, fmt.Sprintf("%x", key)) || !strings.Contains(s, "[redacted]") {
			t.Fatalf("a printed PSK shows its bytes or is not redacted: %s", s)
		}
	}
}

// TestKeysNotPrintedInsideStructs: fmt prints unexported fields without
// calling their methods, so key material inside a struct must not be
// reachable by value.
func TestKeysNotPrintedInsideStructs(t *testing.T) {
	key := strings.Repeat("s", 32)
	p, _ := NewPSK([]byte(key), "test")
	a := newAcceptor(t, AcceptorConfig{Cluster: testCluster, Node: testAcceptor, PSK: p, NextPSK: p, Rand: seeded(1)})
	mk := macKey(p)
	d, acc := handshakePair(t, a, dialerCfg(p, 2))
	if d.err != nil || acc.err != nil {
		t.Fatal(d.err, acc.err)
	}
	defer d.c.Close()
	defer acc.c.Close()
	holder := struct{ psk PSK }{p}
	for _, s := range []string{fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", d.c), fmt.Sprintf("%+v %#v", holder, holder)} {
		for _, secret := range [][]byte{[]byte(key), mk[:], d.c.wkey[:], d.c.rkey[:]} {
			if strings.Contains(s, string(secret)) || strings.Contains(s, fmt.Sprintf("%x", secret)) || strings.Contains(s, fmt.Sprint(secret)) || strings.Contains(s, fmt.Sprint([32]byte(secret))) {
				t.Fatalf("key material printed: %s", s)
			}
		}
	}
}

func TestLoadPSK(t *testing.T) {
	fs := vfs.NewMemFS()
	key := strings.Repeat("k", 32)
	vfs.WriteFileAtomic(fs, "/psk", []byte(key+"\n"))
	vfs.WriteFileAtomic(fs, "/short", []byte("secret-but-short\r\n"))
	p, err := LoadPSK(fs, "/psk", "ignored-env-value-because-the-file-wins")
	if err != nil || string(p.bytes()) != key {
		t.Fatalf("file with a trailing newline: %v", err)
	}
	if p, err := LoadPSK(fs, "", key); err != nil || string(p.bytes()) != key {
		t.Fatalf("from the env: %v", err)
	}
	if _, err := LoadPSK(fs, "", ""); !errors.Is(err, ErrNoPSK) {
		t.Fatalf("none: %v", err)
	}
	_, err = LoadPSK(fs, "/short", "")
	if err == nil || !strings.Contains(err.Error(), "--peer-psk-file /short: peer PSK is 16 bytes, need at least 32") || strings.Contains(err.Error(), "secret-but-short") {
		t.Fatalf("short file: %v", err)
	}
	if _, err := LoadNextPSK(fs, "/missing"); err == nil || !strings.Contains(err.Error(), "--peer-psk-next-file /missing") {
		t.Fatalf("missing next file: %v", err)
	}
	if p, err := LoadNextPSK(fs, ""); err != nil || !p.IsZero() {
		t.Fatalf("no next key: %v", err)
	}
}
