package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// tcgCPU is the CPU model under TCG: every feature TCG emulates ("max")
// but CMPXCHG16B. With it, Debian's 6.12 double-faulted now and then in
// SLUB's per-CPU fast path (kmem_cache_alloc_noprof, right after a
// %gs-relative cmpxchg16b) with reserved EFLAGS bits set, at boot or later,
// under qemu 7.2 (Debian 12): the emulated instruction's flags, not the
// kernel. Without CX16 the kernel takes its other path and ran through.
const tcgCPU = "max,-cx16"

// bootConfig describes one qemu run.
type bootConfig struct {
	Kernel  kernel
	Initrd  string
	Accel   string // kvm or tcg
	CPU     string // qemu -cpu model under TCG ("" = tcgCPU); KVM uses host
	MemMiB  int
	CPUs    int
	Timeout time.Duration // from qemu's start to its exit
	LogPath string        // the whole serial console goes here
	Verbose bool          // also copy the console to stdout
	// StartTimeout, when set, stops qemu if the guest's init has printed
	// nothing by then: a nested KVM can accept a VM and then never run
	// it, and auto mode falls back to TCG on errNotStarted.
	StartTimeout time.Duration
	// Net, when set, gives the guest a virtio NIC on its tap and runs
	// qemu inside its namespace; nil: loopback only.
	Net *guestNet
	// Stdin is qemu's standard input, which -nographic makes the guest's
	// serial console input: the host's way to speak to the guest's init
	// (stopLine). nil: /dev/null.
	Stdin *os.File
	// Ready, when set, receives the address of the guest's
	// "VMTEST-READY ADDR" line: what it serves answers there.
	Ready chan<- string
}

// errNotStarted: qemu ended, or was stopped, before the guest's init
// printed a line.
var errNotStarted = errors.New("guest init never started")

// bootResult is what the console said.
type bootResult struct {
	Started  bool      // the guest's init printed something
	Verdicts []verdict // in the order printed
	Done     bool      // init reached its end (VMTEST-DONE)
	Panic    string    // first "Kernel panic" line, if any
	Elapsed  time.Duration
	TimedOut bool
	LogPath  string
	// Results is the guest's results.json, when it came through whole
	// (its SHA-256 checked); ResultsErr says why not.
	Results    []byte
	ResultsErr error
	b64        strings.Builder // results being received
	inResults  bool
	ready      chan<- string // bootConfig.Ready
}

// verdictLine matches the guest init's per-run line: "VMTEST kernel=K
// mode=M level=L PASS (…)" or "VMTEST kernel=K run=volleyscope FAIL …".
var verdictLine = regexp.MustCompile(`^VMTEST kernel=(\S+) ((?:mode|run)=\S+(?: level=\S+)?) (PASS|FAIL|SKIP)\b ?(.*)$`)

