package sim

import (
	"testing"
)

// identityConfig adds a third node, "rogue": a cluster west whose relay
// holds east's key, so every row it forwards is a row of cluster west
// written under the identity of cluster east.
func identityConfig() Config {
	c := config()
	c.Nodes = append(DefaultNodes(), NodeSpec{Name: "rogue", Cluster: "west", RelayTo: TargetName, KeyOf: SourceCluster, Peer: "10.20.30.41:43211"})
	return c
}

var identityShape = func() scheduleShape { sh := defaultShape; sh.nodes = 3; sh.maxLen = 150; return sh }()

// TestSimIdentity is the identity property on a three-node world: every
// row in the target carries the cluster of the key that wrote it, so the
// impostor gets nothing in, while east's relay keeps its no-loss and
// duplicate properties beside it.
func TestSimIdentity(t *testing.T) {
	simProperty(t, identityConfig(), identityShape, nil)
}

// TestCanaryNoIdentityRule: a server that stamps the request's cluster
// without checking it against the token's must fail the identity property.
func TestCanaryNoIdentityRule(t *testing.T) {
	cfg := identityConfig()
	cfg.Defects.NoIdentityRule = true
	rogue := 2
	sched := []Action{{Kind: Append, N: 5, Node: rogue}, {Kind: RelayStep, Node: rogue}, appendSome, step}
	expectViolation(t, cfg, sched, nil, "rows in the target under another cluster's identity")
}

// TestIdentityRefusesImpostor: the impostor's relay is refused by the real
// server (it stays in auth_failing) and none of its rows arrive, while
// east forwards everything.
func TestIdentityRefusesImpostor(t *testing.T) {
	rogue := 2
	sched := []Action{{Kind: Append, N: 5, Node: rogue}, {Kind: RelayStep, Node: rogue}, appendSome, step}
	w, err := run(identityConfig(), 1, sched)
	if err != nil {
		t.Fatalf("%v\n%s", err, w.Trace.Tail(40))
	}
	r := w.Node("rogue")
	if st := r.Relay.Status(); st.State != "auth_failing" || st.Forwarded != 0 {
		t.Fatalf("impostor relay: state %s, forwarded %d; want auth_failing and nothing forwarded", st.State, st.Forwarded)
	}
	if w.Net.AuthRejections == 0 {
		t.Fatal("the server never refused the impostor")
	}
}
