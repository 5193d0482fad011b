package loadgen

import (
	"bytes"
	"strconv"
)

// respFramer speaks RESP (the Redis protocol): PING, or GET and SET
// from a kvGen. It frames any RESP2 reply (+ - : $ *), then checks it
// against the request: +PONG to PING, +OK to SET, a null or the key's
// value to GET; an error reply (-) is an error.
type respFramer struct {
	kv *kvGen // nil: PING
}

func newRESPFramer(opts *Options, x *exchange) *respFramer {
	f := &respFramer{}
	if opts.Mix != (Mix{}) {
		f.kv = newKVGen(opts, x, opts.Mix)
	}
	return f
}

var respPing = []byte("*1\r\n$4\r\nPING\r\n")

func (f *respFramer) request(buf []byte) []byte {
	if f.kv == nil {
		return respPing
	}
	g := f.kv
	g.draw()
	b := buf[:0]
	if g.set {
		b = append(b, "*3\r\n$3\r\nSET\r\n$"...)
	} else {
		b = append(b, "*2\r\n$3\r\nGET\r\n$"...)
	}
	b = strconv.AppendInt(b, int64(len(g.keyText)), 10)
	b = append(b, "\r\n"...)
	b = append(b, g.keyText...)
	b = append(b, "\r\n"...)
	if g.set {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(g.size), 10)
		b = append(b, "\r\n"...)
		b = appendValue(b, g.key, g.size)
		b = append(b, "\r\n"...)
	}
	return b
}

func (f *respFramer) reply(b []byte) (int, error) {
	n, err := respValue(b, 0, 0)
	if n <= 0 || err != nil {
		return 0, err
	}
	switch {
	case b[0] == '-':
		return 0, badf("error reply %q", b[1:n-2])
	case f.kv == nil:
		if !bytes.Equal(b[:n], []byte("+PONG\r\n")) {
			return 0, badf("want +PONG to PING")
		}
	case f.kv.set:
		if !bytes.Equal(b[:n], []byte("+OK\r\n")) {
			return 0, badf("want +OK to SET %s", f.kv.keyText)
		}
	case b[0] != '$':
		return 0, badf("want a bulk string or null to GET %s", f.kv.keyText)
	case bytes.Equal(b[:n], []byte("$-1\r\n")):
		// A key not set yet.
	default:
		hdr := bytes.IndexByte(b, '\n') + 1
		v := b[hdr : n-2]
		if len(v) != f.kv.size {
			return 0, badf("GET %s returned %d bytes, want %d (the value SET by this key space)", f.kv.keyText, len(v), f.kv.size)
		}
		if i := valueDiffers(v, f.kv.key); i >= 0 {
			return 0, badf("GET %s: value byte %d is %q, want %q", f.kv.keyText, i, v[i], valueByte(f.kv.key, i))
		}
	}
	return n, nil
}

// respValue frames the RESP value at b[at:]: it returns the offset just
// past it, 0 when b ends first, or a *badReply when the bytes are not
// RESP. depth bounds nested arrays.
func respValue(b []byte, at, depth int) (int, error) {
	if at >= len(b) {
		return 0, nil
	}
	i := bytes.Index(b[at:], crlf)
	if i < 0 {
		if len(b)-at > 64<<10 {
			return 0, badf("RESP line longer than 64 KiB at offset %d", at)
		}
		return 0, nil
	}
	line, end := b[at+1:at+i], at+i+2
	switch b[at] {
	case '+', '-':
		return end, nil
	case ':':
		if _, ok := parseSigned(line); !ok {
			return 0, badf("RESP integer %q at offset %d is not a number", line, at)
		}
		return end, nil
	case '$':
		n, ok := parseSigned(line)
		switch {
		case !ok || n < -1:
			return 0, badf("RESP bulk length %q at offset %d is not a length", line, at)
		case n == -1:
			return end, nil
		}
		stop := int64(end) + n + 2
		if int64(len(b)) < stop {
			return 0, nil
		}
		if b[stop-2] != '\r' || b[stop-1] != '\n' {
			return 0, badf("RESP bulk string of %d bytes at offset %d not followed by CRLF", n, at)
		}
		return int(stop), nil
	case '*':
		n, ok := parseSigned(line)
		if !ok || n < -1 {
			return 0, badf("RESP array length %q at offset %d is not a length", line, at)
		}
		if depth >= 16 {
			return 0, badf("RESP arrays nested deeper than 16 at offset %d", at)
		}
		for k := int64(0); k < n; k++ {
			next, err := respValue(b, end, depth+1)
			if next == 0 || err != nil {
				return 0, err
			}
			end = next
		}
		return end, nil
	}
	return 0, badf("RESP type byte %q at offset %d is none of + - : $ *", b[at], at)
}

// parseSigned reads a decimal number that may begin with '-'.
func parseSigned(b []byte) (int64, bool) {
	if len(b) > 0 && b[0] == '-' {
		n, ok := parseDecimal(b[1:])
		return -n, ok
	}
	return parseDecimal(b)
}

// respWorkload is Options.Workload for RESP: PING without a mix.
func respWorkload(o Options) string {
	if o.Mix == (Mix{}) {
		return "PING"
	}
	return kvWorkload(o, o.Mix)
}
