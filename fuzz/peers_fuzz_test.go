package fuzz

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/finelog/finelog/federation"
	"github.com/finelog/finelog/internal/vfs"
)

// fuzzPeerKey is the key file every seed's key_file points at; a short one
// and a token file sit beside it.
const fuzzPeerKey = "fuzz-peer-key-0123456789abcdef0123456789"

// FuzzPeersFile: ParsePeers never panics and never puts key or token
// file contents in an error, nor more than a short quote of the input; a file it accepts is valid JSON, every peer in it
// has a distinct name other than this store's, an http(s) address with a
// host, and a credential; and parsing is deterministic.
func FuzzPeersFile(f *testing.F) {
	for _, s := range []string{
		`{"peers": [{"cluster": "east", "address": "http://10.0.0.5:7070", "key_file": "/k/peer.key"}]}`,
		`{"peers": [{"cluster": "global", "address": "https://g.example", "token_file": "/k/tok", "fallback": "local"}]}`,
		`{"peers": [{"cluster": "lan", "address": "http://10.1.1.1:7070", "key_file": "/k/peer.key", "compression": "none"}]}`,
		`{"peers": []}`,
		`{"peers": [{"cluster": "home", "address": "http://h:1", "key_file": "/k/peer.key"}]}`,
		`{"peers": [{"cluster": "east", "address": "http://h:1", "key_file": "/k/short.key"}]}`,
		`{"peers": [{"cluster": "east", "address": "http://h:1", "key_file": "/k/peer.key", "key_file": "/k/other"}]}`,
	} {
		f.Add([]byte(s))
	}
	fs := vfs.NewMemFS()
	if err := fs.MkdirAll("/k"); err != nil {
		f.Fatal(err)
	}
	for name, data := range map[string]string{"/k/peer.key": fuzzPeerKey, "/k/short.key": "short-secret-x", "/k/tok": "fuzz.static.token-0123456789"} {
		if err := vfs.WriteFileAtomic(fs, name, []byte(data)); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := federation.ParsePeers(data, "home", fs)
		if err != nil {
			// Key and token files are never shown. The same text typed into
			// the peers file itself may be quoted back (cut to 24 bytes).
			for _, secret := range []string{fuzzPeerKey, "short-secret-x", "fuzz.static.token"} {
				// An error quotes input with %q: an escape like \x7f
				// before "uzz…" reads as "…fuzz…" without being in data.
				typed := strings.Contains(string(data), secret) || strings.Contains(strconv.Quote(string(data)), secret)
				if strings.Contains(err.Error(), secret) && !typed {
					t.Fatalf("error shows key material read from a file: %v", err)
				}
			}
			if strings.Contains(err.Error(), fuzzPeerKey) {
				t.Fatalf("error quotes a whole key from the input: %v", err)
			}
			if p != nil {
				t.Fatal("error with a result")
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		seen := map[string]bool{}
		for _, c := range p.Configs() {
			if c.Cluster == "" || c.Cluster == "home" || c.Cluster == "*" || seen[c.Cluster] {
				t.Fatalf("accepted peer name %q (seen before: %v)", c.Cluster, seen[c.Cluster])
			}
			seen[c.Cluster] = true
			u, err := url.Parse(c.Address)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				t.Fatalf("accepted address %q", c.Address)
			}
			if (c.KeyFile == "") == (c.TokenFile == "") {
				t.Fatalf("accepted peer %q with key_file %q and token_file %q", c.Cluster, c.KeyFile, c.TokenFile)
			}
			if c.Fallback != "" && c.Fallback != federation.FallbackLocal {
				t.Fatalf("accepted fallback %q", c.Fallback)
			}
			switch c.Compression {
			case "", federation.CompressionZstd, federation.CompressionGzip, federation.CompressionNone:
			default:
				t.Fatalf("accepted compression %q", c.Compression)
			}
		}
		again, err := federation.ParsePeers(data, "home", fs)
		if err != nil || len(again.Configs()) != len(p.Configs()) {
			t.Fatalf("second parse differs: %v", err)
		}
	})
}
