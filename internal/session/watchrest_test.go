package session

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestWatchCaptureRests: the payload capture's hooks go off once the
// watched connection's first sends have been read, come back for a
// connection that begins while they are off, and go off again; the split
// is whole throughout. Two ping-pong connections of this process against
// the threads server, the second opened halfway.
func TestWatchCaptureRests(t *testing.T) {
	requireRoot(t)
	port := startBuiltin(t, "threads")
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	first := pingPong(t, dial(), 1)
	defer first.stop()

	// The hooks' links, sampled through the watch, as runs of one count:
	// on, off, on again, off again.
	links := countLinks("self")
	done := make(chan struct{})
	var second *pingClient
	go func() {
		defer close(done)
		time.Sleep(3500 * time.Millisecond)
		second = pingPong(t, dial(), 1)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Its first rest comes about 1.2 s in (the warm-up, then a second
	// with nothing to read); the second connection's rest about 1.3 s
	// after that connection opens; the rest is margin for a reader held
	// off its CPU by other work.
	res, err := Watch(ctx, WatchConfig{ServerPort: port, ClientPIDs: []int{os.Getpid()}, Duration: 9 * time.Second}, Callbacks{})
	seen := links()
	<-done
	if second != nil {
		if err := second.stop(); err != nil {
			t.Errorf("second client: %v", err)
		}
	}
	if err := first.stop(); err != nil {
		t.Errorf("first client: %v", err)
	}
	if res == nil || (err != nil && !errors.Is(err, ErrLostEvents)) {
		t.Fatalf("watch: %v", err)
	}
	t.Logf("the hooks' link counts in turn: %v", seen)
	pc := res.PayloadCapture
	if pc == nil {
		t.Fatalf("no payload_capture section: %v", res.Warnings)
	}
	t.Logf("payload capture: %+v", *pc)
	if pc.Rests < 2 || pc.AttachedShare >= 0.9 || pc.AttachedShare <= 0 {
		t.Errorf("the capture's hooks rested %d times, attached %.3f of the watch: want ≥ 2 rests (after each connection's first reads) and less than 0.9", pc.Rests, pc.AttachedShare)
	}
	// Off, on and off again: the link count falls, rises and falls.
	turns := 0
	for i := 2; i < len(seen); i++ {
		if (seen[i-1] < seen[i-2]) != (seen[i] < seen[i-1]) {
			turns++
		}
	}
	if len(seen) < 4 || turns < 2 {
		t.Errorf("the hooks' links went %v: want a fall, a rise and a fall (the capture off, back for the second connection, off again)", seen)
	}
	var counted bool
	for _, w := range res.Warnings {
		if strings.Contains(w, "request boundaries of") {
			counted = strings.Contains(w, "; 2 timed")
			t.Log(w)
		}
	}
	if !counted {
		t.Errorf("the summary does not count both connections: %v", res.Warnings)
	}
	bc := res.BreakdownCheck
	if bc == nil || bc.Joined < 1000 {
		t.Fatalf("joined too few round trips: %+v", bc)
	}
	split := float64(bc.Joined) / float64(bc.Joined+bc.Unjoined)
	if err != nil { // events lost to other work: their round trips are not split
		t.Logf("watch: %v; split %.4f, sum within tolerance %.4f", err, split, bc.SumWithinTolerance)
	} else if split < 0.99 || bc.SumWithinTolerance < 0.99 {
		t.Errorf("split %.4f (want ≥ 0.99), sum within tolerance %.4f (want ≥ 0.99); unjoined %v", split, bc.SumWithinTolerance, bc.UnjoinedReasons)
	}
}

// TestCaptureRest: the capture's switch, tick by tick: off only after
// captureRestAfter with nothing to read and past the warm-up, back at
// once when a connection needs it, and with the sampler's switch.
func TestCaptureRest(t *testing.T) {
	var calls []bool
	set := func(on bool) error { calls = append(calls, on); return nil }
	const s = int64(time.Second)
	r := newCaptureRest(set, 0)
	r.notBefore = 2 * s
	step := func(at float64, needed bool, want []bool) {
		t.Helper()
		calls = nil
		if err := r.tick(int64(at*float64(s)), needed, true); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(calls) != fmt.Sprint(want) {
			t.Fatalf("at %gs needed %v: switched %v, want %v", at, needed, calls, want)
		}
	}
	step(0.1, true, nil)
	// No exchange under way: nothing changes, and the wait for a rest
	// begins again.
	if err := r.tick(s/5, false, false); err != nil || len(calls) != 0 {
		t.Fatalf("unknown switched %v (%v)", calls, err)
	}
	step(0.5, false, nil)
	step(1.6, false, nil) // a second idle, but in the warm-up
	step(2.0, false, []bool{false})
	if !r.resting(int64(2.1 * float64(s))) {
		t.Error("not resting with the hooks off")
	}
	step(2.5, false, nil)
	step(3.0, true, []bool{true})
	if !r.resting(int64(3.5*float64(s))) || r.resting(4*s+1) {
		t.Error("resting should hold for captureRestAfter after the hooks came back, and no longer")
	}
	step(3.1, false, nil)
	step(4.0, false, nil)
	step(4.2, false, []bool{false})
	// The sampler: off is off; on brings the hooks back only if needed.
	calls = nil
	_ = r.setTraced(false, 5*s)
	_ = r.setTraced(true, 6*s)
	if len(calls) != 0 {
		t.Errorf("the sampler's switch moved resting hooks: %v", calls)
	}
	step(6.1, true, []bool{true})
	calls = nil
	_ = r.setTraced(false, 7*s)
	if fmt.Sprint(calls) != "[false]" {
		t.Errorf("sampler off: switched %v, want [false]", calls)
	}
	step(7.1, true, nil) // needed, but the probe is not tracing
	calls = nil
	_ = r.tick(7*s+s/2, false, false) // the off stretch's idle connections: unknown, the word stands
	_ = r.setTraced(true, 8*s)
	if fmt.Sprint(calls) != "[true]" {
		t.Errorf("sampler on, needed: switched %v, want [true]", calls)
	}
	on, rests := r.share(10 * s)
	// On 0–2, 3–4.2, 6.1–7, 8–10: 6.1 s of 10.
	if rests != 2 || math.Abs(on-0.61) > 1e-9 {
		t.Errorf("share %.4f over %d rests, want 0.61 over 2", on, rests)
	}
}
