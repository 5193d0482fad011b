package report

import (
	"fmt"
	"slices"
	"strings"
)

// SweepPoint is one load level of a sweep and what its run measured.
type SweepPoint struct {
	Server              string  `json:"server,omitempty"` // the server's label, in a sweep of several
	Clients             int     `json:"clients"`
	Rate                float64 `json:"rate,omitempty"` // offered round trips/s (open loop); 0: closed loop
	ThroughputRPS       float64 `json:"throughput_rps"`
	ServerThroughputRPS float64 `json:"server_throughput_rps,omitempty"` // from the probe's send events
	P50                 float64 `json:"p50_ns"`
	P50Low              float64 `json:"p50_ci_low_ns"`
	P50High             float64 `json:"p50_ci_high_ns"`
	P99                 float64 `json:"p99_ns"`
	P99Low              float64 `json:"p99_ci_low_ns"`
	P99High             float64 `json:"p99_ci_high_ns"`
	StopReason          string  `json:"stop_reason"`
	ClientSaturated     bool    `json:"client_saturated"`                    // the run warned that the client may limit it
	CPUPerRequestNs     float64 `json:"server_cpu_per_request_ns,omitempty"` // the server's CPU time per request (/proc)
	// LoadHosts, when the clients ran on load agents, is each host's
	// client load: saturation is judged per host (ClientSaturated is
	// true when any host's is).
	LoadHosts []SweepHost `json:"load_hosts,omitempty"`
	Error     string      `json:"error,omitempty"`
}

// SweepHost is one load host's client load at one sweep point.
type SweepHost struct {
	Host      string  `json:"host"`
	Clients   int     `json:"clients"`
	CPUsBusy  float64 `json:"cpus_busy_fraction"`
	OnCPU     float64 `json:"on_cpu_fraction"`
	Saturated bool    `json:"client_saturated"`
}

// Sweep is throughput and latency against load, with the knee named.
type Sweep struct {
	Points []SweepPoint `json:"points"`
	// Knee is the index of the last point before throughput stops growing
	// while latency rises; -1 when the sweep never reached it. With
	// several servers it is the first server's; Knees has each one's.
	Knee    int         `json:"knee"`
	KneeWhy string      `json:"knee_why"`
	Servers []string    `json:"servers,omitempty"` // labels, in order, when the sweep ran several
	Knees   []SweepKnee `json:"knees,omitempty"`
}

// SweepKnee is one server's knee in a sweep of several.
type SweepKnee struct {
	Server string `json:"server"`
	Point  int    `json:"point"` // index into Points; -1: not reached
	Why    string `json:"why"`
}

// Knee rule: from one point to the next, throughput that grows by less
// than KneeGrowth while the p50 rises by more than KneeRise means the
// server is saturated: more load only queues.
const (
	KneeGrowth = 0.10
	KneeRise   = 0.10
)

// SweepPointOf summarizes one run of a sweep.
func SweepPointOf(clients int, rate float64, r *Results) SweepPoint {
	p := SweepPoint{
		Clients: clients, Rate: rate, ThroughputRPS: r.ThroughputRPS, ServerThroughputRPS: r.ServerThroughputRPS,
		P50: r.Latency.P50, P50Low: r.Latency.P50CILow, P50High: r.Latency.P50CIHigh,
		P99: r.Latency.P99, P99Low: r.Latency.P99CILow, P99High: r.Latency.P99CIHigh,
		StopReason: r.Run.StopReason,
	}
	if r.ServerCost != nil {
		p.CPUPerRequestNs = r.ServerCost.CPUNs
	}
	p.ClientSaturated = ClientLimited(r)
	for _, h := range r.Run.LoadHosts {
		p.LoadHosts = append(p.LoadHosts, SweepHost{Host: h.Host, Clients: h.Clients, CPUsBusy: h.ClientLoad.CPUsBusy, OnCPU: h.ClientLoad.OnCPU, Saturated: h.Saturated})
	}
	if len(r.Errors) > 0 {
		p.Error = r.Errors[0]
	}
	return p
}

// NewSweep names the knee of each server's points, taken in the order
// they were run.
func NewSweep(points []SweepPoint) *Sweep {
	s := &Sweep{Points: points, Knee: -1}
	for _, p := range points {
		if !slices.Contains(s.Servers, p.Server) {
			s.Servers = append(s.Servers, p.Server)
		}
	}
	for k, name := range s.Servers {
		var idx []int
		for i, p := range points {
			if p.Server == name {
				idx = append(idx, i)
			}
		}
		kn := SweepKnee{Server: name, Point: -1}
		for j := 1; j < len(idx); j++ {
			a, b := points[idx[j-1]], points[idx[j]]
			if a.ThroughputRPS <= 0 || a.P50 <= 0 {
				continue
			}
			growth := b.ThroughputRPS/a.ThroughputRPS - 1
			rise := b.P50/a.P50 - 1
			if growth < KneeGrowth && rise > KneeRise {
				kn.Point = idx[j-1]
				kn.Why = fmt.Sprintf("from %s to %s throughput grew %+.0f%% while p50 rose %+.0f%%", a.Label(), b.Label(), 100*growth, 100*rise)
				break
			}
		}
		if k == 0 {
			s.Knee, s.KneeWhy = kn.Point, kn.Why
		}
		s.Knees = append(s.Knees, kn)
	}
	if len(s.Servers) < 2 {
		s.Servers, s.Knees = nil, nil
	}
	return s
}

// IsKnee says whether point i is a server's knee.
func (s *Sweep) IsKnee(i int) bool {
	if len(s.Knees) == 0 {
		return i == s.Knee
	}
	for _, k := range s.Knees {
		if k.Point == i {
			return true
		}
	}
	return false
}

// Label names a point by its load: the rate in open loop, else the clients.
func (p SweepPoint) Label() string {
	if p.Rate > 0 {
		return fmt.Sprintf("%.0f/s", p.Rate)
	}
	return fmt.Sprintf("%d clients", p.Clients)
}

// ClientLimited says whether a run warned that the client, not the
// server, may have limited what it measured (saturation in build.go).
func ClientLimited(r *Results) bool {
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "the client may limit") {
			return true
		}
	}
	return false
}
