// Package buildinfo reports the module version and VCS revision a binary
// was built from, for --version and the finelog_build_info metric.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is what the Go toolchain stamped into the binary.
type Info struct {
	// Version is the main module's version: a tag such as v1.2.0 when
	// installed with go install module@version, "(devel)" for a build from a
	// checkout.
	Version string
	// Revision is the VCS commit ("unknown" when the build had no VCS
	// information, e.g. go run or -buildvcs=false); Modified reports
	// uncommitted changes in that checkout.
	Revision  string
	Modified  bool
	GoVersion string
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if bi.Main.Version != "" {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String is the --version line, e.g.
// "finelogd (devel) revision 1b0eaa5c… (modified) go1.25.4".
func (i Info) String() string {
	mod := ""
	if i.Modified {
		mod = " (modified)"
	}
	return fmt.Sprintf("%s revision %s%s %s", i.Version, i.Revision, mod, i.GoVersion)
}
