package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/volleyscope/volleyscope/internal/hostinfo"
	"github.com/volleyscope/volleyscope/internal/proccost"
	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/internal/version"
	"github.com/volleyscope/volleyscope/loadgen"
)

// Results is the machine-readable summary of one run, written as
// results.json and by --json. The JSON names are a contract with the tools that read them:
// fields may be added, never renamed.
type Results struct {
	Schema        int     `json:"schema"` // ResultsSchema when written by WriteJSON
	Meta          Meta    `json:"meta"`
	Latency       Latency `json:"latency_ns"`
	ThroughputRPS float64 `json:"throughput_rps"`
	// ServerThroughputRPS is the send calls the server made per second
	// of the window, from the probe's send events (0 without the
	// probe): one per reply for a server that writes a reply in one
	// call, several for one that writes it in parts. When it plateaus
	// while each client's rate falls, the server is saturated.
	ServerThroughputRPS float64 `json:"server_throughput_rps,omitempty"`
	// ServerCost is the server's CPU time and context switches per
	// request over the window (its process and children, from /proc).
	ServerCost     *proccost.Cost  `json:"server_cost,omitempty"`
	Run            RunInfo         `json:"run"`
	Breakdown      []Component     `json:"breakdown"`
	BreakdownCheck *BreakdownCheck `json:"breakdown_check,omitempty"`
	// BreakdownByBand is the breakdown of the round trips in each band of
	// their latency (≤ p50, p50–p90, p90–p99, > p99): which component
	// grows toward the tail.
	BreakdownByBand []Band `json:"breakdown_by_band,omitempty"`
	// Slowest are the slowest joined round trips, slowest first, each
	// with its components and the tasks that held the CPU while a side
	// waited for one.
	Slowest []SlowTrip `json:"slowest,omitempty"`
	// SlowWhere says which connections and server threads the round
	// trips slower than the p99 concentrate on.
	SlowWhere  *SlowWhere `json:"slow_where,omitempty"`
	Syscalls   []Syscall  `json:"syscalls,omitempty"`
	Uring      []UringOp  `json:"io_uring,omitempty"` // io_uring operations per opcode
	LostEvents uint64     `json:"lost_events"`
	// LateEvents are records that came after their round trips were
	// joined (the reader fell behind): each may have cost one round trip
	// its split.
	LateEvents int64      `json:"late_events,omitempty"`
	Probe      *ProbeInfo `json:"probe,omitempty"`
	// TwoHosts is a run across two hosts' (run --agent): the clock
	// estimate and the one-way times per direction.
	TwoHosts *TwoHosts `json:"two_hosts,omitempty"`
	// TraceSampling is a time-sampled watch's (watch --trace-share): the
	// probe recorded in windows, and every count and rate above is of
	// the round trips wholly inside them.
	TraceSampling *TraceSampling `json:"trace_sampling,omitempty"`
	// PayloadCapture is a watch's payload capture, when it loaded.
	PayloadCapture *PayloadCapture `json:"payload_capture,omitempty"`
	Errors         []string        `json:"errors"`
	// Warnings are the run's own checks that failed (validity, client
	// saturation, other tracers on our hooks, a large MSER-5 cut): the
	// numbers stand, but read them with the warning in mind.
	Warnings []string `json:"warnings"`
}

