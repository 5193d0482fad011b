package loadgen

import (
	"bytes"
	"fmt"
	"strings"
)

// HTTPOptions configure --proto http. The zero value sends "GET /" with
// the server's address as Host and accepts any 2xx status.
type HTTPOptions struct {
	Path string // request target; default "/"
	Host string // Host header; default Options.Addr
	// Headers are extra request header lines, "Name: value" each, sent
	// in order after Host.
	Headers []string
	// StatusMin and StatusMax bound the accepted status; zero: 200-299.
	StatusMin, StatusMax int
}

// request renders the GET request for addr, the server's address.
func (o HTTPOptions) request(addr string) []byte {
	path, host := o.Path, o.Host
	if path == "" {
		path = "/"
	}
	if host == "" {
		host = addr
	}
	var b strings.Builder
	b.WriteString("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n")
	for _, h := range o.Headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// Check refuses options that would make a malformed request.
func (o HTTPOptions) Check() error {
	if strings.ContainsAny(o.Path, " \r\n") || (o.Path != "" && !strings.HasPrefix(o.Path, "/") && o.Path != "*") {
		return fmt.Errorf("http path %q: want an origin path such as /index.html, without spaces", o.Path)
	}
	if strings.ContainsAny(o.Host, " \r\n") {
		return fmt.Errorf("http host %q: want a host name without spaces", o.Host)
	}
	for _, h := range o.Headers {
		name, _, ok := strings.Cut(h, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") || strings.ContainsAny(h, "\r\n") {
			return fmt.Errorf("http header %q: want 'Name: value' on one line", h)
		}
	}
	if o.StatusMin != 0 || o.StatusMax != 0 {
		if o.StatusMin < 100 || o.StatusMax > 599 || o.StatusMin > o.StatusMax {
			return fmt.Errorf("http status range %d-%d: want statuses within 100-599, low to high", o.StatusMin, o.StatusMax)
		}
	}
	return nil
}

// maxHeader bounds an HTTP response's header section.
const maxHeader = 64 << 10

// httpFramer frames HTTP/1.1 responses to a fixed GET. Its parse state
// survives across reads, so each read parses only what is new.
type httpFramer struct {
	req    []byte
	lo, hi int // accepted status range

	scan   int   // the header's end was not found before this offset
	hdrLen int   // length of the status line and headers; 0 until known
	body   int64 // Content-Length, or -1 for chunked encoding
	pos    int   // chunked: offset of the next chunk-size line
	last   bool  // chunked: the last chunk was seen; trailers follow at pos
}

func newHTTPFramer(opts *Options) *httpFramer {
	f := &httpFramer{req: opts.HTTP.request(opts.Addr), lo: opts.HTTP.StatusMin, hi: opts.HTTP.StatusMax}
	if f.lo == 0 && f.hi == 0 {
		f.lo, f.hi = 200, 299
	}
	return f
}

func (f *httpFramer) request([]byte) []byte {
	f.scan, f.hdrLen, f.body, f.pos, f.last = 0, 0, 0, 0, false
	return f.req
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

func (f *httpFramer) reply(b []byte) (int, error) {
	if f.hdrLen == 0 {
		i := bytes.Index(b[f.scan:], crlfcrlf)
		if i < 0 {
			if len(b) > maxHeader {
				return 0, badf("no end of the response header within %d bytes", maxHeader)
			}
			f.scan = max(0, len(b)-3)
			return 0, nil
		}
		f.hdrLen = f.scan + i + 4
		if err := f.header(b[:f.hdrLen-2]); err != nil {
			return 0, err
		}
		f.pos = f.hdrLen
	}
	if f.body >= 0 {
		end := int64(f.hdrLen) + f.body
		if int64(len(b)) < end {
			return 0, nil
		}
		return int(end), nil
	}
	return f.chunks(b)
}

// header parses the status line and header lines in h (each ending in
// CRLF): the status must be accepted, the body framed by Content-Length
// or chunked encoding, and the connection kept open.
func (f *httpFramer) header(h []byte) error {
	line, rest, _ := bytes.Cut(h, crlf)
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return badf("not an HTTP/1.x status line")
	}
	minor := line[7]
	status := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return badf("status %q is not 3 digits", line[9:12])
		}
		status = status*10 + int(c-'0')
	}
	if status < f.lo || status > f.hi {
		if f.lo == 200 && f.hi == 299 {
			return badf("status %s, want 2xx", line[9:])
		}
		return badf("status %s, want %d-%d", line[9:], f.lo, f.hi)
	}
	f.body = -2 // not framed yet
	keepAlive := minor != '0'
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, crlf)
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return badf("header line %q has no colon", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if f.body == -1 {
				continue // chunked wins (RFC 9112 6.3)
			}
			n, ok := parseDecimal(value)
			if !ok {
				return badf("Content-Length %q is not a number", value)
			}
			f.body = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if !hasSuffixFold(value, "chunked") {
				return badf("Transfer-Encoding %q does not end in chunked: the body would end at connection close", value)
			}
			f.body = -1
		case bytes.EqualFold(name, []byte("Connection")):
			if containsTokenFold(value, "close") {
				return badf("the server closes the connection (Connection: close): a keep-alive load needs a server that keeps it open")
			}
			if containsTokenFold(value, "keep-alive") {
				keepAlive = true
			}
		}
	}
	if !keepAlive {
		return badf("an HTTP/1.0 response without Connection: keep-alive: the server closes the connection")
	}
	if f.body == -2 {
		if status == 204 || status == 304 {
			f.body = 0
			return nil
		}
		return badf("status %d without Content-Length or chunked encoding: the body would end at connection close", status)
	}
	return nil
}

