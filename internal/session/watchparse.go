package session

import (
	"bytes"

	"github.com/volleyscope/volleyscope/loadgen"
)

// The watch's request parsers: from the first bytes of a send (a
// client's, or a read of the server's) and the send's full length, how
// many requests it holds. A send that holds two or more is several
// requests in flight at once, which timing alone cannot see: the client
// wrote them with one syscall (redis-benchmark -P), and the server's
// replies come back as one stretch of traffic.
//
// Each parser reads only the start of a request: enough to know its
// length (RESP's declared counts and lengths, HTTP's headers and
// Content-Length, memcached's command line and data length). The rest of
// a request may lie beyond the capture or in the next send; its length
// says where the next request begins.

// reqStatus is what a parser says of the bytes at a request's start.
type reqStatus int

const (
	reqOK      reqStatus = iota // a request of this protocol, of the length returned
	reqUnknown                  // it begins like one, but its length lies beyond the bytes seen
	reqBad                      // not a request of this protocol
	reqGiveUp                   // one of this protocol whose length its headers do not say (HTTP chunked)
)

// reqParser finds the length of the request at b's start. more says
// whether bytes beyond b belong to the send (b is a truncated capture).
type reqParser func(b []byte, more bool) (n int64, st reqStatus)

// watchProtos is the parsers, in the order a connection's first send is
// tried: the first that finds a request names the connection's protocol
// for the rest of it. RESP's inline commands come last, as any text line
// would do for them: only an upper-case command word is taken as one on a
// connection not yet known (memcached's commands are lower case).
var watchProtos = []struct {
	proto loadgen.Proto
	parse reqParser
}{
	{loadgen.HTTP, httpRequest},
	{loadgen.Redis, respRequest},
	{loadgen.Memcache, memcacheRequest},
	{loadgen.Redis, func(b []byte, more bool) (int64, reqStatus) { return respInline(b, more, true) }},
}

// parserOf is a known protocol's parser, for a connection's later sends.
func parserOf(p loadgen.Proto) reqParser {
	switch p {
	case loadgen.HTTP:
		return httpRequest
	case loadgen.Memcache:
		return memcacheRequest
	case loadgen.Redis:
		return func(b []byte, more bool) (int64, reqStatus) {
			if len(b) > 0 && b[0] == '*' {
				return respRequest(b, more)
			}
			return respInline(b, more, false)
		}
	}
	return nil
}

// Bounds on what a parser believes: a length beyond them is garbage, not
// a request.
const (
	maxReqLen    = 1 << 30
	maxRESPArgs  = 1 << 20
	maxLineBytes = 64 << 10
)

// line is b's first line without its end, and the bytes through the end
// ("\r\n", or "\n" alone as RESP's inline commands allow); ok is false
// when b holds no line end.
func line(b []byte) (l []byte, n int, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, 0, false
	}
	l = b[:i]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	return l, i + 1, true
}

// digitsCut says whether b is the start of a count's line cut short:
// digits, then at most the "\r" of its end.
func digitsCut(b []byte) bool {
	b = bytes.TrimSuffix(b, []byte("\r"))
	return len(b) <= 10 && bytes.IndexFunc(b, func(r rune) bool { return r < '0' || r > '9' }) < 0
}

