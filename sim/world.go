package sim

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"time"

	"github.com/finelog/finelog/internal/clock"
	"github.com/finelog/finelog/internal/vfs"
	"github.com/finelog/finelog/relay"
	"github.com/finelog/finelog/server"
	"github.com/finelog/finelog/store"
)

// Epoch is where every simulated clock starts. A fixed instant keeps runs
// reproducible and far from any real "now".
var Epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// errFrozen is what a frozen node's FS returns: the process is being torn
// down and must not change the disk any more.
var errFrozen = errors.New("sim: node is crashing; no further I/O")

// errInjected is a scheduled I/O failure.
var errInjected = errors.New("sim: injected I/O error")

// Node is one simulated machine: its own clock (which may be skewed against
// true simulated time), its own crashable disk, and the store process on it.
type Node struct {
	Name    string
	Cluster string
	Clock   *clock.Fake
	FS      *vfs.MemFS
	Store   *store.Store // nil while the process is down
	// Server is finelogd's server over Store on a serving node, nil while
	// the process is down or on a node that only relays.
	Server *server.Server
	// Relay is the node's forwarder while its relay is enabled and the
	// process is up.
	Relay *relay.Forwarder

	spec NodeSpec
	// relayEnabled: the relay was switched on (by the world's start or an
	// EnableRelay action) and restarts with the process; enabledAt is the
	// store's last seq at that moment.
	relayEnabled bool
	enabledAt    int64
	// badCredentials makes the relay mint with a key no target knows.
	badCredentials bool
	// down: the server does not answer (Down .. Up).
	down    bool
	crashes int

	opts store.Options
	// skew is how far this node's clock is from true simulated time.
	skew time.Duration
	// frozen makes every mutating FS call fail: used while tearing down a
	// crashed process so nothing it does after the crash point lands.
	frozen bool
	// failOps are scheduled I/O faults: the next operation of that kind on
	// this node fails (consumed in order), with ENOSPC when noSpace.
	failOps []fault
	// Faults counts injected I/O errors that fired; FaultsByOp splits
	// them by operation.
	Faults     int
	FaultsByOp map[vfs.Op]int
	trace      *Trace
	// writes counts writes per file since the node's last crash
	// (Coverage.MaxFileWrites).
	writes map[string]int
	// maxWrites is the highest count in writes so far.
	maxWrites int
}

func newNode(spec NodeSpec, t *Trace, opts store.Options) *Node {
	n := &Node{Name: spec.Name, Cluster: spec.Cluster, spec: spec, Clock: clock.NewFake(Epoch), FS: vfs.NewMemFS(), trace: t, writes: map[string]int{}, FaultsByOp: map[vfs.Op]int{}}
	n.FS.Inject = n.inject
	opts.FS = n.FS
	opts.Clock = n.Clock
	opts.Background = false
	n.opts = opts
	return n
}

func (n *Node) inject(op vfs.Op, name string) error {
	if n.frozen {
		return errFrozen
	}
	if op == vfs.OpWrite {
		n.writes[name]++
		n.maxWrites = max(n.maxWrites, n.writes[name])
	}
	for i, f := range n.failOps {
		if f.op == op {
			n.failOps = append(n.failOps[:i], n.failOps[i+1:]...)
			n.Faults++
			n.FaultsByOp[op]++
			cause := errInjected
			if f.noSpace {
				cause = vfs.ErrNoSpace
			}
			n.trace.Addf("%s fs fault: %s %s: %v", n.Name, op, name, cause)
			return fmt.Errorf("%s %s: %w", op, name, cause)
		}
	}
	return nil
}

// fault is one scheduled I/O failure.
type fault struct {
	op      vfs.Op
	noSpace bool // fail with ENOSPC (a full disk) instead of a generic I/O error
}

// open starts the store process from whatever is on the disk.
func (n *Node) open() error {
	s, err := store.Open(n.opts)
	if err != nil {
		return fmt.Errorf("%s: reopen store: %w", n.Name, err)
	}
	n.Store = s
	return nil
}

// crash kills the process without any further I/O and cuts power to its
// disk. Abandon stops the store's goroutines (so goleak stays meaningful);
// the FS is frozen meanwhile in case anything still tries to write.
func (n *Node) crash(rng *rand.Rand) {
	n.frozen = true
	if n.Store != nil {
		n.Store.Abandon()
		n.Store = nil
	}
	n.Server, n.Relay = nil, nil
	n.crashes++
	n.FS.Crash(rng)
	n.frozen = false
	n.failOps = nil
	clear(n.writes)
}

// needsFlush says whether the daemon's background loop would flush now:
// the memtable reached MemtableBytes.
func (n *Node) needsFlush() (bool, string) {
	if n.Store == nil {
		return false, ""
	}
	if st := n.Store.Stats(); st.MemtableRows > 0 && st.MemtableBytes >= n.opts.MemtableBytes {
		return true, "memtable full"
	}
	return false, ""
}

// setSkew moves this node's clock to true time + skew.
func (n *Node) setSkew(trueNow time.Time, skew time.Duration) {
	n.skew = skew
	n.Clock.Set(trueNow.Add(skew))
}

// scanAll reads every row of a store in seq order.
func scanAll(ctx context.Context, s *store.Store) ([]store.Row, error) {
	var out []store.Row
	after := int64(0)
	for {
		rows, err := s.Scan(ctx, after, 1000, 1<<20)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			return out, nil
		}
		out = append(out, rows...)
		after = rows[len(rows)-1].Seq
	}
}
