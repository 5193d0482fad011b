package affinity

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// allowed reads a thread's Cpus_allowed_list from its status file, a view
// of the mask independent of sched_getaffinity.
func allowed(t *testing.T, status string) []int {
	t.Helper()
	b, err := os.ReadFile(status)
	if err != nil {
		if os.IsNotExist(err) {
			return nil // the thread ended
		}
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			cpus, err := ParseList(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("%s: %v", status, err)
			}
			return cpus
		}
	}
	t.Fatalf("%s: no Cpus_allowed_list", status)
	return nil
}

// TestConfineProcess confines the test binary to one CPU while goroutines
// keep the runtime starting threads, and checks every thread, including
// threads started afterwards, and then the undo.
func TestConfineProcess(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	cpu := runtime.NumCPU() - 1
	before := allowed(t, "/proc/self/status")

	// Threads blocked in system calls make the runtime start more.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-stop
		}()
	}
	undo, err := ConfineProcess([]int{cpu})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ { // threads created after the call
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-stop
		}()
	}
	check := func(want []int) {
		t.Helper()
		paths, _ := filepath.Glob("/proc/self/task/*/status")
		if len(paths) < 5 {
			t.Fatalf("only %d threads seen", len(paths))
		}
		for _, p := range paths {
			if got := allowed(t, p); got != nil && !equal(got, want) {
				t.Errorf("%s: Cpus_allowed_list %v, want %v", p, got, want)
			}
		}
	}
	runtime.Gosched()
	check([]int{cpu})
	close(stop)
	wg.Wait()
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	check(before)
}

func TestConfineProcessEmptyDoesNothing(t *testing.T) {
	before := allowed(t, "/proc/self/status")
	undo, err := ConfineProcess(nil)
	if err != nil || undo == nil {
		t.Fatalf("ConfineProcess(nil): undo nil %v, err %v", undo == nil, err)
	}
	if got := allowed(t, "/proc/self/status"); !equal(got, before) {
		t.Errorf("CPUs changed from %v to %v", before, got)
	}
}

func TestConfineProcessBadCPU(t *testing.T) {
	if _, err := ConfineProcess([]int{-1}); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("err = %v, want out of range", err)
	}
}

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		bad  bool
	}{
		{"0", []int{0}, false},
		{"0-3", []int{0, 1, 2, 3}, false},
		{"0,2-3,7", []int{0, 2, 3, 7}, false},
		{"", nil, false},
		{"3-1", nil, true},
		{"x", nil, true},
	} {
		got, err := ParseList(tc.in)
		if (err != nil) != tc.bad || !equal(got, tc.want) {
			t.Errorf("ParseList(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestOfProcesses: a process pinned with taskset is read back as its CPU;
// an unpinned one as nil (any CPU).
func TestOfProcesses(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	pinned := exec.Command("taskset", "-c", "1", "sleep", "5")
	if err := pinned.Start(); err != nil {
		t.Skipf("taskset: %v", err)
	}
	defer func() { pinned.Process.Kill(); pinned.Wait() }()
	free := exec.Command("sleep", "5")
	if err := free.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { free.Process.Kill(); free.Wait() }()
	// taskset pins itself, then execs sleep: wait until the exec is done.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got := OfProcesses([]int{pinned.Process.Pid}); equal(got, []int{1}) {
			break
		}
	}
	if got := OfProcesses([]int{pinned.Process.Pid}); !equal(got, []int{1}) {
		t.Errorf("pinned to CPU 1: got %v", got)
	}
	if ours := OfProcesses([]int{os.Getpid()}); ours != nil {
		t.Logf("this test runs pinned to %v: the unpinned case is not checked", ours)
	} else if got := OfProcesses([]int{free.Process.Pid}); got != nil {
		t.Errorf("unpinned: got %v, want nil", got)
	}
}
