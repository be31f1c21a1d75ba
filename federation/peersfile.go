package federation

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/finelog/finelog/auth"
	"github.com/finelog/finelog/internal/strictjson"
	"github.com/finelog/finelog/internal/vfs"
)

// Peers-file "compression" values: what a peer is asked to compress its
// answers with. zstd (the default) for peers across a slow or metered
// link; none for a peer on the same host or LAN, where compressing a
// 1000-row page costs more time (about 0.6 ms, docs/federation.md) than
// sending it.
const (
	CompressionZstd = "zstd"
	CompressionGzip = "gzip"
	CompressionNone = "none"
)

// FallbackLocal is the peers-file "fallback" value of a peer whose rows
// this store also holds (a global store the peer relays to): when the peer
// cannot be reached, a read is answered from the local copy, flagged stale.
const FallbackLocal = "local"

// maxPeersFileBytes bounds what is read: a peers file lists clusters, not data.
const maxPeersFileBytes = 1 << 20

// maxClusterBytes bounds a cluster name (it becomes a metric label and a
// token audience).
const maxClusterBytes = 64

// PeerConfig is one entry of the peers file. Key and token material is
// read at load and never printed: only the file paths are shown.
type PeerConfig struct {
	Cluster   string `json:"cluster"`
	Address   string `json:"address"`
	KeyFile   string `json:"key_file,omitempty"`
	TokenFile string `json:"token_file,omitempty"`
	Fallback  string `json:"fallback,omitempty"`
	// Compression of the peer's answers: "zstd" (default), "gzip", "none".
	Compression string `json:"compression,omitempty"`
}

// peer is a loaded PeerConfig: exactly one of key and token is set.
type peer struct {
	PeerConfig
	key   auth.Secret
	token auth.Secret
}

// Peers is a parsed, validated peers file.
type Peers struct {
	byName map[string]*peer
	names  []string // sorted
}

// Configs lists the peers (sorted by cluster) as configured, for
// --print-config and logs: paths, never keys.
func (p *Peers) Configs() []PeerConfig {
	out := make([]PeerConfig, 0, len(p.names))
	for _, n := range p.names {
		out = append(out, p.byName[n].PeerConfig)
	}
	return out
}

// LoadPeersFile reads and validates the peers file at path for a store
// whose own cluster is self.
func LoadPeersFile(fsys vfs.FS, path, self string) (*Peers, error) {
	data, err := readLimited(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("peers file %s: %w", path, err)
	}
	p, err := ParsePeers(data, self, fsys)
	if err != nil {
		return nil, fmt.Errorf("peers file %s: %w", path, err)
	}
	return p, nil
}

func readLimited(fsys vfs.FS, path string) ([]byte, error) {
	data, err := vfs.ReadFile(fsys, path)
	if err != nil {
		return nil, err
	}
	if len(data) > maxPeersFileBytes {
		return nil, fmt.Errorf("is %d bytes, limit is %d", len(data), maxPeersFileBytes)
	}
	return data, nil
}

