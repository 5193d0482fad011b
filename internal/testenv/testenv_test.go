package testenv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const holdEnv = "VOLLEYSCOPE_TESTENV_HOLD" // lock path the helper process holds

// TestMain lets the test binary act as the other process: with holdEnv
// set it takes the lock, says "held" and keeps it until its stdin closes.
func TestMain(m *testing.M) {
	if path := os.Getenv(holdEnv); path != "" {
		var l lock
		if err := l.acquire(path, "helper", time.Now().Add(time.Minute), func(string, ...any) {}); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("held\n")
		bufio.NewReader(os.Stdin).ReadString('\n')
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestLockAcrossProcesses: while another process holds the lock, acquire
// waits, names the holder, and gives up at its limit; once the other
// process ends, acquire gets it.
func TestLockAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), holdEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer stdin.Close()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "held\n" {
		t.Fatalf("helper said %q (%v), want held", line, err)
	}

	var l lock
	var logged []string
	logf := func(f string, a ...any) { logged = append(logged, f) }
	err = l.acquire(path, t.Name(), time.Now().Add(200*time.Millisecond), logf)
	if err == nil || !strings.Contains(err.Error(), "still held") || !strings.Contains(err.Error(), "test helper") {
		t.Fatalf("acquire while another process holds the lock: %v, want an error naming the helper", err)
	}
	if len(logged) != 1 {
		t.Errorf("logged %q while waiting, want one line", logged)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if err := l.acquire(path, t.Name(), time.Now().Add(time.Minute), logf); err != nil {
		t.Fatalf("acquire after the holder ended: %v", err)
	}
	l.release()
}

// TestLockNestsInProcess: a second hold in the same process does not wait
// for the first, and the file stays locked until the last release.
func TestLockNestsInProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), LockFile)
	var l lock
	none := func(string, ...any) {}
	for i := 0; i < 2; i++ {
		if err := l.acquire(path, t.Name(), time.Now(), none); err != nil {
			t.Fatalf("hold %d: %v", i+1, err)
		}
	}
	l.release()
	if l.n != 1 || l.f == nil {
		t.Fatalf("after one of two releases: %d holders, file open %v; want still held", l.n, l.f != nil)
	}
	if err := l.acquire(filepath.Join(t.TempDir(), "other.lock"), t.Name(), time.Now(), none); err == nil {
		t.Error("a second lock path while holding the first: want an error")
	}
	l.release()
	if l.n != 0 || l.f != nil {
		t.Errorf("after the last release: %d holders, file open %v", l.n, l.f != nil)
	}
}
