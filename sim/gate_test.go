package sim

import (
	"net/http"
	"testing"

	"pgregory.net/rapid"

	"github.com/finelog/finelog/server"
)

// TestGateEveryRoute is the gate property: over random policies, peers,
// tokens and verifier clocks (genAuthCase) and every route, a request gets
// past the server's gate iff the reference model admits it.
func TestGateEveryRoute(t *testing.T) {
	routes := GateRoutes()
	rapid.Check(t, func(t *rapid.T) {
		c := genAuthCase(t)
		path := rapid.SampledFrom(routes).Draw(t, "route")
		method := rapid.SampledFrom([]string{http.MethodGet, http.MethodPost}).Draw(t, "method")
		if err := CheckGate(c, method, path, server.Defects{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGateCoverage: generated requests get through to every route and are
// turned away from every gated one, so the property cannot pass by never
// sending a denied (or an admitted) request somewhere.
func TestGateCoverage(t *testing.T) {
	routes := GateRoutes()
	passed, stopped := map[string]int{}, map[string]int{}
	for seed := 0; seed < 120; seed++ {
		c := rapid.Custom(genAuthCase).Example(seed)
		for _, path := range routes {
			got, err := SendThroughGate(c, http.MethodGet, path, server.Defects{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Passed {
				passed[path]++
			} else {
				stopped[path]++
			}
		}
	}
	for _, path := range routes {
		if passed[path] == 0 || (stopped[path] == 0) != openRoutes[path] {
			t.Errorf("route %s: %d requests got past the gate, %d were stopped", path, passed[path], stopped[path])
		}
	}
}

// TestCanaryUngatedRoute: a server that mounts /debug/pprof/ outside the
// gate must fail the gate property.
func TestCanaryUngatedRoute(t *testing.T) {
	defects := server.Defects{UngatedPprof: true}
	for seed := 0; seed < 200; seed++ {
		c := rapid.Custom(genAuthCase).Example(seed)
		if err := CheckGate(c, http.MethodGet, "/debug/pprof/", defects); err != nil {
			t.Logf("caught as expected: %v", err)
			return
		}
	}
	t.Fatal("/debug/pprof/ outside the gate went unnoticed in 200 generated requests")
}
