// Command preforkserver is a ping-pong server that forks its workers
// before any client connects, as Apache's prefork and nginx do: the parent
// listens on 127.0.0.1:PORT, starts -workers copies of itself that inherit
// the listening socket and accept on it, and then only waits. No worker
// descends from a process that volleyscope saw fork, so a probe that
// follows only the listener's first holder (the parent) misses them all.
// It exits when a worker receives the ping-pong exit message, or on
// SIGTERM, taking the workers with it.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/volleyscope/volleyscope/internal/wire"
)

func main() {
	port := flag.Int("p", 0, "port")
	workers := flag.Int("workers", 2, "worker processes")
	worker := flag.Bool("worker", false, "internal: run as a worker on fd 3")
	flag.Parse()
	if *worker {
		ln, err := net.FileListener(os.NewFile(3, "listener"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		serve(ln)
		return
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	done := make(chan int, *workers)
	var procs []*os.Process
	for i := 0; i < *workers; i++ {
		cmd := exec.Command(os.Args[0], "-worker")
		cmd.ExtraFiles = []*os.File{f}
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		// Workers die with the parent, however it ends.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		procs = append(procs, cmd.Process)
		go func() { _ = cmd.Wait(); done <- 0 }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	ended := 0
	select {
	case <-done: // a worker got the exit message
		ended++
	case <-sig:
	}
	for _, p := range procs {
		_ = p.Kill()
	}
	for ; ended < len(procs); ended++ {
		<-done // reaped
	}
}

func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			var b [wire.Size]byte
			for {
				if _, err := io.ReadFull(c, b[:]); err != nil {
					return
				}
				v := wire.Get(b[:])
				if v == wire.Exit {
					os.Exit(0)
				}
				wire.Put(b[:], wire.Reply(v))
				if _, err := c.Write(b[:]); err != nil {
					return
				}
			}
		}()
	}
}