// ansiEscape matches CSI sequences and two-byte escapes.
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])`)

// alarming console lines are copied to stdout even without --verbose.
var alarming = regexp.MustCompile(`Kernel panic|BUG:|Oops|WARNING: CPU`)

// boot runs qemu until the guest powers off, the timeout passes or ctx is
// cancelled, and reads the console as it goes.
func boot(ctx context.Context, bc bootConfig) (*bootResult, error) {
	log, err := os.Create(bc.LogPath)
	if err != nil {
		return nil, fmt.Errorf("create console log: %w", err)
	}
	defer log.Close()

	cpu := bc.CPU
	switch {
	case bc.Accel == "kvm":
		cpu = "host"
	case cpu == "":
		cpu = tcgCPU
	}
	accel := bc.Accel
	if accel == "tcg" {
		// One host thread for all vCPUs: with a thread per vCPU
		// (MTTCG) the guest froze now and then (no soft-lockup report,
		// timers stopped) while fentry or kprobe programs were being
		// attached to a function the other vCPU was running: live text
		// patching across vCPUs. Slower, but the guest runs through.
		accel = "tcg,thread=single"
	}
	nic := []string{"-nic", "none"} // loopback only: no emulated NIC, no option ROM
	if bc.Net != nil {
		nic = bc.Net.qemuArgs()
	}
	args := []string{
		"-accel", accel,
		"-cpu", cpu,
		"-m", strconv.Itoa(bc.MemMiB),
		"-smp", strconv.Itoa(bc.CPUs),
		"-nographic", "-no-reboot",
	}
	args = append(args, nic...)
	args = append(args,
		"-kernel", bc.Kernel.Vmlinuz,
		"-initrd", bc.Initrd,
		// panic=-1: reboot at once on a panic, which -no-reboot turns into
		// qemu's exit instead of a hang until the timeout; softlockup_panic=1
		// turns a CPU stuck in the kernel (a looping probe) into such a panic.
		"-append", "console=ttyS0 panic=-1 softlockup_panic=1 quiet",
	)
	argv := append([]string{"qemu-system-x86_64"}, args...)
	if bc.Net != nil {
		argv = bc.Net.Exec(argv...)
	}
	fmt.Printf("vmtest: booting %s (%s, -cpu %s, %d CPUs, %d MiB, timeout %s), console log %s\n",
		bc.Kernel.Name, bc.Accel, cpu, bc.CPUs, bc.MemMiB, bc.Timeout, bc.LogPath)

	tctx, cancel := context.WithTimeout(ctx, bc.Timeout)
	defer cancel()
	cmd := exec.CommandContext(tctx, argv[0], argv[1:]...)
	// No Stdin is /dev/null: nothing to type, and no terminal to upset.
	// An *os.File is handed to qemu as it is, with no copying goroutine
	// for Wait to wait on. (A nil *os.File must not reach the io.Reader:
	// exec would take it for a file.)
	if bc.Stdin != nil {
		cmd.Stdin = bc.Stdin
	}
	// qemu must not outlive this process: under TCG it holds a CPU, and
	// a networked one holds the tap in the namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	cmd.WaitDelay = 5 * time.Second

	res := &bootResult{LogPath: bc.LogPath, ready: bc.Ready}
	readDone := make(chan struct{})
	started := make(chan struct{})
	go func() {
		defer close(readDone)
		readConsole(pr, log, bc.Verbose, res, started)
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pw.Close()
		<-readDone
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	if bc.StartTimeout > 0 {
		go func() {
			select {
			case <-started:
			case <-tctx.Done():
			case <-time.After(bc.StartTimeout):
				cancel()
			}
		}()
	}
	werr := cmd.Wait()
	pw.Close()
	<-readDone
	res.Elapsed = time.Since(start)
	res.TimedOut = errors.Is(tctx.Err(), context.DeadlineExceeded)
	fmt.Printf("vmtest: %s: qemu ran %s\n", bc.Kernel.Name, res.Elapsed.Round(100*time.Millisecond))
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("boot %s: %w", bc.Kernel.Name, ctx.Err())
	case !res.Started:
		return res, fmt.Errorf("boot %s with %s: %w (qemu: %v; console log: %s)", bc.Kernel.Name, bc.Accel, errNotStarted, werr, bc.LogPath)
	case res.TimedOut:
		return res, fmt.Errorf("boot %s: no power-off within %s (console log: %s)", bc.Kernel.Name, bc.Timeout, bc.LogPath)
	case werr != nil:
		return res, fmt.Errorf("qemu: %w (console log: %s)", werr, bc.LogPath)
	}
	return res, nil
}

// readConsole copies the serial console to the log and picks out the
// guest's verdicts.
// started is closed at the first line from the guest's init.
func readConsole(r io.Reader, log io.Writer, verbose bool, res *bootResult, started chan<- struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// SeaBIOS and the serial console emit terminal escapes (clear
		// screen, line wrap off) that would garble the log and the
		// markers.
		line := ansiEscape.ReplaceAllString(strings.TrimRight(sc.Text(), "\r"), "")
		fmt.Fprintln(log, line)
		if verbose {
			fmt.Println(line)
		}
		parseLine(line, res, verbose)
		if res.Started && started != nil {
			close(started)
			started = nil
		}
	}
	// Keep draining on a scanner error (an overlong line) so qemu never
	// blocks on a full pipe.
	io.Copy(log, r)
}

// parseLine updates res from one console line and echoes the lines worth
// showing without --verbose.
func parseLine(line string, res *bootResult, verbose bool) {
	// Kernel messages can land in the middle of a line of ours; the
	// marker is searched for, not required at the start.
	i := strings.Index(line, "VMTEST")
	j := strings.Index(line, "vmtest-init: ")
	if i >= 0 || j >= 0 {
		res.Started = true
	}
	if i >= 0 && strings.HasPrefix(line[i:], "VMTEST-RESULTS") {
		res.resultsLine(line[i:])
		return
	}
	switch {
	case j >= 0:
		if !verbose {
			fmt.Println(line[j:])
		}
	case i >= 0:
		tail := line[i:]
		if !verbose {
			fmt.Println(tail)
		}
		if m := verdictLine.FindStringSubmatch(tail); m != nil {
			res.Verdicts = append(res.Verdicts, verdict{Kernel: m[1], What: m[2], Result: m[3], Detail: m[4]})
		}
		if strings.HasPrefix(tail, "VMTEST-DONE") {
			res.Done = true
		}
		if addr, ok := strings.CutPrefix(tail, "VMTEST-READY "); ok && res.ready != nil {
			select {
			case res.ready <- strings.TrimSpace(addr):
			default:
			}
		}
	case alarming.MatchString(line):
		if !verbose {
			fmt.Println("vmtest: console: " + line)
		}
		if res.Panic == "" && strings.Contains(line, "Kernel panic") {
			res.Panic = line
		}
	}
}

// resultsLine takes one line of the guest's results.json transfer (vmtest/
// init's printResults): BEGIN, base64 lines, END with the SHA-256.
func (res *bootResult) resultsLine(line string) {
	f := strings.Fields(line)
	switch {
	case f[0] == "VMTEST-RESULTS-BEGIN":
		res.b64.Reset()
		res.inResults, res.Results, res.ResultsErr = true, nil, nil
	case f[0] == "VMTEST-RESULTS" && len(f) == 2 && res.inResults:
		res.b64.WriteString(f[1])
	case f[0] == "VMTEST-RESULTS-END" && res.inResults:
		res.inResults = false
		want := ""
		if len(f) == 2 {
			want = strings.TrimPrefix(f[1], "sha256=")
		}
		res.Results, res.ResultsErr = decodeResults(res.b64.String(), want)
	}
}

// decodeResults undoes printResults: base64, then gzip, then the SHA-256
// check (a console line garbled by a kernel message fails it).
func decodeResults(b64, sha string) ([]byte, error) {
	z, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("decode results from the console: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("decode results from the console: %w", err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decode results from the console: %w", err)
	}
	if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != sha {
		return nil, fmt.Errorf("decode results from the console: sha256 %s, the guest said %s", got, sha)
	}
	return b, nil
}

// find is the verdict for what ("mode=M level=L" or "run=volleyscope").
func (r *bootResult) find(what string) (verdict, bool) {
	for _, v := range r.Verdicts {
		if v.What == what {
			return v, true
		}
	}
	return verdict{}, false
}

// check lists what went wrong with the runs asked for (verdict keys:
// "mode=M level=L", "run=volleyscope").
func (r *bootResult) check(want []string) []string {
	var bad []string
	if len(r.Verdicts) == 0 {
		bad = append(bad, "no VMTEST line on the console")
	}
	for _, w := range want {
		switch v, ok := r.find(w); {
		case !ok && len(r.Verdicts) > 0:
			bad = append(bad, w+": no verdict (guest hung, crashed or timed out)")
		case v.Result == "FAIL":
			bad = append(bad, w+": FAIL")
		}
	}
	if r.Panic != "" {
		bad = append(bad, "kernel: "+r.Panic)
	}
	return bad
}
