package servers

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// helloBody is what the http server answers to every request.
var helloBody = []byte("hello\n")

// serveHTTP is Go's net/http answering every GET with a small "hello"
// body, framed by Content-Length, on keep-alive connections: the server
// the --proto http load runs against with nothing else installed. A
// connection whose first byte is 0 (the ping-pong exit message, which no
// HTTP request begins with) asks it to exit. net/http allocates per
// request; the no-allocation rule of the ping-pong servers does not hold.
func serveHTTP(ctx context.Context, ln *net.TCPListener, o Options) error {
	exit := make(chan struct{})
	var once sync.Once
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		spin(o.Spin)
		hd := w.Header()
		hd["Content-Type"] = textPlain
		hd["Content-Length"] = helloLength
		w.Write(helloBody)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Minute}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-exit:
		case <-done:
			return
		}
		srv.Close()
	}()
	err := srv.Serve(&exitListener{TCPListener: ln, exit: func() { once.Do(func() { close(exit) }) }})
	close(done)
	select {
	case <-exit:
		return ErrExitRequested
	default:
	}
	if ctx.Err() != nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

var (
	textPlain   = []string{"text/plain"}
	helloLength = []string{"6"}
)

// exitListener hands out connections that call exit when their first
// byte is 0.
type exitListener struct {
	*net.TCPListener
	exit func()
}

func (l *exitListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.AcceptTCP()
	if err != nil {
		return nil, err
	}
	c.SetNoDelay(true)
	return &exitConn{TCPConn: c, exit: l.exit}, nil
}

type exitConn struct {
	*net.TCPConn
	exit func()
	read bool // a byte has been read
}

func (c *exitConn) Read(b []byte) (int, error) {
	n, err := c.TCPConn.Read(b)
	if !c.read && n > 0 {
		c.read = true
		if b[0] == 0 {
			c.exit()
			return 0, errors.New("exit message")
		}
	}
	return n, err
}
