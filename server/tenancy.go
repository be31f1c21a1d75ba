package server

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
)

// Producers are namespaced by cluster: "<cluster>/<id>", the shape of the
// relay's producer ids (relay.LoadProducerID). A producer's applied mark
// decides which of its batches the store drops as already applied, so a
// writer that could advance another cluster's mark could make the store
// silently drop that cluster's rows. The rules:
//
//   - a jwt identity of cluster C may use, and ask about, only producers
//     named "C/...";
//   - any other writer (cidr) may not use or ask about a producer whose
//     namespace is a jwt key's label: that namespace belongs to the key;
//   - a producer id is at most MaxProducerBytes, and one identity may keep
//     at most --max-producers-per-identity producers active.

// MaxProducerBytes bounds a producer id. The relay's are the cluster label
// (at most 128 bytes) plus 17.
const MaxProducerBytes = 256

// DefaultMaxProducersPerIdentity bounds the producers one identity keeps
// active. A relay uses one per source store; a new one appears only when a
// store is recreated.
const DefaultMaxProducersPerIdentity = 64

// producerIdle is how long a producer an identity stopped using still
// counts against its limit.
const producerIdle = 24 * time.Hour

// checkProducer refuses a producer id the caller may not use or ask about.
func (s *Server) checkProducer(c caller, producer string) error {
	if len(producer) > MaxProducerBytes {
		return connect.NewError(connect.CodeInvalidArgument,
			fmt.Errorf("producer id is %d bytes, limit is %d", len(producer), MaxProducerBytes))
	}
	if s.cfg.Defects.NoProducerNamespace {
		return nil
	}
	ns, _, namespaced := strings.Cut(producer, "/")
	if c.jwt {
		if !namespaced || ns != c.cluster {
			return connect.NewError(connect.CodePermissionDenied,
				fmt.Errorf("identity of cluster %q may use only producers named %q", c.cluster, c.cluster+"/<id>"))
		}
		return nil
	}
	if namespaced && s.ownsNamespace != nil && s.ownsNamespace(ns) {
		return connect.NewError(connect.CodePermissionDenied,
			fmt.Errorf("producer namespace %q belongs to the jwt key of cluster %q; use that key's token", ns+"/", ns))
	}
	return nil
}

// producerBook counts the producers each identity has used recently.
type producerBook struct {
	max int

	mu   sync.Mutex
	byID map[string]map[string]time.Time // identity → producer → last use
}

func newProducerBook(max int) *producerBook {
	return &producerBook{max: max, byID: map[string]map[string]time.Time{}}
}

var errTooManyProducers = errors.New("too many producers")

// use records that identity used producer at now, or refuses a new one
// past the limit. Producers idle past producerIdle no longer count.
func (b *producerBook) use(identity, producer string, now time.Time) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.byID[identity]
	if m == nil {
		m = map[string]time.Time{}
		b.byID[identity] = m
	}
	if _, known := m[producer]; !known && len(m) >= b.max {
		for p, last := range m {
			if now.Sub(last) > producerIdle {
				delete(m, p)
			}
		}
		if len(m) >= b.max {
			ce := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
				"%w: identity %s already uses %d producers (--max-producers-per-identity); a producer counts until it is idle for %v",
				errTooManyProducers, identity, b.max, producerIdle))
			return ce
		}
	}
	m[producer] = now
	return nil
}

// readCluster applies the caller's read scope to a fetch's cluster: a
// caller scoped to one cluster reads it when it names none; a caller
// scoped to several must name one of them.
func readCluster(c caller, requested string) (string, error) {
	if c.readAll {
		return requested, nil
	}
	if requested == "" {
		if len(c.readClusters) == 1 {
			return c.readClusters[0], nil
		}
		return "", connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
			"identity %s may read only clusters %s: set cluster to one of them", c.key, strings.Join(c.readClusters, ", ")))
	}
	for _, allowed := range c.readClusters {
		if allowed == requested {
			return requested, nil
		}
	}
	return "", connect.NewError(connect.CodePermissionDenied, fmt.Errorf(
		"identity %s may not read rows of cluster %q (it may read %s)", c.key, requested, strings.Join(c.readClusters, ", ")))
}
