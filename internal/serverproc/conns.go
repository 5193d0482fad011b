package serverproc

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Conn is one established TCP connection that a process holds.
type Conn struct {
	Local, Remote netip.AddrPort // IPv4-mapped addresses unmapped
	// PeerHere: the other end's socket is in the same network namespace
	// (its local and remote are this one's remote and local): the peer
	// runs on this host, in reach of the probe as one of its processes.
	PeerHere bool
}

// Connections lists the established TCP connections pid opened: its
// sockets in /proc/PID/fd that /proc/PID/net/tcp and tcp6 show in state
// ESTABLISHED, less those whose local port is one it listens on (the
// connections it accepted as a server). A client followed by its pid
// alone is found talking to its server this way.
func Connections(pid int) ([]Conn, error) {
	mine, err := socketInodes(pid, "connections")
	if err != nil {
		return nil, err
	}
	type sock struct {
		local, remote netip.AddrPort
		state, inode  string
	}
	var all []sock
	for _, f := range []string{"tcp", "tcp6"} {
		file, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) <= 9 {
				continue
			}
			l, err1 := procAddr(fs[1])
			r, err2 := procAddr(fs[2])
			if err1 != nil || err2 != nil {
				continue // the header line
			}
			all = append(all, sock{l, r, fs[3], fs[9]})
		}
		file.Close()
	}
	listens := map[uint16]bool{}
	for _, s := range all {
		if s.state == "0A" && mine[s.inode] {
			listens[s.local.Port()] = true
		}
	}
	var out []Conn
	for _, s := range all {
		if s.state != "01" || !mine[s.inode] || listens[s.local.Port()] {
			continue
		}
		c := Conn{Local: s.local, Remote: s.remote}
		for _, p := range all {
			if p.local == s.remote && p.remote == s.local {
				c.PeerHere = true
				break
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// procAddr reads an address of /proc/net/tcp or tcp6: the address in hex
// as the kernel's 32-bit words lie in memory (each word in host order,
// little-endian here), a colon, the port in hex.
func procAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(a)
	if !ok || err != nil || (len(b) != 4 && len(b) != 16) || len(p) != 4 {
		return netip.AddrPort{}, fmt.Errorf("address %q: not /proc/net/tcp's", s)
	}
	pb, err := hex.DecodeString(p)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	for i := 0; i < len(b); i += 4 { // each word to network order
		binary.BigEndian.PutUint32(b[i:], binary.LittleEndian.Uint32(b[i:]))
	}
	ip, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(ip.Unmap(), binary.BigEndian.Uint16(pb)), nil
}
