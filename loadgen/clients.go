package loadgen

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
)

// clientSet is every connection of a run and the threads that drive them,
// from connect to close. Run sees it through a few calls: begin releases
// the first requests, halt asks every client to stop after its round trip
// in flight, done says when they have, close releases the sockets.
type clientSet struct {
	conns []*client // index = connection id

	stop   atomic.Bool
	start  chan struct{}
	fin    chan struct{} // closed when every client loop returned
	wg     sync.WaitGroup
	begun  sync.Once
	closed sync.Once
	procs  int // GOMAXPROCS to restore at close, 0: unchanged
}

// startClients connects opts.Clients connections to addr and pins their
// threads. It returns when every connection is up and before any request
// is sent; on error everything it opened is closed again.
func startClients(ctx context.Context, opts *Options, addr *net.TCPAddr) (*clientSet, error) {
	s := &clientSet{
		conns: make([]*client, opts.Clients),
		start: make(chan struct{}),
		fin:   make(chan struct{}),
	}
	// Each client thread gives up its P while blocked in read; when the
	// reply arrives it must get a P back before it can take its timestamp.
	// With fewer Ps than busy threads it parks on a futex for that
	// (measured: stalls of up to 258 ms with 2 Ps), so keep a P free for
	// every client on top of the machine's CPUs.
	if want := opts.Clients + runtime.NumCPU(); runtime.GOMAXPROCS(0) < want {
		s.procs = runtime.GOMAXPROCS(want)
	}
	ready := make(chan error, opts.Clients)
	for i := range s.conns {
		c := &client{id: i, cpu: -1, fd: -1, x: newExchange(opts.Proto, opts.Size, uint64(i+1)*0x9E3779B97F4A7C15)}
		if len(opts.ClientCPUs) > 0 {
			c.cpu = opts.ClientCPUs[i%len(opts.ClientCPUs)]
		}
		s.conns[i] = c
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := c.pin()
			if err == nil {
				err = c.dial(addr, opts.Timeout)
			}
			ready <- err
			if err != nil {
				return
			}
			<-s.start
			if s.stop.Load() {
				return
			}
			c.loop(&s.stop, opts.Requests)
		}()
	}
	go func() { s.wg.Wait(); close(s.fin) }()
	var setupErr error
	for range s.conns {
		if err := <-ready; err != nil && setupErr == nil {
			setupErr = err
		}
	}
	if setupErr != nil {
		s.abort()
		return nil, setupErr
	}
	return s, nil
}

// info identifies every connection for Options.ClientsReady.
func (s *clientSet) info() []ConnInfo {
	info := make([]ConnInfo, len(s.conns))
	for i, c := range s.conns {
		info[i] = ConnInfo{ID: i, TID: c.tid, LocalPort: c.lport}
	}
	return info
}

// begin releases the start barrier: every client sends its first request.
func (s *clientSet) begin() { s.begun.Do(func() { close(s.start) }) }

// halt asks every client to stop after its round trip in flight; a silent
// server is bounded by the round-trip timeout.
func (s *clientSet) halt() { s.stop.Store(true) }

// done is closed when every client loop has returned.
func (s *clientSet) done() <-chan struct{} { return s.fin }

// abort stops clients that have not started, waits for them and closes
// everything: the way out when set-up or ClientsReady fails.
func (s *clientSet) abort() {
	s.halt()
	s.begin()
	<-s.fin
	s.close()
}

// close closes every socket. Call it after done.
func (s *clientSet) close() {
	s.closed.Do(func() {
		for _, c := range s.conns {
			if c.fd >= 0 {
				closeFd(c.fd)
			}
		}
		if s.procs > 0 {
			runtime.GOMAXPROCS(s.procs)
		}
	})
}

// err is every client's error, joined; nil if none failed.
func (s *clientSet) err() error {
	var err error
	for _, c := range s.conns {
		if c.err != nil {
			err = errors.Join(err, c.err)
		}
	}
	return err
}
