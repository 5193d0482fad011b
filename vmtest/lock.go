package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/volleyscope/volleyscope/internal/testenv"
)

// lockWait bounds the wait for the machine-wide kernel-test lock.
const lockWait = 20 * time.Minute

// machineLock takes the flock the kernel tests of every process share
// (internal/testenv's LockFile): a TCG guest keeps a host CPU busy for
// its whole boot, which would be in the numbers of a timing test running
// beside it. It is held for one boot (about a minute and a half), never
// for the whole matrix. The returned func releases it.
func machineLock(ctx context.Context) (func(), error) {
	path := filepath.Join(os.TempDir(), testenv.LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open kernel-test lock: %w; set TMPDIR to a writable directory", err)
	}
	deadline := time.Now().Add(lockWait)
	said := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !said {
			fmt.Printf("vmtest: waiting for %s (kernel tests of another process are running)\n", path)
			said = true
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: still held after %s; is a test stuck?", path, lockWait)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return func() { f.Close() }, nil
}
