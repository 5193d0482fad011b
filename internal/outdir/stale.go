package outdir

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// tempPattern is the name of a file being written atomically (createAtomic):
// hidden, after the file it becomes, with the writer's pid, so that the
// leftovers of a run killed by SIGKILL, which cannot remove them, are told
// from the files of a run still writing into the same folder
// (RemoveStaleTemps).
func tempPattern(base string) string {
	return "." + base + ".tmp-" + strconv.Itoa(os.Getpid()) + "-*"
}

// RemoveStaleTemps removes from dir the temporary files that runs no
// longer alive left there, and says how many it removed. Best effort: what
// cannot be removed stays for the next run.
func RemoveStaleTemps(dir string) int {
	names, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	n := 0
	for _, path := range names {
		_, rest, ok := strings.Cut(filepath.Base(path), ".tmp-")
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || alive(pid) {
			continue // not ours to judge, or its writer still runs
		}
		if os.Remove(path) == nil {
			n++
		}
	}
	return n
}

// alive says whether process pid exists (EPERM: it does, as another user's).
func alive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || err == unix.EPERM
}
