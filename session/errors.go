package session

import (
	"errors"
	"fmt"
)

// ErrLostEvents is wrapped by the error Run returns when the probe dropped
// records (a ring was full): the load's results are complete and written,
// but the breakdown misses the round trips whose events were lost. The
// command line exits with status 3 on it alone.
var ErrLostEvents = errors.New("the probe lost events")

// LostEvents returns an error wrapping ErrLostEvents when lost is not
// zero, and nil otherwise.
func LostEvents(lost uint64) error {
	if lost == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d records dropped by full rings, so the breakdown misses some round trips; rerun with fewer clients or without --syscalls", ErrLostEvents, lost)
}
