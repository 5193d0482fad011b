package affinity

import (
	"runtime"
	"slices"
)

// OfProcesses is where the threads of processes pids may run, all
// together, in ascending order; nil when that is every CPU (the processes
// are not pinned) or nothing could be read. A server that volleyscope did
// not start may have been pinned by its user (taskset): its results say
// where.
func OfProcesses(pids []int) []int {
	seen := map[int]bool{}
	for _, pid := range pids {
		threads, err := Placement(pid)
		if err != nil {
			continue
		}
		for _, t := range threads {
			for _, c := range t.CPUs {
				seen[c] = true
			}
		}
	}
	if len(seen) == 0 || len(seen) >= runtime.NumCPU() {
		return nil
	}
	cpus := make([]int, 0, len(seen))
	for c := range seen {
		cpus = append(cpus, c)
	}
	slices.Sort(cpus)
	return cpus
}
