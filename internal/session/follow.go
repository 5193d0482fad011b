package session

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/volleyscope/volleyscope/internal/serverproc"
)

// newHolders lists the processes holding the server's listening socket
// or a connection accepted from it that are not among s.pids yet. A
// server that forked its workers before the probe attached (nginx's
// master and workers, a pre-forking server) has workers that descend from
// no fork the probe saw: following only the process that was started or
// found first would join none of their round trips. The sockets are
// looked up in the server's own network namespace (--netns) through its
// /proc/PID/net.
func (s *serverStage) newHolders() []int {
	if s.port == 0 {
		return nil
	}
	nsPID := 0
	if s.pair != nil && s.proc != nil {
		nsPID = s.proc.PID()
	}
	holders, _ := serverproc.Holders(nsPID, s.port)
	var fresh []int
	for _, p := range holders {
		if !slices.Contains(s.pids, p) {
			fresh = append(fresh, p)
		}
	}
	return fresh
}

// followLateWorkers looks for the server's processes again once the
// clients are connected: a worker that holds only the connections it
// accepted (the listener closed in it, or passed to it) shows only now.
// The probe follows them, and the server's cost counts them.
func (p *pipeline) followLateWorkers() error {
	fresh := p.server.newHolders()
	if len(fresh) == 0 {
		return nil
	}
	if err := p.source.FollowProcesses(fresh); err != nil {
		return err
	}
	p.server.pids = append(p.server.pids, fresh...)
	p.cost.add(fresh)
	p.cb.note("server processes followed once the clients connected: " + pidList(fresh))
	return nil
}

// pidText is "pid 12" or "pids 12, 13 and 14".
func pidText(pids []int) string {
	if len(pids) == 1 {
		return fmt.Sprintf("pid %d", pids[0])
	}
	return "pids " + pidList(pids)
}

// pidList is pids as "1, 2 and 3" for a note, the first few of many
// (a server that forks per connection) with how many more.
func pidList(pids []int) string {
	const most = 8
	var s []string
	for i, p := range pids {
		if i == most {
			s = append(s, fmt.Sprintf("%d more", len(pids)-most))
			break
		}
		s = append(s, strconv.Itoa(p))
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}
