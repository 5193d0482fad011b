package session

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
)

// TestCheckJoined: a run that joins under 99% warns with its commonest
// reasons; one that joins none is an error as well.
func TestCheckJoined(t *testing.T) {
	for _, tc := range []struct {
		name             string
		joined, unjoined int
		warn             bool
		err              error
	}{
		{"all", 1000, 0, false, nil},
		{"99%", 990, 10, false, nil},
		{"98%", 980, 20, true, nil},
		{"none", 0, 85267, true, ErrNoneJoined},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &report.Results{BreakdownCheck: &report.BreakdownCheck{Joined: tc.joined, Unjoined: tc.unjoined,
				UnjoinedReasons: map[string]int{"no server receive on the connection": tc.unjoined}}}
			err := checkJoined(r)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
			if got := len(r.Warnings) == 1 && strings.Contains(r.Warnings[0], "no server receive"); got != tc.warn {
				t.Errorf("warnings %q, want one naming the reason: %v", r.Warnings, tc.warn)
			}
		})
	}
	if err := checkJoined(&report.Results{}); err != nil {
		t.Errorf("unprobed run: %v", err)
	}
}

// TestJoinLevel: the join's scheduling steps up when a join starts late,
// down one step when it starts on time at nice -5, and back to
// SCHED_IDLE only after joinRetryIdle on time at nice 5.
func TestJoinLevel(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		from  joinLevel
		late  bool
		after time.Duration
		want  joinLevel
	}{
		{joinIdle, false, time.Hour, joinIdle},
		{joinIdle, true, 0, joinLow},
		{joinLow, true, 0, joinRaised},
		{joinRaised, true, 0, joinRaised},
		{joinRaised, false, 0, joinLow},
		{joinLow, false, joinRetryIdle - time.Millisecond, joinLow},
		{joinLow, false, joinRetryIdle, joinIdle},
	} {
		if got := tc.from.next(tc.late, t0.Add(tc.after), t0); got != tc.want {
			t.Errorf("level %d, late %v, %v at it: %d, want %d", tc.from, tc.late, tc.after, got, tc.want)
		}
	}
}
