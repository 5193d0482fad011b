package servers

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestGroupEndsLateMember: a member added after the group was ended (a
// connection accepted just before cancel closed the listener) is ended at
// once, so the wait for it cannot hang.
func TestGroupEndsLateMember(t *testing.T) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	endedCh := make(chan int, 2)
	g := newGroup(ctx, ln, func(k int) { endedCh <- k })
	cancel()
	if _, err := ln.Accept(); err == nil { // returns once the watcher closed it
		t.Fatal("Accept succeeded on a cancelled group's listener")
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		g.mu.Lock()
		done := g.ended
		g.mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	g.add(7)
	select {
	case k := <-endedCh:
		if k != 7 {
			t.Fatalf("ended %d, want 7", k)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a member added after the group ended was never ended")
	}
	g.done(7, nil)
	if err := g.wait(ctx, "test"); err != nil {
		t.Fatalf("wait: %v", err)
	}
}
