package session

import (
	"errors"
	"fmt"
	"time"
)

// ErrLostEvents is wrapped by the error Run returns when the probe dropped
// records (a ring was full): the load's results are complete and written,
// but the breakdown misses the round trips whose events were lost. The
// command line exits with status 3 on it alone.
var ErrLostEvents = errors.New("the probe lost events")

// LostEvents returns an error wrapping ErrLostEvents when lost is not
// zero, and nil otherwise. readerLate is how late the probe's reader was
// at worst (probe.Probe.ReaderLate); from 10 ms on the error says that
// other work on the client CPUs held it up.
func LostEvents(lost uint64, readerLate time.Duration) error {
	if lost == 0 {
		return nil
	}
	why := "rerun with fewer clients or without --syscalls"
	if readerLate >= 10*time.Millisecond {
		why = fmt.Sprintf("the reader began a drain up to %v late: other work on the client CPUs held it up; %s", readerLate.Round(time.Millisecond), why)
	}
	return fmt.Errorf("%w: %d records dropped by full rings, so the breakdown misses some round trips; %s", ErrLostEvents, lost, why)
}