// decimal parses a non-negative decimal number of at most 10 digits.
func decimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// respRequest: a RESP array of bulk strings ("*N\r\n" then N times
// "$L\r\n" and L bytes and "\r\n"), as every Redis client library sends.
func respRequest(b []byte, more bool) (int64, reqStatus) {
	if len(b) == 0 || b[0] != '*' {
		return 0, reqBad
	}
	l, at, ok := line(b)
	if !ok {
		if digitsCut(b[1:]) {
			return 0, reqUnknown
		}
		return 0, reqBad
	}
	n, ok := decimal(l[1:])
	if !ok || n < 1 || n > maxRESPArgs {
		return 0, reqBad
	}
	pos := int64(at)
	for i := int64(0); i < n; i++ {
		if pos >= int64(len(b)) {
			return 0, reqUnknown // the next argument's header lies beyond the capture
		}
		rest := b[pos:]
		if rest[0] != '$' {
			return 0, reqBad
		}
		l, k, ok := line(rest)
		if !ok {
			if digitsCut(rest[1:]) {
				return 0, reqUnknown
			}
			return 0, reqBad
		}
		size, ok := decimal(l[1:])
		if !ok || size > maxReqLen {
			return 0, reqBad
		}
		pos += int64(k) + size + 2
		// The argument's closing "\r\n", where the capture shows it.
		if end := pos - 2; end+2 <= int64(len(b)) && (b[end] != '\r' || b[end+1] != '\n') {
			return 0, reqBad
		}
	}
	return pos, reqOK
}

// respInline: an inline command, one line of words ("PING\r\n"). upper
// asks for an upper-case command word, for a connection whose protocol
// is not known yet.
func respInline(b []byte, more, upper bool) (int64, reqStatus) {
	word := b
	if i := bytes.IndexAny(b, " \r\n"); i >= 0 {
		word = b[:i]
	}
	if len(word) == 0 || len(word) > 32 || !(word[0] >= 'A' && word[0] <= 'Z' || !upper && word[0] >= 'a' && word[0] <= 'z') {
		return 0, reqBad // a command's name begins with a letter
	}
	for _, c := range word {
		isUpper := c >= 'A' && c <= 'Z'
		if !(isUpper || c == '_' || !upper && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9')) {
			return 0, reqBad
		}
	}
	l, n, ok := line(b)
	if !ok {
		if len(word) == len(b) && !more {
			return 0, reqBad // a bare word, with nothing after it: not a command line
		}
		return 0, reqUnknown
	}
	if bytes.IndexFunc(l, func(r rune) bool { return r < ' ' && r != '\t' }) >= 0 {
		return 0, reqBad
	}
	return int64(n), reqOK
}

// httpMethods are the request methods of HTTP/1.1 (RFC 9110, and PATCH).
var httpMethods = [][]byte{[]byte("GET "), []byte("HEAD "), []byte("POST "), []byte("PUT "), []byte("DELETE "),
	[]byte("OPTIONS "), []byte("PATCH "), []byte("CONNECT "), []byte("TRACE ")}

// httpRequest: an HTTP/1.x request, its headers through the empty line,
// and a body of Content-Length bytes. A chunked body (Transfer-Encoding)
// has no length in the headers: the parser gives up on the connection.
func httpRequest(b []byte, more bool) (int64, reqStatus) {
	method := false
	for _, m := range httpMethods {
		if bytes.HasPrefix(b, m) {
			method = true
			break
		}
	}
	if !method {
		return 0, reqBad
	}
	first, _, ok := line(b)
	if ok && !bytes.Contains(first, []byte(" HTTP/1.")) {
		return 0, reqBad
	}
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, reqUnknown // headers beyond the capture (or in the next send)
	}
	head := b[:end+2]
	var body int64
	for h := head[bytes.IndexByte(head, '\n')+1:]; len(h) > 0; {
		l, n, _ := line(h)
		h = h[n:]
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return 0, reqBad
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			v, ok := decimal(value)
			if !ok || v > maxReqLen {
				return 0, reqBad
			}
			body = v
		case bytes.EqualFold(name, []byte("Transfer-Encoding")) && !bytes.EqualFold(value, []byte("identity")):
			return 0, reqGiveUp
		}
	}
	return int64(end+4) + body, reqOK
}

