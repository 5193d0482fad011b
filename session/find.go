package session

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// findServer finds the process listening on addr's port, so the probe can
// follow a server it did not start: the listening socket's inode from
// /proc/net/tcp{,6}, then the process holding it from /proc/*/fd.
func findServer(addr string) (pid int, port uint16, err error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, 0, fmt.Errorf("--addr %q: %w", addr, err)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p <= 0 || p > 65535 {
		return 0, 0, fmt.Errorf("--addr %q: bad port", addr)
	}
	port = uint16(p)
	inode := ""
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if inode = listenInode(f, port); inode != "" {
			break
		}
	}
	if inode == "" {
		return 0, port, fmt.Errorf("find server at %s: nothing listens on port %d", addr, port)
	}
	want := "socket:[" + inode + "]"
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if l, err := os.Readlink(fd); err == nil && l == want {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid, port, nil
		}
	}
	return 0, port, fmt.Errorf("find server at %s: no process of ours holds its socket (is it in another namespace? run as root)", addr)
}

func listenInode(path string, port uint16) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	hexPort := fmt.Sprintf(":%04X", port)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// sl local_address rem_address st ... inode: state 0A is LISTEN.
		if len(fs) > 9 && strings.HasSuffix(fs[1], hexPort) && fs[3] == "0A" {
			return fs[9]
		}
	}
	return ""
}
