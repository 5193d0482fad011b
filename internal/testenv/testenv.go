// Package testenv holds the one rule by which volleyscope's kernel tests
// skip: they need root (they load eBPF programs), and -short leaves them
// out. A skip always says why; a missing feature is never a silent pass.
package testenv

import (
	"os"
	"testing"
)

// RequireRoot skips t unless it runs as root and without -short.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root (loads eBPF programs)")
	}
	if testing.Short() {
		t.Skip("kernel test; skipped with -short")
	}
}
