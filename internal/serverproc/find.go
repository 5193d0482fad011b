package serverproc

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Find finds the process listening on addr's port, for a server that
// volleyscope did not start: the listening socket's inode from
// /proc/net/tcp and /proc/net/tcp6, then the process holding that inode
// among the links in /proc/*/fd.
func Find(addr string) (pid int, port uint16, err error) {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, 0, fmt.Errorf("find server at %q: %w; give HOST:PORT", addr, err)
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p <= 0 || p > 65535 {
		return 0, 0, fmt.Errorf("find server at %q: port %q is not in 1-65535", addr, ps)
	}
	port = uint16(p)
	inode := ""
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if inode = listenInode(f, port); inode != "" {
			break
		}
	}
	if inode == "" {
		return 0, port, fmt.Errorf("find server at %s: nothing listens on port %d; start the server first", addr, port)
	}
	want := "socket:[" + inode + "]"
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && l == want {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid, port, nil
		}
	}
	return 0, port, fmt.Errorf("find server at %s: no process visible to us holds its socket; run as root, in the server's PID namespace", addr)
}

// listenInode returns the inode of the socket listening on port in a
// /proc/net/tcp-format file, or "".
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
