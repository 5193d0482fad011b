package serverproc

import (
	"net"
	"net/netip"
	"os"
	"testing"
)

// TestConnections: a connection this process opened is listed with its
// peer here; the end it accepted (its local port listens) is not.
func TestConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	conns, err := Connections(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	var found int
	for _, k := range conns {
		if k.Local.Port() == port {
			t.Errorf("accepted end listed: %+v", k)
		}
		if k.Remote.Port() == port {
			found++
			if !k.PeerHere || k.Remote.Addr() != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("%+v: want the peer here at 127.0.0.1", k)
			}
		}
	}
	if found != 1 {
		t.Errorf("%d connections to port %d in %+v, want 1", found, port, conns)
	}
	if _, err := Connections(1 << 30); err == nil {
		t.Error("no error for a pid that is not there")
	}
}

func TestProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"0000000000000000FFFF00000100007F:18EB": "127.0.0.1:6379",
		"00000000000000000000000001000000:0016": "[::1]:22",
	} {
		got, err := procAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("procAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := procAddr("local_address"); err == nil {
		t.Error("the header read as an address")
	}
}
