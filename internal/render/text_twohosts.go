package render

import (
	"fmt"
	"io"
	"strings"

	"github.com/volleyscope/volleyscope/internal/report"
)

// WriteTwoHosts prints what a run across two hosts adds to the
// breakdown: the server's host, the clock estimate, and the one-way
// times per direction with the estimate's uncertainty.
func WriteTwoHosts(w io.Writer, th *report.TwoHosts) error {
	var b strings.Builder
	h := th.ServerHost
	fmt.Fprintf(&b, "server host (agent %s): kernel %s, %d × %s", th.Agent, h.Kernel, h.NCPU, h.CPUModel)
	if h.ClockSource != "" {
		fmt.Fprintf(&b, ", clock source %s", h.ClockSource)
	}
	b.WriteString("\n")
	c := th.Clock
	fmt.Fprintf(&b, "clock estimate (agent − here): offset %s at the start, %s at the end; drift %+.1f µs/s (local fits %+.1f to %+.1f); ± %s (median; worst ± %s); from %d + %d one-way samples, %d of them pings\n",
		signedDur(c.OffsetFirstNs), signedDur(c.OffsetLastNs), c.DriftNsPerS/1e3, c.DriftMinNsPerS/1e3, c.DriftMaxNsPerS/1e3,
		report.Dur(float64(c.HalfWidthMedianNs)), report.Dur(float64(c.HalfWidthMaxNs)), c.SamplesAB, c.SamplesBA, c.Pings)
	for _, d := range []struct {
		name string
		o    report.OneWay
	}{{"client → server", th.Request}, {"server → client", th.Reply}} {
		fmt.Fprintf(&b, "one-way %s: mean %s ± %s (min %s)", d.name, report.Dur(d.o.MeanNs), report.Dur(float64(d.o.UncertaintyNs)), report.Dur(float64(d.o.MinNs)))
		if d.o.Negative > 0 {
			fmt.Fprintf(&b, "; %d of %d negative beyond the uncertainty", d.o.Negative, d.o.Checked)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "network round trip (client_net + server_net, offset-free): mean %s\n", report.Dur(th.NetRTTNs))
	if th.AgentEvents > 0 {
		fmt.Fprintf(&b, "agent cost: %s of CPU per event sent, %.0f bytes on the wire per round trip (%d events, %d bytes)\n",
			report.Dur(th.AgentNsPerEvent), th.BytesPerRTT, th.AgentEvents, th.AgentBytes)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// signedDur is an offset, with its sign: to the µs, whatever its size
// (an offset of seconds is known to a few µs).
func signedDur(ns int64) string {
	if a := max(ns, -ns); a >= 1e6 {
		return fmt.Sprintf("%+.6f s", float64(ns)/1e9)
	}
	if ns < 0 {
		return "−" + report.Dur(float64(-ns))
	}
	return "+" + report.Dur(float64(ns))
}
