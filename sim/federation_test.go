package sim

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/federation"
)

func fedConfig() Config {
	c := config()
	c.Nodes = FederationNodes()
	c.Federation = true
	return c
}

var fedShape = func() scheduleShape {
	sh := defaultShape
	sh.nodes, sh.federation, sh.maxLen = 4, 40, 120
	return sh
}()

// fedDivisor is the share of -rapid.checks TestSimFederation runs.
const fedDivisor = 10

const homeNode, westNode = 2, 3

func genFederationAction(t *rapid.T) Action {
	switch uniform(t, 10, "fed") {
	case 0, 1, 2:
		return Action{Kind: LocalAppend, Node: homeNode + uniform(t, 2, "fed_node"), N: 1 + uniform(t, 8, "fed_rows")}
	case 3:
		return Action{Kind: Partition, Node: westNode}
	default:
		return Action{Kind: FedRead, Cluster: fedClusters[uniform(t, len(fedClusters), "fed_cluster")], N: uniform(t, len(fedFilters), "fed_filters")}
	}
}

// TestSimFederation: the federated world under generated schedules
// (partitions of east and west, crashes of every node, lost requests and
// responses, I/O faults, clock skew past the leeway): every proxied or
// fanned-out read from home either returns exactly the owner's rows for
// its filters or names the cluster it could not reach, beside the relay
// properties of east and global.
func TestSimFederation(t *testing.T) {
	scaleChecks(t, fedDivisor)
	simProperty(t, fedConfig(), fedShape, nil)
}

func fedRead(cluster string, filters int) Action {
	return Action{Kind: FedRead, Cluster: cluster, N: filters}
}

// fedRows gives every cluster rows: east through the relay's source store,
// home and west by local writers.
var fedRows = []Action{appendSome, step, {Kind: LocalAppend, Node: homeNode, N: 4}, {Kind: LocalAppend, Node: westNode, N: 6}}

// TestFederatedReads: proxied reads and the fan-out match the owners
// with every filter, and a partitioned peer is named, not silently empty.
func TestFederatedReads(t *testing.T) {
	sched := append([]Action(nil), fedRows...)
	for f := range fedFilters {
		for _, c := range fedClusters {
			sched = append(sched, fedRead(c, f))
		}
	}
	sched = append(sched, Action{Kind: Partition, Node: westNode}, fedRead(FedWest, 0), fedRead(federation.FanOut, 0), Action{Kind: Heal}, fedRead(FedWest, 0))
	w, err := run(fedConfig(), 1, sched)
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Trace.Tail(40))
	}
	if want := len(fedFilters)*len(fedClusters) + 3; w.FedReads != want {
		t.Fatalf("%d federated reads checked, want %d:\n%s", w.FedReads, want, w.Trace.Tail(30))
	}
	if w.Coverage.FedUnreachable != 2 {
		t.Fatalf("%d reads named an unreachable cluster, want 2 (the proxied read and the fan-out while west was partitioned):\n%s", w.Coverage.FedUnreachable, w.Trace.Tail(30))
	}
	if w.Coverage.FedRowsChecked == 0 {
		t.Fatal("no federated read returned rows to compare")
	}
}

// TestCanaryFederationDropsRows: a proxy that silently drops a peer's
// rows must fail the federation property, proxied and fanned out, while
// the other peer's reads still pass.
func TestCanaryFederationDropsRows(t *testing.T) {
	cfg := fedConfig()
	cfg.DropPeerRows = SourceCluster
	expectViolation(t, cfg, append(append([]Action(nil), fedRows...), fedRead(SourceCluster, 0)), nil, "proxied read of east")
	expectViolation(t, cfg, append(append([]Action(nil), fedRows...), fedRead(federation.FanOut, 0)), nil, "fan-out from home")
	w, err := run(cfg, 1, append(append([]Action(nil), fedRows...), fedRead(FedWest, 0)))
	if err != nil {
		t.Fatalf("the canary drops east's rows only, yet west's read failed: %v", err)
	}
	if w.Coverage.FedRowsChecked == 0 {
		t.Fatal("west's read returned no rows to compare")
	}
}

// TestFederationCoverage: generated schedules reach reads that match
// owners' rows and reads that name an unreachable cluster, and a schedule
// replays to the same trace (peer calls are sequential).
func TestFederationCoverage(t *testing.T) {
	var reads, rows, unreachable int
	for i := 0; i < 10; i++ {
		w, err := run(fedConfig(), int64(i), genSchedule(fedShape).Example(i))
		if err != nil {
			t.Fatalf("schedule %d: %v", i, err)
		}
		if i == 0 {
			again, _ := run(fedConfig(), int64(i), genSchedule(fedShape).Example(i))
			if w.Trace.Hash() != again.Trace.Hash() {
				t.Fatalf("the federated world is not deterministic: %s", FirstDiff(w.Trace, again.Trace))
			}
		}
		reads += w.FedReads
		rows += w.Coverage.FedRowsChecked
		unreachable += w.Coverage.FedUnreachable
	}
	t.Logf("10 generated schedules: %d federated reads, %d matched owners' rows, %d named an unreachable cluster", reads, rows, unreachable)
	if rows == 0 || unreachable == 0 {
		t.Fatalf("the federation property is vacuous: %d reads, %d with rows, %d unreachable", reads, rows, unreachable)
	}
}
