package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// serveConfig is a command the guest runs for the host until the host
// says stop (package vmtest's guestServe: the JSON names are the
// contract).
type serveConfig struct {
	// Args are the arguments of /volleyscope: a server or an agent
	// listening on the guest's address.
	Args []string `json:"args"`
	// Ready is the host:port that answers once the command serves; the
	// guest prints "VMTEST-READY Ready" when it does.
	Ready string `json:"ready"`
	// Timeout bounds the whole command, readiness included, as a Go
	// duration; the host stops the guest well before.
	Timeout string `json:"timeout"`
}

// stopLine is what the host writes on the serial console (qemu's stdin)
// to end the command; the kernel's tty hands it to init's stdin as a line.
const stopLine = "vmtest-stop"

const (
	readyWait = 2 * time.Minute  // for the command to answer on Ready
	termGrace = 10 * time.Second // from SIGTERM to SIGKILL
)

// serve runs the command, says when it answers, and stops it when the
// host asks (or at its timeout), then prints its verdict line:
// "VMTEST kernel=K run=serve PASS|FAIL (…)".
func serve(release string, c *serveConfig) {
	verdict, detail := "PASS", ""
	start := time.Now()
	if err := serveUntilStopped(c); err != nil {
		verdict, detail = "FAIL", ": "+err.Error()
	}
	fmt.Printf("VMTEST kernel=%s run=serve %s (%s)%s\n", release, verdict, time.Since(start).Round(10*time.Millisecond), detail)
}

func serveUntilStopped(c *serveConfig) error {
	limit := 10 * time.Minute
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil {
			return fmt.Errorf("serve: timeout %q: %w", c.Timeout, err)
		}
		limit = d
	}
	fmt.Printf("vmtest-init: serve: %s %s\n", vsBinary, strings.Join(c.Args, " "))
	cmd := exec.Command(vsBinary, c.Args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := watchStop()
	deadline := time.After(limit)

	ctx, cancel := context.WithTimeout(context.Background(), readyWait)
	defer cancel()
	readyErr := make(chan error, 1)
	go func() { readyErr <- waitReady(ctx, c.Ready) }()
	for ready := false; ; {
		select {
		case err := <-readyErr:
			if err != nil {
				return terminate(cmd, exited, err)
			}
			ready = true
			fmt.Printf("VMTEST-READY %s\n", c.Ready)
		case err := <-exited:
			if !ready {
				return fmt.Errorf("serve: the command ended before it answered on %s: %v", c.Ready, err)
			}
			return fmt.Errorf("serve: the command ended before the host said stop: %v", err)
		case <-stop:
			return terminate(cmd, exited, nil)
		case <-deadline:
			return terminate(cmd, exited, fmt.Errorf("serve: no stop from the host within %s", limit))
		}
	}
}

// waitReady dials addr until it answers.
func waitReady(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("serve: nothing answers on %s after %s: %v", addr, readyWait, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// terminate stops the command with SIGTERM, then SIGKILL after termGrace;
// cause is the error to return, or nil when the host asked: then the
// command's own exit is the result.
func terminate(cmd *exec.Cmd, exited <-chan error, cause error) error {
	cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-exited:
	case <-time.After(termGrace):
		cmd.Process.Kill()
		<-exited
		err = fmt.Errorf("serve: the command outlived SIGTERM by %s and was killed", termGrace)
	}
	if cause != nil {
		return cause
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return fmt.Errorf("serve: the command exited with %v on SIGTERM", exit)
	}
	return err
}

// watchStop reads the console for stopLine; the channel is closed when it
// comes.
func watchStop() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == stopLine {
				close(ch)
				return
			}
		}
	}()
	return ch
}
