package loadgen

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestNanotimeIsMonotonic(t *testing.T) {
	var ts unix.Timespec
	a := nanotime()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	b := nanotime()
	k := ts.Nano()
	if k < a || k > b {
		t.Fatalf("CLOCK_MONOTONIC %d not within runtime nanotime [%d, %d]", k, a, b)
	}
}