// chunks walks the chunked body from f.pos: each chunk is a hex size
// line, that many bytes and CRLF; a size of 0 ends it, followed by
// trailer lines and an empty line.
func (f *httpFramer) chunks(b []byte) (int, error) {
	for {
		if f.last {
			// Trailers: lines until an empty one.
			for {
				i := bytes.Index(b[f.pos:], crlf)
				if i < 0 {
					return 0, nil
				}
				f.pos += i + 2
				if i == 0 {
					return f.pos, nil
				}
			}
		}
		i := bytes.Index(b[f.pos:], crlf)
		if i < 0 {
			if len(b)-f.pos > 1024 {
				return 0, badf("chunk size line longer than 1024 bytes at offset %d", f.pos)
			}
			return 0, nil
		}
		line := b[f.pos : f.pos+i]
		if j := bytes.IndexByte(line, ';'); j >= 0 {
			line = line[:j] // chunk extensions
		}
		size, ok := parseHex(bytes.TrimSpace(line))
		if !ok {
			return 0, badf("chunk size %q at offset %d is not hexadecimal", b[f.pos:f.pos+i], f.pos)
		}
		data := f.pos + i + 2
		if size == 0 {
			f.pos, f.last = data, true
			continue
		}
		end := int64(data) + size + 2
		if int64(len(b)) < end {
			return 0, nil
		}
		if b[end-2] != '\r' || b[end-1] != '\n' {
			return 0, badf("chunk of %d bytes at offset %d not followed by CRLF", size, data)
		}
		f.pos = int(end)
	}
}

// parseDecimal reads a non-negative decimal number of at most 15 digits.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseHex reads a hexadecimal number of at most 15 digits.
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n<<4 | int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

func hasSuffixFold(b []byte, s string) bool {
	return len(b) >= len(s) && bytes.EqualFold(b[len(b)-len(s):], []byte(s))
}

// containsTokenFold reports whether the comma-separated list v holds
// token, ignoring case and blanks.
func containsTokenFold(v []byte, token string) bool {
	for len(v) > 0 {
		var t []byte
		t, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(token)) {
			return true
		}
	}
	return false
}

// httpWorkload is Options.Workload for HTTP: the request and the
// statuses accepted.
func httpWorkload(o Options) string {
	path := o.HTTP.Path
	if path == "" {
		path = "/"
	}
	lo, hi := o.HTTP.StatusMin, o.HTTP.StatusMax
	if lo == 0 && hi == 0 {
		lo, hi = 200, 299
	}
	s := fmt.Sprintf("GET %s", path)
	if o.HTTP.Host != "" {
		s += ", Host " + o.HTTP.Host
	}
	if n := len(o.HTTP.Headers); n > 0 {
		s += fmt.Sprintf(", %d extra header(s)", n)
	}
	return s + fmt.Sprintf(", status %d-%d", lo, hi)
}