// Meta says what was measured, where and when.
type Meta struct {
	Kernel   string `json:"kernel"`
	CPUModel string `json:"cpu_model"`
	NCPU     int    `json:"ncpu"`
	Server   string `json:"server"`
	Clients  int    `json:"clients"`
	// RateRPS is the open loop's offered rate (--rate), round trips per
	// second in all; 0 for a closed loop.
	RateRPS float64 `json:"rate_rps,omitempty"`
	Proto   string  `json:"proto"`
	Size    int     `json:"size_bytes,omitempty"` // echo payload, or redis/memcache value
	// Workload is what each request asks beyond Proto (the HTTP GET, the
	// GET/SET mix), from loadgen.Options.Workload; empty for ping-pong
	// and echo.
	Workload   string `json:"workload,omitempty"`
	ClientCPUs []int  `json:"client_cpus"`
	ServerCPUs []int  `json:"server_cpus"`
	ServerSpin int64  `json:"server_spin_ns,omitempty"`
	Network    string `json:"network,omitempty"` // how client and server were joined when not by loopback (--netns)
	// What makes a comparison reproducible across machines and kernels:
	// each CPU vulnerability and its mitigation as the kernel reports it
	// (/sys/devices/system/cpu/vulnerabilities), the cpufreq governor of
	// CPU 0 ("" where none is exposed, as in most VMs), and the io_uring
	// features this kernel offers the built-in servers.
	Vulnerabilities map[string]string `json:"cpu_vulnerabilities,omitempty"`
	Governor        string            `json:"cpufreq_governor,omitempty"`
	IOUring         string            `json:"io_uring,omitempty"`
	ProbeMode       string            `json:"probe_mode"`
	Hooks           map[string]string `json:"hooks"`
	StartedAt       time.Time         `json:"started_at"`
	Version         string            `json:"volleyscope_version"`

	// Virtualization is what the run's machine ran on (Virtualization):
	// "qemu-tcg" marks software emulation, whose timings are not the
	// hardware's; a hypervisor's name; "" where none shows.
	Virtualization string `json:"virtualization,omitempty"`
	ClockSource    string `json:"clock_source,omitempty"` // the kernel's clock source: what every timestamp is read from
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
	P50CILow  float64 `json:"p50_ci_low"`
	P50CIHigh float64 `json:"p50_ci_high"`
	P99       float64 `json:"p99"`
	P99CILow  float64 `json:"p99_ci_low"`
	P99CIHigh float64 `json:"p99_ci_high"`
	P999      float64 `json:"p999"`
	P9999     float64 `json:"p9999"`
	Max       float64 `json:"max"`
}

// TraceSampling says how a watch sampled its tracing in time.
type TraceSampling struct {
	// Share is the share of the time asked to be traced (--trace-share).
	Share float64 `json:"share"`
	// OnSeconds and OffSeconds are each window's length and each gap's.
	OnSeconds  float64 `json:"on_seconds"`
	OffSeconds float64 `json:"off_seconds"`
	// MarginSeconds is the start of each window whose round trips are
	// left out (a round trip there may have lost events to the switch).
	MarginSeconds float64 `json:"margin_seconds"`
	Windows       int     `json:"windows"`
	// TracedShare is the share of the measured window (after the
	// warm-up) that was traced, as the switches fell.
	TracedShare float64 `json:"traced_share"`
	// EdgeDropped counts the round trips left out because they began
	// before a window or in its margin, or ended after it.
	EdgeDropped int64 `json:"edge_dropped"`
	// ScaledThroughputRPS is the measured throughput divided by
	// TracedShare: an estimate of the traffic's whole rate, not measured.
	ScaledThroughputRPS float64 `json:"scaled_throughput_rps"`
}

// PayloadCapture says how a watch read its connections' first sends
// (or, server side, receives) to parse their protocol.
type PayloadCapture struct {
	// ReadsPerConnection is how many sends of each connection are read.
	ReadsPerConnection int `json:"reads_per_connection"`
	// AttachedShare is the share of the watch its hooks were attached:
	// they go off while every connection with an exchange under way has
	// had its reads, and come back for a connection that lacks them.
	AttachedShare float64 `json:"attached_share"`
	// Rests counts the times they went off.
	Rests int `json:"rests"`
}

