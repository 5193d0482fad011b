package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Results is the machine-readable summary of one run, written as
// results.json and by --json. The JSON names are a contract (DESIGN §2):
// fields may be added, never renamed.
type Results struct {
	Meta           Meta            `json:"meta"`
	Latency        Latency         `json:"latency_ns"`
	ThroughputRPS  float64         `json:"throughput_rps"`
	Run            RunInfo         `json:"run"`
	Breakdown      []Component     `json:"breakdown"`
	BreakdownCheck *BreakdownCheck `json:"breakdown_check,omitempty"`
	Syscalls       []Syscall       `json:"syscalls,omitempty"`
	LostEvents     uint64          `json:"lost_events"`
	Probe          *ProbeInfo      `json:"probe,omitempty"`
	Errors         []string        `json:"errors"`
}

// Meta says what was measured, where and when.
type Meta struct {
	Kernel     string            `json:"kernel"`
	CPUModel   string            `json:"cpu_model"`
	NCPU       int               `json:"ncpu"`
	Server     string            `json:"server"`
	Clients    int               `json:"clients"`
	Proto      string            `json:"proto"`
	Size       int               `json:"size_bytes,omitempty"`
	ClientCPUs []int             `json:"client_cpus"`
	ServerCPUs []int             `json:"server_cpus"`
	ServerSpin int64             `json:"server_spin_ns,omitempty"`
	ProbeMode  string            `json:"probe_mode"`
	Hooks      map[string]string `json:"hooks"`
	StartedAt  time.Time         `json:"started_at"`
	Version    string            `json:"volleyscope_version"`
}

// Latency summarizes the client-observed round-trip time in nanoseconds.
type Latency struct {
	Count     int64   `json:"count"`
	Mean      float64 `json:"mean"`
	CILow     float64 `json:"ci_low"`
	CIHigh    float64 `json:"ci_high"`
	CILevel   float64 `json:"ci_level"`
	P50       float64 `json:"p50"`
	P90       float64 `json:"p90"`
	P99       float64 `json:"p99"`
	P99CILow  float64 `json:"p99_ci_low"`
	P99CIHigh float64 `json:"p99_ci_high"`
	P999      float64 `json:"p999"`
	P9999     float64 `json:"p9999"`
	Max       float64 `json:"max"`
}

// RunInfo says how the run went: why it stopped and what was discarded.
type RunInfo struct {
	StopReason      string  `json:"stop_reason"` // ci, duration, requests, interrupted, error
	CITarget        float64 `json:"ci_target"`
	CIAchieved      float64 `json:"ci_achieved"` // relative half-width of the mean's interval
	Batches         int     `json:"batches"`
	BatchSize       int     `json:"batch_size"`
	WarmupNs        int64   `json:"warmup_ns"`
	WarmupDiscarded int     `json:"warmup_discarded"`
	MSERDiscarded   int     `json:"mser5_discarded"`
	WarmupIncluded  bool    `json:"warmup_included,omitempty"` // ended during warm-up: warm-up round trips are summarized
	MeasuredNs      int64   `json:"measured_ns"`
}

// Component is one part of the round trip (DESIGN §6).
type Component struct {
	Component string  `json:"component"`
	Side      string  `json:"side"`
	MeanNs    float64 `json:"mean_ns"`
	P50Ns     float64 `json:"p50_ns"`
	P99Ns     float64 `json:"p99_ns"`
	Share     float64 `json:"share"` // of the mean round trip
}

// BreakdownCheck says how well the breakdown accounts for the round trips.
type BreakdownCheck struct {
	Joined             int            `json:"joined"`
	Unjoined           int            `json:"unjoined"`
	UnjoinedReasons    map[string]int `json:"unjoined_reasons,omitempty"`
	SumWithinTolerance float64        `json:"sum_within_tolerance"`
	Tolerance          string         `json:"tolerance"`
}

// Syscall is the latency of one system call on one side.
type Syscall struct {
	Side  string  `json:"side"`
	Name  string  `json:"name"`
	Count int64   `json:"count"`
	P50Ns float64 `json:"p50_ns"`
	P99Ns float64 `json:"p99_ns"`
	MaxNs float64 `json:"max_ns"`
}

// ProbeInfo describes the probe's own cost and coverage.
type ProbeInfo struct {
	Events            uint64            `json:"events"`               // records received
	EventsPerRTT      float64           `json:"events_per_rtt"`       // records per round trip
	ProgramRunsPerRTT float64           `json:"program_runs_per_rtt"` // BPF program runs per round trip, machine-wide, measured during the warm-up (most return after one lookup)
	BPFNsPerEvent     float64           `json:"bpf_ns_per_event"`     // mean BPF run time per program run (BPF_ENABLE_STATS)
	OverheadNsPerRT   float64           `json:"overhead_ns_per_rtt"`  // program runs per round trip × ns per run: the probe's own estimate of its cost
	Missing           map[string]string `json:"missing,omitempty"`    // event → why, and what it costs
	Ring              string            `json:"ring,omitempty"`       // where records went: per-CPU rings or the BPF ring buffer (and why)
	Syscalls          bool              `json:"syscalls"`             // the syscall hooks were on (--syscalls)
}

// HostMeta fills the fields of Meta that describe this machine.
func HostMeta() Meta {
	m := Meta{NCPU: runtime.NumCPU(), Hooks: map[string]string{}, ProbeMode: "none", StartedAt: time.Now().UTC()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r *Results) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write results json: %w", err)
	}
	return nil
}

// ReadJSON reads a results.json file.
func ReadJSON(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("parse results %s: %w", path, err)
	}
	return &r, nil
}
