package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/volleyscope/volleyscope/probe"
)

// proxy forwards loopback connections to an agent, and can cut them
// (what a killed agent's kernel does: the connection closes) or freeze
// them (a dead host or a pulled cable: nothing moves, nothing closes).
type proxy struct {
	lis    net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	frozen chan struct{}
}

func newProxy(t *testing.T, to string) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{lis: lis, frozen: make(chan struct{})}
	go func() {
		for {
			a, err := lis.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", to)
			if err != nil {
				a.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, a, b)
			p.mu.Unlock()
			go p.pipe(a, b)
			go p.pipe(b, a)
		}
	}()
	t.Cleanup(func() { lis.Close(); p.cut() })
	return p
}

func (p *proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.frozen:
			return // drop it, and everything after
		default:
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) addr() string { return p.lis.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *proxy) freeze() { close(p.frozen) }

// recvUntilError reads the stream until it fails, and returns the error
// and how long after start it came.
func recvUntilError(es *EventStream, start time.Time) (error, time.Duration) {
	for {
		if _, err := es.Recv(); err != nil {
			return err, time.Since(start)
		}
	}
}

// TestAgentGone: the agent's connection closes mid-stream (the agent was
// killed) or goes silent (its host died): Recv fails within a bound,
// saying the connection was lost.
func TestAgentGone(t *testing.T) {
	for _, how := range []string{"cut", "freeze"} {
		t.Run(how, func(t *testing.T) {
			h := &fakeHost{}
			p := newProxy(t, startAgent(t, h, Credentials{Token: testToken}, ProtocolVersion))
			c := dialT(t, p.addr(), Credentials{Token: testToken})
			es, err := c.Events(context.Background(), EventsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			start := time.Now()
			if how == "cut" {
				p.cut()
			} else {
				p.freeze()
			}
			err, took := recvUntilError(es, start)
			if bound := silentFor + 2*time.Second; took > bound {
				t.Errorf("Recv failed %v after the agent went, more than %v", took, bound)
			}
			if !strings.Contains(err.Error(), "agent "+p.addr()+": connection lost mid-run") {
				t.Errorf("error: %v", err)
			}
			t.Logf("%v after: %v", took.Round(time.Millisecond), err)
			// The agent's side: the controller is gone for it too, and its
			// probe is closed (a frozen connection by the keepalive).
			waitClosed(t, h, 1)
		})
	}
}

// TestControllerGone: a controller that goes away mid-stream (its
// context ends, its process dies) leaves nothing attached on the agent.
func TestControllerGone(t *testing.T) {
	h := &fakeHost{}
	addr := startAgent(t, h, Credentials{Token: testToken}, ProtocolVersion)
	ctx, cancel := context.WithCancel(context.Background())
	c := dialT(t, addr, Credentials{Token: testToken})
	es, err := c.Events(ctx, EventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := es.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitClosed(t, h, 1)
	// And the agent takes the next run.
	c2 := dialT(t, addr, Credentials{Token: testToken})
	es, err = c2.Events(context.Background(), EventsRequest{})
	if err != nil {
		t.Fatalf("the next run: %v", err)
	}
	c.Close() // the first connection, whole
	es.Stop()
	drain(t, es)
	waitClosed(t, h, 2)
}

// newPKI writes a CA, and certificates it signs for 127.0.0.1 (agent)
// and a controller, into a temporary directory.

func newPKI(t *testing.T, dir string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA " + dir}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	for i, name := range []string{"agent", "controller"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		write(name+".pem", "CERTIFICATE", der)
		write(name+".key", "EC PRIVATE KEY", kb)
	}
}

func tlsOf(t *testing.T, dir, name, caDir string, server bool) *tls.Config {
	t.Helper()
	c, err := TLSConfig(filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key"), filepath.Join(caDir, "ca.pem"), server)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMutualTLS(t *testing.T) {
	good, other := t.TempDir(), t.TempDir()
	newPKI(t, good)
	newPKI(t, other)
	h := &fakeHost{}
	addr := startAgent(t, h, Credentials{Token: testToken, TLS: tlsOf(t, good, "agent", good, true)}, ProtocolVersion)

	c := dialT(t, addr, Credentials{Token: testToken, TLS: tlsOf(t, good, "controller", good, false)})
	if _, _, _, err := c.Ping(context.Background()); err != nil {
		t.Fatalf("ping over mutual TLS: %v", err)
	}
	for _, tc := range []struct {
		name string
		cred Credentials
		want string
	}{
		{"client cert of another CA", Credentials{Token: testToken, TLS: tlsOf(t, other, "controller", good, false)}, "agent " + addr + ": "},
		{"agent cert of another CA", Credentials{Token: testToken, TLS: tlsOf(t, good, "controller", other, false)}, "TLS handshake failed"},
		{"no TLS", Credentials{Token: testToken}, "agent " + addr + ": "},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := Dial(ctx, addr, tc.cred)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want it to say %q", tc.name, err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	if opened, _ := h.counts(); opened != 0 {
		t.Errorf("%d sessions opened", opened)
	}
	if _, err := TLSConfig(filepath.Join(good, "agent.pem"), "", "", true); err == nil {
		t.Error("TLSConfig without --key and --ca: no error")
	}
}

func TestDecodeBatch(t *testing.T) {
	e := probe.Event{TS: 12345, SK: 0xffff0000, Arg0: 1, Arg1: 2, TID: 3, TGID: 4, Ret: -5, CPU: 1, Kind: probe.KindDataReady, Lport: 80, Rport: 40000}
	b := make([]byte, batchHeader+2*probe.EventSize)
	putUint64(b[1:], 777)
	putUint32(b[9:], 2)
	probe.Encode(b[batchHeader:], &e)
	probe.Encode(b[batchHeader+probe.EventSize:], &e)
	got, wm, err := DecodeBatch(b[1:], nil)
	if err != nil || wm != 777 || len(got) != 2 || got[1] != e {
		t.Fatalf("decode: %v, watermark %d, %+v", err, wm, got)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"header cut", b[1:9]},
		{"an event cut", b[1 : len(b)-1]},
		{"an event more", append(append([]byte{}, b[1:]...), make([]byte, probe.EventSize)...)},
	} {
		if _, _, err := DecodeBatch(tc.b, got); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	m := &inMsg{}
	if err := m.unmarshal([]byte{'Z', 1, 2}); err == nil {
		t.Error("unknown kind: no error")
	}
}

func FuzzDecodeBatch(f *testing.F) {
	e := probe.Event{TS: 1, Kind: probe.KindSyscall, Lport: 1}
	b := make([]byte, 12+probe.EventSize)
	putUint32(b[8:], 1)
	probe.Encode(b[12:], &e)
	f.Add(b)
	f.Add([]byte{})
	f.Add(b[:20])
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, _, err := DecodeBatch(b, nil)
		if err == nil && len(b) != 12+len(evs)*probe.EventSize {
			t.Fatalf("%d bytes decoded into %d events", len(b), len(evs))
		}
		// The whole message decoder, every kind, never panics.
		for _, k := range []byte{kindBatch, kindStarted, kindMark, kindFinal, 0} {
			_ = (&inMsg{}).unmarshal(append([]byte{k}, b...))
		}
	})
}

var _ = io.EOF
