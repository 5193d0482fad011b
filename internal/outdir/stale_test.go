package outdir

import (
	"os"
	"path/filepath"
	"testing"
)

// TestOpenOutRemovesStaleTemps: OpenOut removes the temporary files of a
// writer that is gone, and keeps those of one still running and anything
// else.
func TestOpenOutRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	const dead = 4194303 // above any pid: pid_max is at most 2^22
	stale := filepath.Join(dir, ".requests.csv.tmp-4194303-123456")
	live := filepath.Join(dir, ".latency.hlog.tmp-1-999") // pid 1 always runs
	other := filepath.Join(dir, ".requests.csv.tmp-999")  // no pid: not ours to judge
	for _, p := range []string{stale, live, other} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	o, err := OpenOut(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Abort()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the file of dead pid %d is still there", dead)
	}
	for _, p := range []string{live, other} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", filepath.Base(p), err)
		}
	}
	// Its own temporary files carry its pid, and survive another OpenOut.
	o2, err := OpenOut(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Abort()
	if _, err := os.Stat(o.csv.f.Name()); err != nil {
		t.Errorf("a live run's temporary file was removed: %v", err)
	}
}
