package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/volleyscope/volleyscope/internal/report"
)

// agentPort is where the guest's agent listens (volleyscope agent's
// documented example port).
const agentPort = 7470

// agentRun is the test of a real second kernel and clock: the
// guest runs 'volleyscope agent' with a built-in server, the host runs
// 'volleyscope run --agent' through the tap, and the run is split across
// the two hosts. Under software emulation no timing is judged; what must
// hold is the join, that the clock estimate found the guest's clock (it
// booted long after the host, so the offset is large), and that no
// one-way time comes out negative beyond the estimate's interval.
var agentRun = netScenario{
	What: "run=net-agent",
	Port: agentPort,
	Guest: func(e netEnd) []string {
		return []string{"agent", "--listen", e.Addr, "--token", e.Token, "--server", "threads"}
	},
	Host: func(e netEnd) []string {
		return []string{"run", "--agent", e.Addr, "--token", e.Token, "--clients", "2",
			"--duration", "3s", "--warmup", "500ms", "--ci", "0", "--p99-ci", "0",
			"--client-cpus", "", "--wait", "--json", "--quiet"}
	},
	Check: checkAgentRun,
	Needs: needsAgent,
}

// needsAgent says what the binary lacks for agentRun: the agent command,
// or run's --agent.
func needsAgent(vs string) string {
	if out, err := exec.Command(vs, "agent", "--help").CombinedOutput(); err != nil || !strings.Contains(string(out), "--listen") {
		return "waits for 'volleyscope agent' (the server-side agent)"
	}
	if out, _ := exec.Command(vs, "run", "--help").CombinedOutput(); !strings.Contains(string(out), "--agent") {
		return "waits for 'volleyscope run --agent' (the controller's side)"
	}
	return ""
}

// offsetSlack widens the span the guest's clock offset must fall in
// (netFacts): the guest's clock counts from its kernel's start, and under
// TCG its rate is calibrated against emulated timers, so it may run a
// little off the host's over the seconds before the run.
const offsetSlack = 2 * time.Second

// checkAgentRun: round trips measured and joined across the two hosts
// (at most maxUnjoined left out), the clock estimate made from both
// directions with the guest's offset where its boot puts it, and every
// checked one-way time non-negative within the estimate's interval.
func checkAgentRun(stdout []byte, f netFacts) (string, error) {
	var r report.Results
	if err := json.Unmarshal(stdout, &r); err != nil {
		return "", fmt.Errorf("read the host's results: %w", err)
	}
	bc := r.BreakdownCheck
	switch {
	case len(r.Errors) > 0:
		return "", fmt.Errorf("the host's run has errors: %s", strings.Join(r.Errors, "; "))
	case r.Latency.Count == 0:
		return "", errors.New("the host measured no round trip with the guest")
	case bc == nil || bc.Joined == 0:
		return "", errors.New("no round trip was joined with the guest's events")
	case r.TwoHosts == nil:
		return "", errors.New("results.json has no two_hosts: the run was not split across the hosts")
	}
	t := r.TwoHosts
	c := t.Clock
	// Every failure below carries the whole account, so that a FAIL line
	// still shows the join, the estimate and the one-way counts.
	detail := fmt.Sprintf("%d of %d round trips joined (%.2f%%); clock offset %.3f s ± %.1f µs, drift %.0f ns/s (guest booted at host %.3f s); negative one-way times beyond the interval: %d of %d client→server, %d of %d server→client",
		bc.Joined, bc.Joined+bc.Unjoined, 100*float64(bc.Joined)/float64(bc.Joined+bc.Unjoined),
		float64(c.OffsetFirstNs)/1e9, float64(c.HalfWidthMedianNs)/1e3, c.DriftNsPerS, float64(f.StartMonoNs)/1e9,
		t.Request.Negative, t.Request.Checked, t.Reply.Negative, t.Reply.Checked)
	// θ is the guest's clock minus the host's: minus the host's time at
	// the guest kernel's start, which lies between qemu's start and the
	// guest's READY.
	lo, hi := -(f.ReadyMonoNs + offsetSlack.Nanoseconds()), -(f.StartMonoNs - offsetSlack.Nanoseconds())
	switch {
	case float64(bc.Unjoined) > maxUnjoined*float64(bc.Joined+bc.Unjoined):
		return "", fmt.Errorf("%d of %d round trips not joined across the two hosts, over %g%% (%s); %s", bc.Unjoined, bc.Joined+bc.Unjoined, 100*maxUnjoined, reasons(bc.UnjoinedReasons), detail)
	case c.SamplesAB == 0 || c.SamplesBA == 0:
		return "", fmt.Errorf("no clock estimate: %d samples host→guest, %d guest→host; %s", c.SamplesAB, c.SamplesBA, detail)
	case c.OffsetFirstNs < lo || c.OffsetFirstNs > hi:
		return "", fmt.Errorf("clock offset %.3f s is not where the guest's boot puts it, [%.3f, %.3f] s; %s", float64(c.OffsetFirstNs)/1e9, float64(lo)/1e9, float64(hi)/1e9, detail)
	case t.Request.Checked == 0 || t.Reply.Checked == 0:
		return "", fmt.Errorf("no one-way time checked; %s", detail)
	case t.Request.Negative > 0 || t.Reply.Negative > 0:
		return "", fmt.Errorf("one-way times negative beyond the clock estimate's interval; %s", detail)
	case r.Run.Validity.OneWayHeld == nil || !*r.Run.Validity.OneWayHeld:
		return "", fmt.Errorf("run.validity.one_way_times_held is not true; %s", detail)
	}
	return detail, nil
}
