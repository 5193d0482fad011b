package serverproc

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Find finds the process listening on addr's port, for a server that
// volleyscope did not start: of the processes FindAll lists, the first
// whose parent is not among them (nginx's master, not a worker).
func Find(addr string) (pid int, port uint16, err error) {
	pids, port, err := FindAll(addr)
	if err != nil {
		return 0, port, err
	}
	return pids[0], port, nil
}

// FindAll lists every process that holds the socket listening on addr's
// port or a connection accepted from it, for a server that volleyscope did
// not start: the sockets' inodes come from /proc/net/tcp and tcp6, their
// holders from the links in /proc/*/fd. A server that forked its workers
// before we looked (nginx's master and workers, a pre-forking server) has
// them all here, where the process tree of the listener's holder would
// miss none but also name no worker that holds only accepted connections
// after its parent closed the listener. The processes come in order: ones
// whose parent is not listed first, then by pid.
func FindAll(addr string) (pids []int, port uint16, err error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, fmt.Errorf("find server at %q: %w; give HOST:PORT", addr, err)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p <= 0 || p > 65535 {
		return nil, 0, fmt.Errorf("find server at %q: port %q is not in 1-65535", addr, ps)
	}
	port = uint16(p)
	pids, listening := Holders(0, port)
	if !listening {
		return nil, port, fmt.Errorf("find server at %s: nothing listens on port %d; start the server first", addr, port)
	}
	if len(pids) == 0 {
		return nil, port, fmt.Errorf("find server at %s: no process visible to us holds its socket; run as root, in the server's PID namespace", addr)
	}
	return pids, port, nil
}

// Holders lists the processes holding a socket of port's server side: the
// listening socket, or a connection whose local port is port (one the
// server accepted). The sockets are those of the network namespace of
// process nsPID (0: ours), so that a server in a namespace of its own is
// seen through its own /proc/PID/net. listening says whether anything
// listens on port there. The order is FindAll's.
func Holders(nsPID int, port uint16) (pids []int, listening bool) {
	dir := "/proc/net"
	if nsPID > 0 {
		dir = fmt.Sprintf("/proc/%d/net", nsPID)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"tcp", "tcp6"} {
		if serverInodes(filepath.Join(dir, f), port, inodes) {
			listening = true
		}
	}
	if len(inodes) == 0 {
		return nil, listening
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	seen := map[int]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(l, "socket:[") || !inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
			continue
		}
		pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
		if pid > 0 && !seen[pid] {
			seen[pid] = true
			pids = append(pids, pid)
		}
	}
	return rootsFirst(pids), listening
}

// rootsFirst orders pids: those whose parent is not among them first,
// then the rest, each group by pid.
func rootsFirst(pids []int) []int {
	slices.Sort(pids)
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	var roots, rest []int
	for _, p := range pids {
		if in[parentPID(p)] {
			rest = append(rest, p)
		} else {
			roots = append(roots, p)
		}
	}
	return append(roots, rest...)
}

// parentPID is pid's parent from /proc/PID/stat, or 0.
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// serverInodes adds to inodes those of the sockets in a /proc/net/tcp-
// format file whose local port is port: the listener (state 0A) and the
// connections it accepted (any other state; a client of ours has an
// ephemeral local port, so it is not among them). It reports whether one
// of them listens.
func serverInodes(path string, port uint16, inodes map[string]bool) (listening bool) {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	hexPort := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fs := strings.Fields(sc.Text())
		if len(fs) <= 9 || !strings.HasSuffix(fs[1], hexPort) || fs[9] == "0" {
			continue // inode 0: a TIME_WAIT socket, held by no one
		}
		inodes[fs[9]] = true
		if fs[3] == "0A" {
			listening = true
		}
	}
	return listening
}
