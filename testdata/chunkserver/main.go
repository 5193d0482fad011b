// Command chunkserver is an echo server for the breakdown's multi-part
// tests: for each connection, on a thread of its own with blocking I/O, it
// reads exactly -size bytes, then writes them back in writes of -chunk
// bytes, spinning -spin of its thread's CPU time between two writes (so a
// reply in n parts costs (n−1) × spin of CPU, however long preemption
// stretches it in wall time). TCP_NODELAY is set, so that every part is
// sent when written.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	port := flag.Int("p", 0, "port to listen on, on 127.0.0.1")
	size := flag.Int("size", 65536, "request and reply size, bytes")
	chunk := flag.Int("chunk", 65536, "bytes per write of the reply")
	spin := flag.Duration("spin", 0, "thread CPU time spun between two writes of a reply")
	flag.Parse()
	if *size <= 0 || *chunk <= 0 || *spin < 0 {
		fmt.Fprintln(os.Stderr, "chunkserver: -size and -chunk must be positive, -spin not negative")
		os.Exit(2)
	}
	ln, err := listen(*port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "chunkserver: listen on 127.0.0.1:%d: %v\n", *port, err)
		os.Exit(1)
	}
	for {
		fd, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err == unix.EINTR || err == unix.ECONNABORTED {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "chunkserver: accept: %v\n", err)
			os.Exit(1)
		}
		go serve(fd, *size, *chunk, *spin)
	}
}

// listen opens a blocking listening socket on 127.0.0.1:port.
func listen(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return -1, err
	}
	return fd, unix.Listen(fd, 128)
}

// serve echoes requests of size bytes on fd until the client closes it.
func serve(fd, size, chunk int, spin time.Duration) {
	runtime.LockOSThread()
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return
	}
	buf := make([]byte, size)
	for {
		for n := 0; n < size; {
			m, err := unix.Read(fd, buf[n:])
			if err == unix.EINTR {
				continue
			}
			if err != nil || m <= 0 {
				return
			}
			n += m
		}
		for off := 0; off < size; {
			if off > 0 {
				spinCPU(spin)
			}
			end := min(off+chunk, size)
			for off < end {
				m, err := unix.Write(fd, buf[off:end])
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					return
				}
				off += m
			}
		}
	}
}

// spinCPU busy-waits until this thread has run for d more CPU time.
func spinCPU(d time.Duration) {
	if d <= 0 {
		return
	}
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	end := ts.Nano() + d.Nanoseconds()
	for ts.Nano() < end {
		_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	}
}