// RunInfo says how the run went: why it stopped, the measured window and
// what fell outside it, and whether the run's own checks held.
type RunInfo struct {
	StopReason string `json:"stop_reason"` // target, duration, unreachable, requests, interrupted, error
	// Limiting is the target that held the run up longest (p50 or p99).
	Limiting       string `json:"limiting_target,omitempty"`
	TimeToTargetNs int64  `json:"time_to_target_ns"` // measured time until every target held; 0 if never
	// TargetNeedsNs, when the targets did not all hold, is about how much
	// measured time the limiting one would need at the spread this run saw.
	TargetNeedsNs  int64   `json:"target_needs_ns,omitempty"`
	P50CITarget    float64 `json:"p50_ci_target"` // relative half-width asked of the p50's interval (≤ 0: none)
	P50CIAchieved  float64 `json:"p50_ci_achieved"`
	P99CITarget    float64 `json:"p99_ci_target"`
	P99CIAchieved  float64 `json:"p99_ci_achieved"`
	MeanCIAchieved float64 `json:"mean_ci_achieved"`
	Batches        int     `json:"batches"`    // batches behind the mean's interval
	BatchSize      int     `json:"batch_size"` // round trips per batch
	// The measured window, CLOCK_MONOTONIC ns: a round trip is measured
	// when window_start_ns ≤ t0 < window_end_ns.
	FirstT0Ns      int64              `json:"first_t0_ns"`
	WindowStartNs  int64              `json:"window_start_ns"`
	WindowEndNs    int64              `json:"window_end_ns"`
	WarmupNs       int64              `json:"warmup_ns"`
	Outside        int64              `json:"outside_window"`  // round trips outside the window (warm-up, MSER-5 cut, begun after the stop)
	MSERDiscarded  int                `json:"mser5_discarded"` // of those, cut by MSER-5 after the time warm-up
	MSEROff        bool               `json:"mser5_off,omitempty"`
	WarmupIncluded bool               `json:"warmup_included,omitempty"` // ended during warm-up: warm-up round trips are summarized
	MeasuredNs     int64              `json:"measured_ns"`
	OvershootNs    int64              `json:"overshoot_ns"` // wall time past the duration cap, finishing round trips in flight
	Validity       RunValidity        `json:"validity"`
	ClientLoad     loadgen.ClientLoad `json:"client_load"`
	// Setup is the connection set-up: how many, how fast (the SXE
	// figures: connections/s and the time to connect them all), failures
	// by reason, and the client model.
	Setup loadgen.SetupStats `json:"setup"`
	// LoadHosts, for a run whose clients ran on load agents
	// (--load-agent), is each host's part: its connections, round trips,
	// set-up and client load, with Saturated set where that host's client
	// may limit the measurement. ClientLoad is then not known: each
	// host's saturation is its own.
	LoadHosts []LoadHost `json:"load_hosts,omitempty"`
}

// LoadHost is one load host's part of a run, as results.json reports it.
type LoadHost struct {
	loadgen.HostLoad
	Saturated bool `json:"client_saturated"`
}

// RunValidity is the batches' statistical validity and, across two
// hosts, whether the one-way times held within the clock estimate's
// uncertainty (OneWayHeld; false: see TwoHosts and the warnings).
type RunValidity struct {
	stats.Validity
	OneWayHeld *bool `json:"one_way_times_held,omitempty"`
}

// Component is one part of the round trip, summarized over the joined
// round trips (breakdown.Names gives the order).
type Component struct {
	Component string  `json:"component"`
	Side      string  `json:"side"`
	MeanNs    float64 `json:"mean_ns"`
	P50Ns     float64 `json:"p50_ns"`
	P99Ns     float64 `json:"p99_ns"`
	Share     float64 `json:"share"` // of the mean round trip
}

// Band is the breakdown of the joined round trips whose latency falls in
// one band of the latency distribution.
type Band struct {
	Band string `json:"band"` // le_p50, p50_p90, p90_p99 or gt_p99
	// LatencyLowNs and LatencyHighNs bound the band's latencies, to the
	// resolution of the buckets the band was merged from (6.25%).
	LatencyLowNs  int64      `json:"latency_low_ns"`
	LatencyHighNs int64      `json:"latency_high_ns"`
	Count         int64      `json:"count"`
	MeanLatencyNs float64    `json:"mean_latency_ns"`
	Components    []BandPart `json:"components"`
}

// BandPart is one component's mean over a band's round trips, and its
// share of their mean latency.
type BandPart struct {
	Component string  `json:"component"`
	MeanNs    float64 `json:"mean_ns"`
	Share     float64 `json:"share"`
}

// SlowTrip is one of the slowest round trips.
type SlowTrip struct {
	Conn      int   `json:"conn"`
	Seq       int   `json:"seq"`
	StartNs   int64 `json:"start_ns"` // t0, CLOCK_MONOTONIC
	LatencyNs int64 `json:"latency_ns"`
	// Components are the round trip's components in ns, in the order of
	// the breakdown.
	Components []TripPart `json:"components"`
	// Waits are the stretches in which a side was runnable but waited
	// for a CPU (woken, or preempted), in the order the join found them;
	// MoreWaits counts those beyond the first eight.
	Waits     []TripWait `json:"waits,omitempty"`
	MoreWaits int        `json:"more_waits,omitempty"`
	// Interrupts name what took the *_irq components' time, per side,
	// longest first within a side.
	Interrupts []TripIrq `json:"interrupts,omitempty"`
}

