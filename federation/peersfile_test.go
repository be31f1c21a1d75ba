package federation

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/finelog/finelog/internal/vfs"
)

const (
	eastKey = "east-peer-key-0123456789abcdef0123456789"
	westKey = "west-peer-key-0123456789abcdef0123456789"
)

func peersFS(t *testing.T) *vfs.MemFS {
	t.Helper()
	fs := vfs.NewMemFS()
	for path, data := range map[string]string{
		"/k/east.key":  eastKey + "\n",
		"/k/west.key":  westKey,
		"/k/short.key": "too-short\n",
		"/k/tok":       "static.token.value\n",
		"/k/two-tok":   "one two\n",
	} {
		if err := writeFile(fs, path, data); err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

func TestParsePeersAccepts(t *testing.T) {
	fs := peersFS(t)
	p, err := ParsePeers([]byte(`{"peers": [
		{"cluster": "west", "address": "https://west.example:7070/", "token_file": "/k/tok"},
		{"cluster": "east", "address": "http://10.0.0.5:7070", "key_file": "/k/east.key", "fallback": "local", "compression": "none"}]}`), "home", fs)
	if err != nil {
		t.Fatal(err)
	}
	got := p.Configs()
	if len(got) != 2 || got[0].Cluster != "east" || got[1].Cluster != "west" {
		t.Fatalf("configs %+v", got)
	}
	if got[1].Address != "https://west.example:7070" {
		t.Errorf("trailing slash kept: %q", got[1].Address)
	}
	east := p.byName["east"]
	if string(east.key) != eastKey || east.Fallback != FallbackLocal || east.Compression != CompressionNone {
		t.Errorf("east loaded wrong (key %d bytes, fallback %q)", len(east.key), east.Fallback)
	}
	if string(p.byName["west"].token) != "static.token.value" {
		t.Errorf("token not trimmed")
	}
	if _, err := ParsePeers([]byte(`{"peers": []}`), "home", fs); err != nil {
		t.Errorf("an empty list is a valid file (fan-out is then the local store): %v", err)
	}
}

func TestParsePeersRefuses(t *testing.T) {
	fs := peersFS(t)
	peer := func(fields string) string { return `{"peers": [{` + fields + `}]}` }
	ok := `"cluster": "east", "address": "http://10.0.0.5:7070", "key_file": "/k/east.key"`
	cases := []struct {
		name, file, self, want string
	}{
		{"no --cluster", peer(ok), "", "needs --cluster"},
		{"unknown top field", `{"peers": [], "extra": 1}`, "home", `unknown field "extra"`},
		{"unknown peer field", peer(ok + `, "secret": "x"`), "home", `peers[0]: unknown field "secret"`},
		{"field case", peer(`"Cluster": "east", "address": "http://h:1", "key_file": "/k/east.key"`), "home", `unknown field "Cluster"`},
		{"duplicate field", peer(ok + `, "address": "http://other:1"`), "home", `field "address" appears twice`},
		{"duplicate peer", `{"peers": [{` + ok + `}, {` + ok + `}]}`, "home", `peers[1]: cluster "east" is listed twice`},
		{"peer named like self", peer(ok), "east", `own --cluster`},
		{"missing peers", `{}`, "home", `"peers" is required`},
		{"not an object", `[]`, "home", "not a JSON object"},
		{"trailing data", `{"peers": []} {}`, "home", "unexpected data"},
		{"malformed", `{"peers": [`, "home", "malformed JSON"},
		{"wrong type", `{"peers": {}}`, "home", "want a list"},
		{"no cluster", peer(`"address": "http://h:1", "key_file": "/k/east.key"`), "home", `"cluster" is required`},
		{"star cluster", peer(`"cluster": "*", "address": "http://h:1", "key_file": "/k/east.key"`), "home", "may use only"},
		{"no address", peer(`"cluster": "east", "key_file": "/k/east.key"`), "home", `peers[0] (east): address: field "address" is required`},
		{"bad scheme", peer(`"cluster": "east", "address": "ftp://h:1", "key_file": "/k/east.key"`), "home", "scheme must be http or https"},
		{"path in address", peer(`"cluster": "east", "address": "http://h:1/logs", "key_file": "/k/east.key"`), "home", "no path"},
		{"query in address", peer(`"cluster": "east", "address": "http://h:1?token=abc", "key_file": "/k/east.key"`), "home", "no path, query"},
		{"user info", peer(`"cluster": "east", "address": "http://user:pw@h:1", "key_file": "/k/east.key"`), "home", "user info"},
		{"no host", peer(`"cluster": "east", "address": "http://", "key_file": "/k/east.key"`), "home", "no host"},
		{"no credential", peer(`"cluster": "east", "address": "http://h:1"`), "home", "neither key_file nor token_file"},
		{"both credentials", peer(ok + `, "token_file": "/k/tok"`), "home", "both set"},
		{"missing key file", peer(`"cluster": "east", "address": "http://h:1", "key_file": "/k/nope"`), "home", "peers[0] (east): key_file: read secret file /k/nope"},
		{"short key file", peer(`"cluster": "east", "address": "http://h:1", "key_file": "/k/short.key"`), "home", "peers[0] (east): key_file: secret file /k/short.key: secret is 9 bytes, need at least 32"},
		{"bad token file", peer(`"cluster": "east", "address": "http://h:1", "token_file": "/k/two-tok"`), "home", "does not hold one token"},
		{"bad fallback", peer(ok + `, "fallback": "remote"`), "home", `fallback: "remote" is not a fallback`},
		{"bad compression", peer(ok + `, "compression": "brotli"`), "home", `compression: "brotli": want "zstd" (the default), "gzip" or "none"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePeers([]byte(c.file), c.self, fs)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
			for _, secret := range []string{eastKey, "too-short", "static.token.value"} {
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error shows a secret: %v", err)
				}
			}
		})
	}
}

func TestLoadPeersFileNamesThePath(t *testing.T) {
	fs := peersFS(t)
	if _, err := LoadPeersFile(fs, "/etc/peers.json", "home"); err == nil || !strings.Contains(err.Error(), "peers file /etc/peers.json") {
		t.Fatalf("missing file: %v", err)
	}
	if err := writeFile(fs, "/etc/peers.json", `{"peers": [{"cluster": "east"}]}`); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPeersFile(fs, "/etc/peers.json", "home"); err == nil || !strings.Contains(err.Error(), "peers file /etc/peers.json: peers[0] (east)") {
		t.Fatalf("bad file: %v", err)
	}
}

func writeFile(fs vfs.FS, path, data string) error {
	if err := fs.MkdirAll(filepath.Dir(path)); err != nil {
		return err
	}
	return vfs.WriteFileAtomic(fs, path, []byte(data))
}
