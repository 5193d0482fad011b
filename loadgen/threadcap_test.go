package loadgen

import (
	"errors"
	"testing"
)

// TestCheckThreads: the threads model is refused past MaxThreadsPerCPU
// connections per client CPU; epoll and auto (which picks epoll there)
// are not.
func TestCheckThreads(t *testing.T) {
	for _, tc := range []struct {
		clients int
		model   ClientModel
		cpus    []int
		refused bool
	}{
		{MaxThreadsPerCPU, ClientThreads, []int{1}, false},
		{MaxThreadsPerCPU + 1, ClientThreads, []int{1}, true},
		{2 * MaxThreadsPerCPU, ClientThreads, []int{1, 2}, false},
		{5000, ClientThreads, []int{1}, true},
		{5000, ClientEpoll, []int{1}, false},
		{5000, ClientAuto, []int{1}, false},
	} {
		o := Options{Clients: tc.clients, ClientModel: tc.model, ClientCPUs: tc.cpus}
		err := o.CheckThreads()
		if got := errors.Is(err, ErrTooManyThreads); got != tc.refused {
			t.Errorf("%d clients, model %q, CPUs %v: err %v, want refused %v", tc.clients, tc.model, tc.cpus, err, tc.refused)
		}
	}
}
