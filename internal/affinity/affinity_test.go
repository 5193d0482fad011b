package affinity

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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

// TestConfineProcessRestoresEachThread: undo puts each thread back on its
// own mask (the main thread's, pinned here, stays pinned), and the
// threads created meanwhile on the process's mask at start-up, not on
// the main thread's: a goroutine that ended locked to the main thread can
// leave it pinned to a server's CPU, and every confinement after took
// that for the process's (the CI of this round: an agent started with one
// CPU).
func TestConfineProcessRestoresEachThread(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	pid := os.Getpid()
	var all, zero unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &all); err != nil || !all.IsSet(0) || !all.IsSet(1) {
		t.Skipf("the main thread may not run on CPUs 0 and 1: %v", err)
	}
	zero.Set(0)
	if err := unix.SchedSetaffinity(pid, &zero); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(pid, &all)
	old := map[int]bool{}
	tids, _ := Threads()
	for _, tid := range tids {
		old[tid] = true
	}
	undo, err := ConfineProcess([]int{1})
	if err != nil {
		t.Fatal(err)
	}
	// More threads locked than there were: some are created now.
	n := len(tids) + 4
	stop := make(chan struct{})
	var wg sync.WaitGroup
	fresh := make(chan int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			fresh <- unix.Gettid()
			<-stop
		}()
	}
	var made []int
	for i := 0; i < n; i++ {
		if tid := <-fresh; !old[tid] {
			made = append(made, tid)
		}
	}
	if err := undo(); err != nil {
		t.Fatal(err)
	}
	var m unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &m); err != nil || m != zero {
		t.Errorf("main thread after undo: %v (%v), want CPU 0 alone, as it was", m, err)
	}
	for _, tid := range made {
		if err := unix.SchedGetaffinity(tid, &m); err == nil && m != all {
			t.Errorf("thread %d, created while confined: mask %v after undo, want the process's at start-up %v", tid, m, all)
		}
	}
	if len(made) == 0 {
		t.Error("no thread was created while confined")
	}
	close(stop)
	wg.Wait()
}

// TestPinThreadUnpin: unpin puts the thread's own mask back, whatever
// the process's is (the main thread, which Go parks instead of ending,
// must not stay pinned after its pinning goroutine).
func TestPinThreadUnpin(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		status := filepath.Join("/proc/self/task", strconv.Itoa(unix.Gettid()), "status")
		before := allowed(t, status)
		unpin, err := PinThread([]int{1})
		if err != nil {
			t.Error(err)
			return
		}
		if got := allowed(t, status); len(got) != 1 || got[0] != 1 {
			t.Errorf("pinned thread on CPUs %v, want [1]", got)
		}
		unpin()
		if got := allowed(t, status); !slices.Equal(got, before) {
			t.Errorf("after unpin the thread is on CPUs %v, want its own %v back", got, before)
		}
	}()
	<-done
}
