package session

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// selfBin is a volleyscope binary built for these tests: built-in servers
// run as "volleyscope serve NAME" in a process of their own, as in real use.
var selfBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "volleyscope-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	selfBin = filepath.Join(dir, "volleyscope")
	out, err := exec.Command("go", "build", "-o", selfBin, "../cmd/volleyscope").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build volleyscope for tests: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
