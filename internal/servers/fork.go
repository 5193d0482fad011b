package servers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The fork server runs each connection in a process of its own. Go cannot
// fork without exec (the child would have one thread of a multi-threaded
// runtime), so the "fork" is a re-exec of this binary with the connection
// as fd 3; MaybeRunChild, called first thing in main, serves it.
const (
	childEnv      = "VOLLEYSCOPE_FORK_CHILD" // "echo,spin-ns" when set
	childExitCode = 42                       // the child saw the 0 message
)

// MaybeRunChild serves one connection and exits if this process is a fork
// server's child; otherwise it returns at once.
func MaybeRunChild() {
	v, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	var o Options
	var spinNs int64
	var echo int
	fmt.Sscanf(v, "%d,%d", &echo, &spinNs)
	o.Echo, o.Spin = echo == 1, time.Duration(spinNs)
	unix.SetNonblock(3, false)
	if serveBlocking(3, o) {
		os.Exit(childExitCode)
	}
	os.Exit(0)
}

func serveFork(ctx context.Context, ln *net.TCPListener, o Options) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("fork server: find own executable: %w", err)
	}
	echo := 0
	if o.Echo {
		echo = 1
	}
	env := append(os.Environ(), childEnv+"="+strconv.Itoa(echo)+","+strconv.FormatInt(o.Spin.Nanoseconds(), 10))
	var startErr error

	// Children die with the server even if it is killed outright
	// (PR_SET_PDEATHSIG). The kernel sends that signal when the *thread*
	// that forked exits, not the process, and Go reuses and ends threads at
	// will, so every child is started from one goroutine locked to its
	// thread for the whole of Serve. When Serve returns that goroutine
	// exits still locked, which ends the thread; by then every child has
	// been reaped.
	spawn := make(chan *exec.Cmd)
	spawned := make(chan error)
	go func() {
		runtime.LockOSThread()
		for cmd := range spawn {
			spawned <- cmd.Start()
		}
	}()
	defer close(spawn)

	g := newGroup(ctx, ln, func(p *os.Process) { p.Signal(syscall.SIGTERM) })
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		c.(*net.TCPConn).SetNoDelay(true)
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			continue
		}
		cmd := exec.Command(exe)
		cmd.Env = env
		cmd.ExtraFiles = []*os.File{f}
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		spawn <- cmd
		err = <-spawned
		f.Close()
		if err != nil {
			// Stop the children already running and reap them first.
			startErr = fmt.Errorf("fork server: start child: %w", err)
			g.requestExit()
			break
		}
		g.add(cmd.Process)
		go func() {
			err := cmd.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == childExitCode {
				g.requestExit()
			}
			g.done(cmd.Process, nil)
		}()
	}
	err = g.wait(ctx, "fork")
	if startErr != nil {
		return startErr
	}
	return err
}
