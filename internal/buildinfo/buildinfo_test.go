package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestReadAndString(t *testing.T) {
	i := Read()
	if i.Version == "" || i.Revision == "" || i.GoVersion != runtime.Version() {
		t.Fatalf("Read() = %+v: want version, revision (or \"unknown\") and the Go version", i)
	}
	s := Info{Version: "v1.2.0", Revision: "abc123", Modified: true, GoVersion: "go1.26"}.String()
	if s != "v1.2.0 revision abc123 (modified) go1.26" {
		t.Fatalf("String() = %q", s)
	}
	if strings.Contains(Info{Version: "v1", Revision: "r", GoVersion: "g"}.String(), "modified") {
		t.Fatal("unmodified build says modified")
	}
}