// memcacheRequest: a command line of memcached's text protocol, and for
// the storage commands the data block its line declares and "\r\n".
func memcacheRequest(b []byte, more bool) (int64, reqStatus) {
	i := bytes.IndexAny(b, " \r\n")
	if i < 0 {
		if len(b) < 10 && more {
			return 0, reqUnknown
		}
		return 0, reqBad
	}
	verb := string(b[:i])
	// The token that holds the data length, for the commands with data:
	// "set <key> <flags> <exptime> <bytes> [noreply]", cas with one more
	// token after bytes, and the meta "ms <key> <datalen> <flags>*".
	dataTok := -1
	switch verb {
	case "set", "add", "replace", "append", "prepend", "cas":
		dataTok = 4
	case "ms":
		dataTok = 2
	case "get", "gets", "gat", "gats", "delete", "incr", "decr", "touch", "mg", "md", "ma", "mn", "me",
		"stats", "version", "flush_all", "verbosity", "quit", "noop":
	default:
		return 0, reqBad
	}
	l, n, ok := line(b)
	if !ok {
		if more && len(b) < maxLineBytes {
			return 0, reqUnknown
		}
		return 0, reqBad
	}
	if dataTok < 0 {
		return int64(n), reqOK
	}
	toks := bytes.Fields(l)
	if len(toks) <= dataTok {
		return 0, reqBad
	}
	size, ok := decimal(toks[dataTok])
	if !ok || size > maxReqLen {
		return 0, reqBad
	}
	return int64(n) + size + 2, reqOK
}

// connParse is the parser's state of one connection.
type connParse struct {
	sk    uint64        // the socket the state belongs to
	proto loadgen.Proto // "" until a send is recognised
	// rest is the bytes of the last request still to come in the next
	// sends. When a request's length was beyond what was seen it is 0:
	// the next send is read from its start again.
	rest      int64
	gaveUp    bool  // a request the parser cannot measure: timed from then on
	pipelined bool  // a send held two or more requests
	sends     int64 // sends captured
	requests  int64 // requests begun in them
	mostInOne int   // the most requests held by one send
	last      int64 // the last capture's time
}

// send counts the requests that begin in one send of total bytes, of
// which data are the first (the capture). It returns how many began;
// the connection's protocol is found on its first recognised send.
func (c *connParse) send(data []byte, total int64) int {
	c.sends++
	if c.gaveUp {
		return 0
	}
	off := int64(0)
	switch {
	case c.rest > 0 && c.rest >= total:
		c.rest -= total // the middle of a long request
		return 0
	case c.rest > 0:
		off = c.rest
	}
	c.rest = 0
	cont := off > 0 // the send ends a request begun before it
	count := 0
	for off < total {
		if off >= int64(len(data)) {
			// More bytes after a whole request than the capture shows: a
			// request/response client sends nothing between requests, so
			// they begin another.
			if count > 0 || cont {
				count++
			}
			break
		}
		b, more := data[off:], total > int64(len(data))
		var n int64
		st := reqBad
		if c.proto != "" {
			n, st = parserOf(c.proto)(b, more)
		} else {
			for _, p := range watchProtos {
				n, st = p.parse(b, more)
				// A request's start cut short names the protocol only
				// where the capture cut it: a short send that merely
				// begins like one (a binary protocol's "*1") does not.
				if st == reqUnknown && !more {
					st = reqBad
				}
				if st != reqBad {
					c.proto = p.proto
					break
				}
			}
		}
		switch st {
		case reqGiveUp:
			c.gaveUp = true
			return count
		case reqUnknown:
			// A request begins, its length unseen: the next send is read
			// from its start.
			count++
			off = total
			continue
		case reqBad:
			// Not a request's start: the rest of the send tells nothing.
			off = total
			continue
		}
		count++
		if off+n > total {
			c.rest = off + n - total // the request goes on in the next send
		}
		off += n
	}
	c.requests += int64(count)
	// The requests the send holds: those it began, and the end of one
	// begun before, whose reply cannot have come yet.
	held := count
	if cont && count > 0 {
		held++
	}
	c.mostInOne = max(c.mostInOne, held)
	if held >= 2 {
		c.pipelined = true
	}
	return count
}
