package loadgen

import (
	"bytes"
	"strconv"
)

// memcacheFramer speaks memcached's text protocol: "get KEY" answered by
// "VALUE KEY FLAGS BYTES", the data and "END", or "END" alone for a
// miss; "set KEY 0 0 BYTES" with the data answered by "STORED". ERROR,
// CLIENT_ERROR and SERVER_ERROR replies are errors.
type memcacheFramer struct {
	kv *kvGen
}

func newMemcacheFramer(opts *Options, x *exchange) *memcacheFramer {
	mix := opts.Mix
	if mix == (Mix{}) {
		mix = DefaultMemcacheMix
	}
	return &memcacheFramer{kv: newKVGen(opts, x, mix)}
}

func (f *memcacheFramer) request(buf []byte) []byte {
	g := f.kv
	g.draw()
	b := buf[:0]
	if !g.set {
		b = append(b, "get "...)
		b = append(b, g.keyText...)
		return append(b, "\r\n"...)
	}
	b = append(b, "set "...)
	b = append(b, g.keyText...)
	b = append(b, " 0 0 "...)
	b = strconv.AppendInt(b, int64(g.size), 10)
	b = append(b, "\r\n"...)
	b = appendValue(b, g.key, g.size)
	return append(b, "\r\n"...)
}

var (
	mcEnd    = []byte("END")
	mcStored = []byte("STORED")
	mcValue  = []byte("VALUE ")
	mcEndNL  = []byte("\r\nEND\r\n")
)

func (f *memcacheFramer) reply(b []byte) (int, error) {
	i := bytes.Index(b, crlf)
	if i < 0 {
		if len(b) > 64<<10 {
			return 0, badf("reply line longer than 64 KiB")
		}
		return 0, nil
	}
	line, end := b[:i], i+2
	g := f.kv
	switch {
	case bytes.HasPrefix(line, []byte("ERROR")), bytes.HasPrefix(line, []byte("CLIENT_ERROR")), bytes.HasPrefix(line, []byte("SERVER_ERROR")):
		return 0, badf("error reply %q", line)
	case g.set:
		if !bytes.Equal(line, mcStored) {
			return 0, badf("want STORED to set %s", g.keyText)
		}
		return end, nil
	case bytes.Equal(line, mcEnd):
		return end, nil // a miss
	case !bytes.HasPrefix(line, mcValue):
		return 0, badf("want VALUE or END to get %s", g.keyText)
	}
	// VALUE KEY FLAGS BYTES [CAS]
	rest := line[len(mcValue):]
	key, rest, _ := bytes.Cut(rest, []byte(" "))
	_, rest, _ = bytes.Cut(rest, []byte(" ")) // flags
	nb, _, _ := bytes.Cut(rest, []byte(" "))
	if !bytes.Equal(key, g.keyText) {
		return 0, badf("VALUE for key %q, want %s", key, g.keyText)
	}
	n, ok := parseDecimal(nb)
	if !ok {
		return 0, badf("VALUE length %q is not a number", nb)
	}
	stop := int64(end) + n + int64(len(mcEndNL))
	if int64(len(b)) < stop {
		return 0, nil
	}
	v := b[end : int64(end)+n]
	if !bytes.Equal(b[int64(end)+n:stop], mcEndNL) {
		return 0, badf("VALUE of %d bytes not followed by END", n)
	}
	if len(v) != g.size {
		return 0, badf("get %s returned %d bytes, want %d (the value set by this key space)", g.keyText, len(v), g.size)
	}
	if j := valueDiffers(v, g.key); j >= 0 {
		return 0, badf("get %s: value byte %d is %q, want %q", g.keyText, j, v[j], valueByte(g.key, j))
	}
	return int(stop), nil
}

// memcacheWorkload is Options.Workload for memcache.
func memcacheWorkload(o Options) string {
	m := o.Mix
	if m == (Mix{}) {
		m = DefaultMemcacheMix
	}
	return kvWorkload(o, m)
}
