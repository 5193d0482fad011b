package breakdown

import (
	"fmt"
	"sort"

	"github.com/volleyscope/volleyscope/internal/stats"
	"github.com/volleyscope/volleyscope/probe"
)

// UringStat is the submit-to-completion latency of one io_uring
// operation.
type UringStat struct {
	Opcode uint64
	Name   string
	Count  int64 // operations whose submission and first completion were both seen
	P50Ns  float64
	P99Ns  float64
	MaxNs  float64
	// Extra counts completions with no submission waiting: the further
	// completions of a multishot request (accept, recv), each after the
	// first, or operations submitted before the probe attached.
	Extra int64
}

type uringKey struct {
	tgid     uint32
	userData uint64
}

type uringSub struct {
	ts     int64
	opcode uint64
}

// UringTable measures io_uring operations from the io_uring_submit_req
// and io_uring_complete events: the time from a request's submission to
// its first completion, per opcode, matched by process and user_data.
type UringTable struct {
	pending map[uringKey]uringSub
	h       map[uint64]*hdrHist
	extra   map[uint64]int64
	last    map[uringKey]uint64 // opcode of a completed request, for its further completions
}

// maxPending bounds the submissions waiting for a completion (a server
// that never completes some, e.g. cancelled ones).
const maxPending = 1 << 16

// NewUringTable starts an empty table.
func NewUringTable() *UringTable {
	return &UringTable{pending: map[uringKey]uringSub{}, h: map[uint64]*hdrHist{}, extra: map[uint64]int64{}, last: map[uringKey]uint64{}}
}

// Add takes one event, in time order.
func (t *UringTable) Add(e *probe.Event) {
	k := uringKey{e.TGID, e.Arg0}
	switch e.Kind {
	case probe.KindUringSubmit:
		if len(t.pending) < maxPending {
			t.pending[k] = uringSub{int64(e.TS), e.Arg1}
		}
	case probe.KindUringComplete:
		sub, ok := t.pending[k]
		if !ok {
			if op, seen := t.last[k]; seen {
				t.extra[op]++
			}
			return
		}
		delete(t.pending, k)
		if len(t.last) < maxPending {
			t.last[k] = sub.opcode
		}
		h := t.h[sub.opcode]
		if h == nil {
			h = newHdr()
			t.h[sub.opcode] = h
		}
		h.add(int64(e.TS) - sub.ts)
	}
}

// Stats summarizes the table per opcode, busiest first.
func (t *UringTable) Stats() []UringStat {
	var out []UringStat
	for op, h := range t.h {
		l := stats.Summarize(h.h)
		out = append(out, UringStat{Opcode: op, Name: UringOpName(op), Count: l.Count, P50Ns: l.P50, P99Ns: l.P99, MaxNs: l.Max, Extra: t.extra[op]})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Opcode < out[j].Opcode
	})
	return out
}

// UringOpName names an io_uring opcode (include/uapi/linux/io_uring.h).
func UringOpName(op uint64) string {
	if int(op) < len(uringOps) && uringOps[op] != "" {
		return uringOps[op]
	}
	return fmt.Sprintf("op_%d", op)
}

var uringOps = []string{
	"nop", "readv", "writev", "fsync", "read_fixed", "write_fixed", "poll_add", "poll_remove",
	"sync_file_range", "sendmsg", "recvmsg", "timeout", "timeout_remove", "accept", "async_cancel",
	"link_timeout", "connect", "fallocate", "openat", "close", "files_update", "statx", "read", "write",
	"fadvise", "madvise", "send", "recv", "openat2", "epoll_ctl", "splice", "provide_buffers",
	"remove_buffers", "tee", "shutdown", "renameat", "unlinkat", "mkdirat", "symlinkat", "linkat",
	"msg_ring", "fsetxattr", "setxattr", "fgetxattr", "getxattr", "socket", "uring_cmd", "send_zc",
	"sendmsg_zc",
}
