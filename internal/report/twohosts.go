package report

import (
	"fmt"

	"github.com/volleyscope/volleyscope/internal/clocksync"
)

// TwoHosts is what a run across two hosts adds (run --agent): the
// server's host, the estimate of its clock against this one's, the
// one-way times per direction that the estimate gives, and what the
// agent cost. Components measured on one host do not depend on the
// estimate; client_net's and server_net's crossing parts do, each by the
// estimate's uncertainty, and their sum does not.
type TwoHosts struct {
	Agent      string           `json:"agent"` // the agent's address
	ServerHost HostFacts        `json:"server_host"`
	Clock      clocksync.Report `json:"clock"`
	// ClockSeries is the estimate over the run, as the agent's events
	// were mapped: a point every half second or so.
	ClockSeries []ClockPoint `json:"clock_series,omitempty"`
	// The one-way times, client → server (the request: client_net and
	// its parts) and server → client (the reply: server_net).
	Request OneWay `json:"client_to_server"`
	Reply   OneWay `json:"server_to_client"`
	// NetRTTNs is the mean of client_net + server_net: offset-free.
	NetRTTNs float64 `json:"net_round_trip_mean_ns"`
	// The agent's account: its process's CPU time over the session, the
	// events it sent and the bytes they took on the wire.
	AgentCPUNs      int64   `json:"agent_cpu_ns"`
	AgentEvents     uint64  `json:"agent_events"`
	AgentBytes      uint64  `json:"agent_bytes"`
	AgentNsPerEvent float64 `json:"agent_ns_per_event"`
	BytesPerRTT     float64 `json:"agent_bytes_per_rtt"`
}

// HostFacts describe the server's machine in a run across two hosts, as
// Meta describes this one's.
type HostFacts struct {
	Kernel          string            `json:"kernel"`
	CPUModel        string            `json:"cpu_model"`
	NCPU            int               `json:"ncpu"`
	Vulnerabilities map[string]string `json:"vulnerabilities,omitempty"`
	Virtualization  string            `json:"virtualization,omitempty"`
	ClockSource     string            `json:"clock_source,omitempty"`
	Version         string            `json:"volleyscope_version"` // the agent's
}

// ClockPoint is the clock estimate at one time: the agent's clock minus
// this host's, within ± HalfWidthNs.
type ClockPoint struct {
	TNs         int64 `json:"t_ns"` // this host's CLOCK_MONOTONIC
	OffsetNs    int64 `json:"offset_ns"`
	HalfWidthNs int64 `json:"half_width_ns"`
}

// OneWay is one direction's one-way time over the joined round trips,
// from the sender's send entry to data ready on the receiver's socket.
type OneWay struct {
	MeanNs float64 `json:"mean_ns"`
	MinNs  int64   `json:"min_ns"`
	// UncertaintyNs is the clock estimate's half-width over the run (its
	// median): each one-way time is known to within ± this.
	UncertaintyNs int64 `json:"uncertainty_ns"`
	// Checked round trips; Negative of them came out below zero by more
	// than the estimate's uncertainty at their time.
	Checked  int64 `json:"checked"`
	Negative int64 `json:"negative_beyond_uncertainty"`
}

// oneWayWarnings are the validity warnings of a two-host run: one-way
// times negative beyond the clock estimate's uncertainty mean the
// estimate (or the matching of the two hosts' events) is wrong.
func (t *TwoHosts) oneWayWarnings() []string {
	var ws []string
	for _, d := range []struct {
		name string
		w    OneWay
	}{{"client → server", t.Request}, {"server → client", t.Reply}} {
		if d.w.Negative > 0 {
			ws = append(ws, fmt.Sprintf("%d of %d %s one-way times are negative beyond the clock estimate's uncertainty: the clock estimate does not hold for them", d.w.Negative, d.w.Checked, d.name))
		}
	}
	return ws
}
