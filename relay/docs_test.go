package relay

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docs/relay.md's table of stopped states must list exactly the states
// State.Stopped reports, so operators read the rule the code applies.
func TestDocsListExactlyTheStoppedStates(t *testing.T) {
	doc, err := os.ReadFile("../docs/relay.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^  \\| `(stopped_[a-z_]+)` \\|")
	var documented []string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1])
	}
	var stopped []string
	for _, s := range allStates {
		if s.Stopped() {
			stopped = append(stopped, string(s))
		}
	}
	slices.Sort(documented)
	slices.Sort(stopped)
	if !slices.Equal(documented, stopped) {
		t.Fatalf("docs/relay.md lists stopped states %s; State.Stopped reports %s",
			strings.Join(documented, ", "), strings.Join(stopped, ", "))
	}
}
