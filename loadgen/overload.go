package loadgen

import "fmt"

// MinAchievedShare is the share of an open loop's offered rate (Rate)
// that the measured window must achieve; below it the server or the
// client could not keep up, and the latencies measure a queue that grew
// for the whole run rather than the server's response to that rate.
const MinAchievedShare = 0.95

// Overload says, for an open-loop run whose measured window achieved
// under MinAchievedShare of the offered rate, what was offered and what
// was achieved; "" for a closed loop or a run that kept up. Every request
// waits for the one before it on its connection, so an overloaded open
// loop falls behind its schedule rather than sending faster: the
// throughput shows it directly.
func (res *Summary) Overload() string {
	rate := res.Options.Rate
	if rate <= 0 || res.Measured == 0 || res.Window.Span() <= 0 || res.ThroughputRPS >= MinAchievedShare*rate {
		return ""
	}
	return fmt.Sprintf("offered %s/s, achieved %s/s (%.0f%%): the server (or the client) is saturated, and the latencies are those of a queue that grew all run; lower --rate, or find the rate it sustains with 'volleyscope sweep'",
		Thousands(rate), Thousands(res.ThroughputRPS), 100*res.ThroughputRPS/rate)
}

// Thousands formats a rate as a whole number with thousands separated by
// commas: 15175.4 → "15,175".
func Thousands(x float64) string {
	s := fmt.Sprintf("%.0f", x)
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
