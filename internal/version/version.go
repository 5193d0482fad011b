// Package version says which build of volleyscope is running, from the
// build information the Go toolchain embeds in every binary: the module
// version, the VCS revision and whether the work tree had changes.
package version

import (
	"runtime/debug"
	"strings"
	"sync"
)

// String is the running binary's version: the module version when it was
// built from a tagged module ("v1.2.0"), else "devel"; then, when the
// build recorded them, the first 12 digits of the VCS revision and
// "+dirty" for a work tree with uncommitted changes, e.g.
// "devel 5cba669f0e1d+dirty". "unknown" when the binary carries no build
// information (a test binary may not).
var String = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return fromBuildInfo(bi)
})

func fromBuildInfo(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	// Since Go 1.24 a build in a repository gets a pseudo-version that
	// already holds the revision and "+dirty".
	if strings.HasSuffix(v, "+dirty") {
		dirty = ""
	}
	if rev == "" || strings.Contains(v, rev) {
		return v + dirty
	}
	return v + " " + rev + dirty
}
