package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ReadScope is the set of clusters whose rows an identity may read. The
// zero value is every cluster: what a key without "read" gets, and what
// every identity could read before scopes existed. Otherwise it is a
// sorted, comma-separated list of cluster labels (labels cannot contain a
// comma), so an Identity stays comparable.
type ReadScope string

// ReadAll is the scope of every cluster.
const ReadAll ReadScope = ""

// readAllWord and readOwnWord are the special entries of a key's "read".
const (
	readAllWord = "*"
	readOwnWord = "own"
)

// maxReadClusters bounds a key's "read" list.
const maxReadClusters = 256

// All reports whether the scope covers every cluster.
func (s ReadScope) All() bool { return s == ReadAll }

// Clusters lists the scope's clusters; nil for every cluster.
func (s ReadScope) Clusters() []string {
	if s.All() {
		return nil
	}
	return strings.Split(string(s), ",")
}

// Allows reports whether rows of cluster may be read.
func (s ReadScope) Allows(cluster string) bool {
	if s.All() {
		return true
	}
	return slices.Contains(s.Clusters(), cluster)
}

// parseReadScope reads a key's "read" list: absent or ["*"] is every
// cluster, "own" is the key's own cluster, anything else a cluster label.
func parseReadScope(entries []string, own string) (ReadScope, error) {
	if entries == nil {
		return ReadAll, nil
	}
	if len(entries) == 0 {
		return "", errors.New(`is empty; omit it (or write ["*"]) to read every cluster, or list "own" and cluster labels`)
	}
	if len(entries) > maxReadClusters {
		return "", fmt.Errorf("lists %d clusters, limit is %d", len(entries), maxReadClusters)
	}
	var out []string
	for i, e := range entries {
		switch e {
		case readAllWord:
			if len(entries) != 1 {
				return "", fmt.Errorf(`entry %d: "*" (every cluster) cannot be combined with other entries`, i+1)
			}
			return ReadAll, nil
		case readOwnWord:
			e = own
		default:
			if err := CheckLabel(e); err != nil {
				return "", fmt.Errorf(`entry %d: want "own", "*" or a cluster label: %w`, i+1, err)
			}
		}
		out = append(out, e)
	}
	slices.Sort(out)
	return ReadScope(strings.Join(slices.Compact(out), ",")), nil
}

// OwnsNamespace reports whether cluster is the label of a key of one of
// the policy's jwt layers: that identity owns the "<cluster>/" namespace of
// producer ids, so no other writer may use a producer in it.
func (p *Policy) OwnsNamespace(cluster string) bool {
	for _, l := range p.layers {
		for _, k := range l.keys {
			if k.cluster == cluster {
				return true
			}
		}
	}
	return false
}
