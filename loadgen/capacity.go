package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CapacityError is a load this machine cannot carry, found before
// anything starts. Option is the Options field to lower: "Clients" or
// "Size"; the message names the command-line flags.
type CapacityError struct {
	Option string
	Err    error
}

func (e *CapacityError) Error() string { return e.Err.Error() }
func (e *CapacityError) Unwrap() error { return e.Err }

// connOverhead is a floor on the memory a connection takes beyond its
// exchange's buffers: the client's state, the two sockets' kernel
// structures, a thread with the threads model. It is a floor, so that
// only a load that surely cannot fit is refused.
const connOverhead = 16 << 10

// BufferBytes is the memory one connection's exchange allocates for o
// (newExchange): its request, the expected reply and the receive
// buffer, the last grown to the largest reply of a framed protocol.
func (o Options) BufferBytes() int64 {
	size := int64(o.Size)
	if size <= 0 {
		size = DefaultSize
	}
	switch o.Proto {
	case Echo:
		return 3 * size
	case Line:
		return int64(len(o.Line.Request) + 2*len(o.Line.Expect))
	case HTTP:
		return 2 * 4096
	case Redis, Memcache:
		// A SET of a Size-byte value out, a GET's value back.
		return 2*size + 2*256 + 4096
	}
	return 12 // ping-pong: three 4-byte messages
}

// CheckCapacity refuses a load this machine cannot carry, before a server
// or a connection is started: buffers for every connection beyond the
// memory available (MemAvailable), a value larger than a reply may be,
// more connections than the open-file limit allows even raised to its
// hard limit (it raises the soft limit as Run would), or more
// connections to one address than the ephemeral port range has ports,
// or more connection threads than the client CPUs carry (CheckThreads).
func CheckCapacity(o Options) error {
	if err := o.CheckThreads(); err != nil {
		return &CapacityError{"Clients", err}
	}
	clients := max(o.Clients, 1)
	size := o.Size
	if size <= 0 {
		size = DefaultSize
	}
	if (o.Proto == Redis || o.Proto == Memcache) && size > maxReply-256 {
		return &CapacityError{"Size", fmt.Errorf("--size %d: a reply carrying the value would exceed the %d MiB a reply may have; use at most --size %d", size, maxReply>>20, maxReply-256)}
	}
	if avail, err := memAvailable(); err == nil {
		per := o.BufferBytes()
		if per > avail/2 {
			return &CapacityError{"Size", fmt.Errorf("--size %d: one connection's buffers need %s, and this machine has %s of memory available; use a smaller --size", size, bytesText(per), bytesText(avail))}
		}
		// In float64: a count and a size from a command line may
		// overflow an int64 product.
		need := float64(clients) * float64(per+connOverhead)
		if need > float64(avail)/2 {
			what := fmt.Sprintf("--clients %d", clients)
			if o.Proto == Echo || o.Proto == Redis || o.Proto == Memcache {
				what += fmt.Sprintf(" with --size %d", size)
			}
			return &CapacityError{"Clients", fmt.Errorf("%s: the connections need at least %s of memory, more than half of the %s available; use fewer --clients", what, bytesText(int64(min(need, 1<<62))), bytesText(avail))}
		}
	}
	if lo, hi, err := portRange(); err == nil && clients > hi-lo+1 {
		return &CapacityError{"Clients", fmt.Errorf("--clients %d: connections to one server address are limited by the ephemeral port range %d-%d (net.ipv4.ip_local_port_range) to %d; use fewer --clients", clients, lo, hi, hi-lo+1)}
	}
	if err := raiseNoFile(clients); err != nil {
		return &CapacityError{"Clients", err}
	}
	return nil
}

// memAvailable is the memory the kernel estimates can be allocated
// without swapping (MemAvailable, Linux 3.14), else the free memory.
func memAvailable() (int64, error) {
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
				f := strings.Fields(rest)
				if len(f) == 2 && f[1] == "kB" {
					if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
						return kb << 10, nil
					}
				}
			}
		}
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, fmt.Errorf("read the available memory: %w", err)
	}
	return int64(si.Freeram) * int64(si.Unit), nil
}

// portRange reads the ephemeral port range a connect picks its local
// port from.
func portRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("ip_local_port_range %q: want two numbers", b)
	}
	if lo, err = strconv.Atoi(f[0]); err == nil {
		hi, err = strconv.Atoi(f[1])
	}
	if err == nil && hi < lo {
		err = fmt.Errorf("ip_local_port_range %q: empty", b)
	}
	return lo, hi, err
}

// bytesText writes a byte count in binary units.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, u := float64(n), 0
	for v >= unit && u < 6 {
		v /= unit
		u++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[u-1])
}
