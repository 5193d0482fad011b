package serverproc

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ListeningPorts lists the TCP ports pid listens on (its own sockets, in
// its network namespace), for a server followed by its pid alone.
func ListeningPorts(pid int) ([]uint16, error) {
	mine, err := socketInodes(pid, "ports")
	if err != nil {
		return nil, err
	}
	var ports []uint16
	for _, f := range []string{"tcp", "tcp6"} {
		file, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) <= 9 || fs[3] != "0A" || !mine[fs[9]] {
				continue
			}
			_, hex, _ := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hex, 16, 16); err == nil && !slices.Contains(ports, uint16(p)) {
				ports = append(ports, uint16(p))
			}
		}
		file.Close()
	}
	slices.Sort(ports)
	return ports, nil
}

// socketInodes is the inodes of the sockets pid holds (its /proc/PID/fd
// links "socket:[N]"); what names the search in errors.
func socketInodes(pid int, what string) (map[string]bool, error) {
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil || len(fds) == 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			return nil, fmt.Errorf("find the %s of pid %d: no such process", what, pid)
		}
		return nil, fmt.Errorf("find the %s of pid %d: its file descriptors are not readable; run as root", what, pid)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	return mine, nil
}
