package serverproc

import (
	"net"
	"os"
	"slices"
	"testing"
)

func TestListeningPorts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	ports, err := ListeningPorts(os.Getpid())
	if err != nil || !slices.Contains(ports, port) {
		t.Fatalf("ListeningPorts = %v, %v; want it to hold %d", ports, err, port)
	}
	if _, err := ListeningPorts(1 << 30); err == nil {
		t.Error("a pid that does not exist: no error")
	}
}