// ParsePeers validates a peers file: strict JSON (an unknown field, a field
// given twice, trailing data are errors), every peer with a distinct
// cluster name that is not self, an http(s) address with nothing but scheme
// and host, and exactly one of key_file (an HS256 key of at least
// auth.MinSecretBytes) and token_file. Errors name the peer and the field,
// never a secret or a fragment of the input long enough to hold one.
func ParsePeers(data []byte, self string, fsys vfs.FS) (*Peers, error) {
	if self == "" {
		return nil, errors.New("--peers-file needs --cluster: peers address their delegation tokens to it")
	}
	if err := strictjson.CheckObject(data, []string{"peers"}); err != nil {
		return nil, err
	}
	var top struct {
		Peers []json.RawMessage `json:"peers"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, errors.New(strictjson.Problem(err))
	}
	if top.Peers == nil {
		return nil, errors.New(`field "peers" is required (a list, may be empty)`)
	}
	ps := &Peers{byName: make(map[string]*peer, len(top.Peers))}
	for i, raw := range top.Peers {
		where := fmt.Sprintf("peers[%d]", i)
		if err := strictjson.CheckObject(raw, []string{"cluster", "address", "key_file", "token_file", "fallback", "compression"}); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var pc PeerConfig
		if err := json.Unmarshal(raw, &pc); err != nil {
			return nil, fmt.Errorf("%s: %s", where, strictjson.Problem(err))
		}
		p, err := loadPeer(pc, self, fsys)
		if err != nil {
			if pc.Cluster != "" && checkCluster(pc.Cluster) == nil {
				where += fmt.Sprintf(" (%s)", pc.Cluster)
			}
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if _, dup := ps.byName[p.Cluster]; dup {
			return nil, fmt.Errorf("%s: cluster %q is listed twice", where, p.Cluster)
		}
		ps.byName[p.Cluster] = p
		ps.names = append(ps.names, p.Cluster)
	}
	sort.Strings(ps.names)
	return ps, nil
}

func loadPeer(pc PeerConfig, self string, fsys vfs.FS) (*peer, error) {
	if pc.Cluster == "" {
		return nil, errors.New(`field "cluster" is required`)
	}
	if err := checkCluster(pc.Cluster); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if pc.Cluster == self {
		return nil, fmt.Errorf("cluster %q is this store's own --cluster; a store answers its own reads", pc.Cluster)
	}
	if err := checkAddress(pc.Address); err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	pc.Address = strings.TrimRight(pc.Address, "/")
	switch pc.Fallback {
	case "", FallbackLocal:
	default:
		return nil, fmt.Errorf(`fallback: %s is not a fallback; the only one is "local"`, strictjson.QuoteShort(pc.Fallback))
	}
	switch pc.Compression {
	case "", CompressionZstd, CompressionGzip, CompressionNone:
	default:
		return nil, fmt.Errorf(`compression: %s: want "zstd" (the default), "gzip" or "none"`, strictjson.QuoteShort(pc.Compression))
	}
	p := &peer{PeerConfig: pc}
	switch {
	case pc.KeyFile != "" && pc.TokenFile != "":
		return nil, errors.New("key_file and token_file are both set: give one (key_file: this store mints a token per request)")
	case pc.KeyFile != "":
		key, err := auth.ReadSecretFile(fsys, pc.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("key_file: %w", err)
		}
		p.key = key
	case pc.TokenFile != "":
		tok, err := readToken(fsys, pc.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("token_file: %w", err)
		}
		p.token = tok
	default:
		return nil, errors.New("neither key_file nor token_file is set: the peer needs a credential")
	}
	return p, nil
}

// checkCluster keeps cluster names to what is safe in a metric label, a
// log line and a token audience, and reserves "*" (fan-out).
func checkCluster(s string) error {
	if len(s) > maxClusterBytes {
		return fmt.Errorf("name is %d bytes, limit is %d", len(s), maxClusterBytes)
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return fmt.Errorf("%s may use only letters, digits, '-', '_' and '.'", strictjson.QuoteShort(s))
		}
	}
	return nil
}

// checkAddress accepts http://host[:port] and https://host[:port]. A path,
// query or fragment would be silently dropped by the client; user info
// would put a credential in a config dump.
func checkAddress(s string) error {
	if s == "" {
		return errors.New(`field "address" is required (http://host:port)`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s is not a URL", strictjson.QuoteShort(s))
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%s: scheme must be http or https", strictjson.QuoteShort(s))
	case u.User != nil:
		return errors.New("must not carry user info (credentials go in key_file or token_file)")
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%s has no host", strictjson.QuoteShort(s))
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.Opaque != "":
		return fmt.Errorf("%s: only scheme, host and port are allowed (no path, query or fragment)", strictjson.QuoteShort(s))
	}
	return nil
}

// readToken reads a static bearer token: one line, no whitespace inside.
func readToken(fsys vfs.FS, path string) (auth.Secret, error) {
	data, err := vfs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	tok := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if tok == "" {
		return nil, fmt.Errorf("%s is empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") || len(tok) > 4096 {
		return nil, fmt.Errorf("%s does not hold one token (whitespace inside, or longer than 4096 bytes)", path)
	}
	return auth.Secret(tok), nil
}
