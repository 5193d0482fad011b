package session

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/volleyscope/volleyscope/internal/report"
)

// MinJoinedShare is the share of the measured round trips a probed run
// must join for its breakdown to speak for the run; below it the run says
// so, with the reasons.
const MinJoinedShare = 0.99

// ErrNoneJoined is a probed run that joined none of its round trips with
// the server's events: there is no breakdown, which is the run's point.
var ErrNoneJoined = errors.New("no round trip could be joined with the server's events")

// checkJoined adds a warning to r when its probe joined under
// MinJoinedShare of the round trips, naming the commonest reasons, and
// returns ErrNoneJoined (wrapped, with what to try) when it joined none.
func checkJoined(r *report.Results) error {
	bc := r.BreakdownCheck
	if bc == nil || bc.Joined+bc.Unjoined == 0 {
		return nil
	}
	total := bc.Joined + bc.Unjoined
	share := float64(bc.Joined) / float64(total)
	if share >= MinJoinedShare {
		return nil
	}
	reasons := make([]string, 0, len(bc.UnjoinedReasons))
	for k := range bc.UnjoinedReasons {
		reasons = append(reasons, k)
	}
	sort.Slice(reasons, func(i, j int) bool {
		a, b := bc.UnjoinedReasons[reasons[i]], bc.UnjoinedReasons[reasons[j]]
		return a > b || a == b && reasons[i] < reasons[j]
	})
	if len(reasons) > 3 {
		reasons = reasons[:3]
	}
	for i, k := range reasons {
		reasons[i] = fmt.Sprintf("%d × %s", bc.UnjoinedReasons[k], k)
	}
	why := strings.Join(reasons, "; ")
	if n := r.MissedRecords(); n > 0 {
		why += fmt.Sprintf(" (the probe lost or took late %d records, each of which can cost a round trip its join)", n)
	}
	r.Warnings = append(r.Warnings, fmt.Sprintf("the breakdown joined %d of %d round trips (%.1f%%), under the %.0f%% it needs to speak for the run; unjoined: %s",
		bc.Joined, total, 100*share, 100*MinJoinedShare, why))
	if bc.Joined == 0 {
		return fmt.Errorf("%w (unjoined: %s); check that the server's processes are among those the probe followed, and that it serves on the port given", ErrNoneJoined, why)
	}
	return nil
}