// TripIrq is time that interrupts of one kind took from a side in a slow
// round trip.
type TripIrq struct {
	Component string `json:"component"` // client_irq or server_irq
	Side      string `json:"side"`
	// Interrupt is "softirq NET_RX" (a softirq vector), "irq 41
	// virtio3-rx" (a hard IRQ, its number and handlers) or "others"
	// (kinds beyond the first four).
	Interrupt string `json:"interrupt"`
	Ns        int64  `json:"ns"`
}

// TripWait is one wait for a CPU in a slow round trip, and the tasks that
// held that CPU meanwhile.
type TripWait struct {
	Component string `json:"component"` // the component it was charged to: *_wakeup or *_preempted
	Side      string `json:"side"`
	TID       uint32 `json:"tid"`
	FromNs    int64  `json:"from_ns"` // after t0
	Ns        int64  `json:"ns"`
	// Named is true when the probe kept who held the CPU; it keeps the
	// newest waits in which the CPU was not idle.
	Named   bool         `json:"named"`
	CPU     int          `json:"cpu,omitempty"`
	Holders []TripHolder `json:"holders,omitempty"`
	OtherNs int64        `json:"other_ns,omitempty"` // held by tasks beyond the first four
}

// TripHolder is a task that held the CPU a side waited for.
type TripHolder struct {
	Comm string `json:"comm"`
	PID  uint32 `json:"pid,omitempty"` // thread group; absent when the hook could not tell
	TID  uint32 `json:"tid"`
	Ns   int64  `json:"ns"`
}

// SlowWhere counts, per connection and per server thread (the thread
// that received the request), the round trips slower than the p99 of the
// joined round trips before them (a running estimate, recomputed every
// 1024 round trips; the first 1024 are not judged). The five with most
// each, most first.
type SlowWhere struct {
	Slow           int64       `json:"slow"`
	ByConn         []SlowCount `json:"by_conn"`
	ByServerThread []SlowCount `json:"by_server_thread"`
}

// SlowCount is one connection's or server thread's slow round trips out
// of its joined ones.
type SlowCount struct {
	ID    int64 `json:"id"` // connection id, or server thread id
	Slow  int64 `json:"slow"`
	Total int64 `json:"total"`
}

// TripPart is one component of one round trip.
type TripPart struct {
	Component string `json:"component"`
	Ns        int64  `json:"ns"`
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
	// Log2 is the distribution in power-of-two buckets of nanoseconds.
	Log2 []stats.Log2Bucket `json:"log2_ns,omitempty"`
}

// UringOp is the submit-to-first-completion latency of one io_uring
// opcode, from the io_uring tracepoints.
type UringOp struct {
	Opcode uint64  `json:"opcode"`
	Name   string  `json:"name"`
	Count  int64   `json:"count"`
	P50Ns  float64 `json:"p50_ns"`
	P99Ns  float64 `json:"p99_ns"`
	MaxNs  float64 `json:"max_ns"`
	// Extra counts the completions after the first of a request
	// (multishot accept and recv), which have no latency of their own.
	Extra int64 `json:"further_completions"`
}

