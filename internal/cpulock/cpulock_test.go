package cpulock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as another run: with holdEnv set to a CPU it
// locks that CPU, says so on stdout and sleeps until killed.
const holdEnv = "CPULOCK_TEST_HOLD"

func TestMain(m *testing.M) {
	if cpu := os.Getenv(holdEnv); cpu != "" {
		dir = os.Getenv("CPULOCK_TEST_DIR")
		var n int
		fmt.Sscan(cpu, &n)
		if _, err := Acquire(context.Background(), []int{n}, false, "volleyscope run --test"); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("held")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func useDir(t *testing.T) {
	old := dir
	dir = t.TempDir()
	t.Cleanup(func() { dir = old })
}

// TestBusy: a CPU held by a run is refused to the next, naming the
// holder; a waiting run gets it once it is let go; disjoint CPUs do not
// conflict.
func TestBusy(t *testing.T) {
	useDir(t)
	ctx := context.Background()
	a, err := Acquire(ctx, []int{1, 0, 1}, false, "volleyscope run --clients 4")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(ctx, []int{1}, false, "second")
	want := fmt.Sprintf("CPU 1 is measured by pid %d (volleyscope run --clients 4)", os.Getpid())
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "--wait") {
		t.Errorf("second run on CPU 1: %v, want ErrBusy saying %q and naming --wait", err, want)
	}
	// A file naming a run that is gone (the lock just taken by one that
	// has not written its name yet) does not name the gone run.
	if f, err := os.OpenFile(dir+"/cpu-1.lock", os.O_RDWR, 0); err == nil {
		_, _ = f.WriteAt([]byte("4194303 volleyscope gone\n"), 0)
		f.Close()
	}
	if _, err := Acquire(ctx, []int{1}, false, "third"); !errors.Is(err, ErrBusy) || strings.Contains(err.Error(), "gone") {
		t.Errorf("CPU 1 named by a dead pid: %v, want ErrBusy not naming it", err)
	}
	if c, err := Acquire(ctx, []int{2, 3}, false, "disjoint"); err != nil {
		t.Errorf("disjoint CPUs: %v", err)
	} else {
		c.Release()
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := Acquire(short, []int{0}, true, "waiter"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait on a held CPU until the context ends: %v, want the deadline", err)
	}
	got := make(chan error, 1)
	go func() {
		b, err := Acquire(ctx, []int{0, 1}, true, "waiter")
		b.Release()
		got <- err
	}()
	time.Sleep(200 * time.Millisecond) // the waiter is blocked by then
	a.Release()
	a.Release() // twice is harmless
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("waiting run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("waiting run did not get the CPUs after they were let go")
	}
}

// TestDiesWithHolder: a run killed with SIGKILL leaves no lock behind.
func TestDiesWithHolder(t *testing.T) {
	useDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"=5", "CPULOCK_TEST_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); !strings.HasPrefix(string(buf[:n]), "held") {
		t.Fatalf("holder: %q", buf[:n])
	}
	if _, err := Acquire(context.Background(), []int{5}, false, "second"); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", cmd.Process.Pid)) {
		t.Fatalf("CPU held by pid %d: %v, want ErrBusy naming it", cmd.Process.Pid, err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	l, err := Acquire(context.Background(), []int{5}, false, "after")
	if err != nil {
		t.Fatalf("after SIGKILL of the holder: %v", err)
	}
	l.Release()
}
