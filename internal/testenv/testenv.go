// Package testenv holds the rules by which volleyscope's kernel tests run:
// they need root (they load eBPF programs), -short leaves them out, and
// no two of them run at once on the machine, not even from two 'go test'
// processes, because each one measures timing against the kernel and the
// other's load would be in its numbers. A skip always says why; a missing
// feature is never a silent pass.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// LockFile is the file whose flock(2) serialises the kernel tests of every
// process on the machine, in os.TempDir().
const LockFile = "volleyscope-kernel-tests.lock"

// RequireRoot skips t unless it runs as root and without -short, and then
// holds the machine-wide kernel-test lock until t ends (Exclusive).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root (loads eBPF programs)")
	}
	if testing.Short() {
		t.Skip("kernel test; skipped with -short")
	}
	Exclusive(t)
}

// Exclusive holds the machine-wide kernel-test lock until t ends: it waits
// while a test of another process holds it, logging who, and fails t if
// the lock is still held when less than a minute of t's -timeout is left
// (or after 20 minutes without one). Within one process the lock is
// shared: a subtest of a test that holds it, or a parallel test, goes on.
func Exclusive(t testing.TB) {
	t.Helper()
	path := filepath.Join(os.TempDir(), LockFile)
	limit := time.Now().Add(20 * time.Minute)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			limit = dl.Add(-time.Minute)
		}
	}
	if err := procLock.acquire(path, t.Name(), limit, t.Logf); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(procLock.release)
}

// procLock is this process's hold on the lock file.
var procLock lock

type lock struct {
	mu   sync.Mutex
	n    int      // holders in this process
	f    *os.File // open while n > 0
	path string
}

// acquire takes the flock on path unless this process holds it already,
// polling until limit. logf is told once when another process holds it.
func (l *lock) acquire(path, name string, limit time.Time, logf func(string, ...any)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		if l.path != path {
			return fmt.Errorf("take kernel-test lock %s: this process holds %s", path, l.path)
		}
		l.n++
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return fmt.Errorf("open kernel-test lock: %w; set TMPDIR to a writable directory", err)
	}
	start := time.Now()
	for told := false; ; {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return fmt.Errorf("lock %s: %w", path, err)
		}
		if !told {
			logf("waiting for the kernel-test lock %s, held by %s", path, holder(path))
			told = true
		}
		if time.Now().After(limit) {
			f.Close()
			return fmt.Errorf("kernel-test lock %s still held after %v by %s; wait for that test run to end or raise -timeout",
				path, time.Since(start).Round(time.Second), holder(path))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if w := time.Since(start); w > time.Second {
		logf("took the kernel-test lock after %v", w.Round(time.Millisecond))
	}
	// Who holds it, for the message of a process that waits.
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "pid %d (%s), test %s, since %s", os.Getpid(), filepath.Base(os.Args[0]), name, time.Now().Format(time.TimeOnly))
	}
	l.f, l.n, l.path = f, 1, path
	return nil
}

func (l *lock) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n--; l.n > 0 {
		return
	}
	l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
}

func holder(path string) string {
	b, err := os.ReadFile(path)
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s
	}
	return "another process"
}
