// Package clocksync estimates how another host's CLOCK_MONOTONIC runs
// against ours, from the traffic between the two, and maps its times
// onto our clock with an honest interval.
//
// Host A is the controller (its clock is the one the join uses), host B
// an agent. θ(t) is B's clock minus A's at A-time t. Anything sent at
// A-time s and received at B-time r gives u = r − s = d_AB + θ ≥ θ; the
// other way, v = d_BA − θ ≥ −θ. With no assumption that the paths are
// symmetric, θ lies in [−v, u] for every such pair: the least u and the
// least v near t bound θ(t) from above and below (the lower envelope of
// the one-way times, as in NTP's filters and Huygens). θ is not a
// constant: server clocks drift apart by microseconds per second, and
// NTP slews them (the rate changes; CLOCK_MONOTONIC never steps), so the
// Estimator fits the drift locally and carries each bound along it.
//
// Samples come from two places: the run's own TCP data segments, seen
// leave one host (net_dev_start_xmit) and arrive at the other
// (netif_receive_skb), paired by the Matcher from the probes' events; and
// a light exchange of pings on the control connection (AddExchange).
//
// Everything here is pure computation on integers of nanoseconds; nothing
// reads a clock, so tests drive it with synthetic clocks.
package clocksync