// ProbeInfo describes the probe's own cost and coverage.
type ProbeInfo struct {
	Events       uint64  `json:"events"`         // records received
	EventsPerRTT float64 `json:"events_per_rtt"` // records per round trip
	// EventsPerRTTByKind splits events_per_rtt by the records' kind, as
	// the rings hold them (a folded record, such as send_xmit, as one).
	EventsPerRTTByKind map[string]float64 `json:"events_per_rtt_by_kind,omitempty"`
	ProgramRunsPerRTT  float64            `json:"program_runs_per_rtt"` // BPF program runs per round trip, machine-wide, measured during the warm-up (most return after one lookup)
	BPFNsPerEvent      float64            `json:"bpf_ns_per_event"`     // mean BPF run time per program run (BPF_ENABLE_STATS)
	OverheadNsPerRT    float64            `json:"overhead_ns_per_rtt"`  // program runs per round trip × ns per run: the probe's own estimate of its cost
	// Programs splits overhead_ns_per_rtt by program (those that ran),
	// over the same warm-up, so that a cost is traced to its hook.
	Programs []ProgramCost `json:"programs,omitempty"`
	// The observer's threads: CPU time of the ring reader and of the join
	// (its flush after the load left out); their share of the client CPUs
	// over the run; and the whole observer per round trip (their CPU over
	// every round trip completed, plus overhead_ns_per_rtt). Absent for a
	// recording.
	ReaderCPUNs      int64   `json:"reader_cpu_ns,omitempty"`
	JoinCPUNs        int64   `json:"join_cpu_ns,omitempty"`
	ObserverCPUShare float64 `json:"observer_cpu_share,omitempty"`
	ObserverNsPerRTT float64 `json:"observer_ns_per_rtt,omitempty"`
	// OthersCPUShare is the largest share of one client CPU that
	// processes other than the run's (volleyscope's and its server's)
	// used over a stretch of a run (a few tenths of a second; absent:
	// none, or not measured).
	OthersCPUShare float64 `json:"others_cpu_share,omitempty"`
	// Sample, when the probe followed a sample of the connections (many
	// connections: the observer kept off the clients' CPU): the breakdown
	// and its check are of the followed connections' round trips; the
	// latency and throughput are of every round trip.
	Sample   *ConnSample       `json:"connection_sample,omitempty"`
	Missing  map[string]string `json:"missing,omitempty"` // event → why, and what it costs
	Ring     string            `json:"ring,omitempty"`    // where records went: per-CPU rings or the BPF ring buffer (and why)
	Syscalls bool              `json:"syscalls"`          // the syscall hooks were on (--syscalls)
}

// ProgramCost is one BPF program's share of the probe's cost: its runs
// and its run time per round trip, machine-wide, over the warm-up.
type ProgramCost struct {
	Program    string  `json:"program"`
	RunsPerRTT float64 `json:"runs_per_rtt"`
	NsPerRTT   float64 `json:"ns_per_rtt"`
}

// ConnSample is the probe's sample of the connections.
type ConnSample struct {
	OneIn       uint32 `json:"one_in"`      // about one connection in this many, by a hash of its client port
	Followed    int    `json:"followed"`    // connections followed
	Connections int    `json:"connections"` // connections in all
}

// ResultsSchema is the version of the results.json layout that WriteJSON
// writes and ReadJSON reads. It changes only when a field changes meaning
// or is removed; added fields keep it.
const ResultsSchema = 1

// WriteJSON writes r as indented JSON, stamped with ResultsSchema.
func WriteJSON(w io.Writer, r *Results) error {
	c := *r
	c.Schema = ResultsSchema
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil {
		return fmt.Errorf("write results json: %w", err)
	}
	return nil
}

// ErrNotResults is returned by ReadJSON for a file that is not a
// results.json written by volleyscope.
var ErrNotResults = errors.New("not a volleyscope results.json")

// ReadJSON reads a results.json file and checks that it is one: a JSON
// object with the meta, latency_ns and run sections, and a schema no newer
// than ResultsSchema (files written before schemas existed have none and
// are read as schema 0).
func ReadJSON(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var sections map[string]json.RawMessage
	if err := json.Unmarshal(b, &sections); err != nil {
		return nil, fmt.Errorf("read results %s: %w: %w", path, ErrNotResults, err)
	}
	for _, k := range []string{"meta", "latency_ns", "run"} {
		if _, ok := sections[k]; !ok {
			return nil, fmt.Errorf("read results %s: %w: no %q section", path, ErrNotResults, k)
		}
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read results %s: %w: %w", path, ErrNotResults, err)
	}
	if r.Schema > ResultsSchema {
		return nil, fmt.Errorf("read results %s: schema %d is newer than this volleyscope reads (%d): use a newer volleyscope", path, r.Schema, ResultsSchema)
	}
	return &r, nil
}

// MetaOf fills the fields of Meta that describe the machine h, and this
// volleyscope's version.
func MetaOf(h hostinfo.Host) Meta {
	return Meta{
		Kernel: h.Kernel, CPUModel: h.CPUModel, NCPU: h.NCPU, Vulnerabilities: h.Vulnerabilities,
		Governor: h.Governor, Virtualization: h.Virtualization, ClockSource: h.ClockSource,
		Hooks: map[string]string{}, ProbeMode: "none", StartedAt: time.Now().UTC(), Version: version.String(),
	}
}

// MissedRecords is how many of the probe's records the run says it did
// not use in time: lost to a full ring, or come after their round trips
// were joined. Each can cost one round trip its split.
func (r *Results) MissedRecords() int64 { return int64(r.LostEvents) + r.LateEvents }
