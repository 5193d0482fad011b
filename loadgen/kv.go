package loadgen

import (
	"fmt"
	"strconv"
	"strings"
)

// Mix is the share of GET and SET requests of --proto redis and
// memcache: Get GETs for every Set SETs, drawn at random per request.
// The zero value means the protocol's default: PING for redis,
// DefaultMemcacheMix for memcache.
type Mix struct{ Get, Set int }

// DefaultMemcacheMix is memcache's mix when none is given: nine reads to
// a write, the usual shape of a cache's load.
var DefaultMemcacheMix = Mix{Get: 9, Set: 1}

// DefaultKeys is the key space of the GET/SET mixes when Options.Keys is 0.
const DefaultKeys = 1000

// ParseMix reads "GET:SET", e.g. "9:1" or "1:0".
func ParseMix(s string) (Mix, error) {
	g, st, ok := strings.Cut(s, ":")
	a, err1 := strconv.Atoi(strings.TrimSpace(g))
	b, err2 := strconv.Atoi(strings.TrimSpace(st))
	if !ok || err1 != nil || err2 != nil || a < 0 || b < 0 || a+b == 0 || a+b > 1_000_000 {
		return Mix{}, fmt.Errorf("mix %q: want GET:SET, two counts not both 0, e.g. 9:1", s)
	}
	return Mix{Get: a, Set: b}, nil
}

func (m Mix) String() string { return strconv.Itoa(m.Get) + ":" + strconv.Itoa(m.Set) }

// kvGen draws the requests of a GET/SET mix: the operation and the key,
// from the exchange's random state. A key's value is a function of the
// key (valueByte), so a GET's reply can be checked whichever connection
// set it last.
type kvGen struct {
	x       *exchange
	mix     Mix
	keys    int
	size    int
	prefix  string // "vs:SIZE:": runs with other value sizes use other keys
	digits  int    // key number width
	set     bool   // the current request is a SET
	key     int    // the current request's key number
	keyText []byte // the current key, rendered
}

func newKVGen(opts *Options, x *exchange, mix Mix) *kvGen {
	keys := opts.Keys
	if keys <= 0 {
		keys = DefaultKeys
	}
	g := &kvGen{x: x, mix: mix, keys: keys, size: opts.Size,
		prefix: "vs:" + strconv.Itoa(opts.Size) + ":", digits: len(strconv.Itoa(keys - 1))}
	g.keyText = make([]byte, 0, len(g.prefix)+g.digits)
	return g
}

// draw picks the next operation and key.
func (g *kvGen) draw() {
	g.set = int(g.x.next()%uint64(g.mix.Get+g.mix.Set)) >= g.mix.Get
	g.key = int(g.x.next() % uint64(g.keys))
	b := append(g.keyText[:0], g.prefix...)
	n := len(b) + g.digits
	b = b[:n]
	for i, k := n-1, g.key; i >= len(g.prefix); i-- {
		b[i] = byte('0' + k%10)
		k /= 10
	}
	g.keyText = b
}

// valueByte is byte i of key k's value: printable, and different for
// neighbouring keys.
func valueByte(k, i int) byte { return 'a' + byte((k+i)%26) }

// appendValue appends key k's value of size bytes.
func appendValue(b []byte, k, size int) []byte {
	for i := 0; i < size; i++ {
		b = append(b, valueByte(k, i))
	}
	return b
}

// valueDiffers returns the offset of the first byte of v that is not key
// k's value, or -1.
func valueDiffers(v []byte, k int) int {
	for i, c := range v {
		if c != valueByte(k, i) {
			return i
		}
	}
	return -1
}

// kvWorkload is Options.Workload for a GET/SET mix m: the mix, its key
// space and value size.
func kvWorkload(o Options, m Mix) string {
	keys := o.Keys
	if keys <= 0 {
		keys = DefaultKeys
	}
	size := o.Size
	if size <= 0 {
		size = DefaultSize
	}
	return fmt.Sprintf("GET:SET %s over %d keys, %d-byte values", m, keys, size)
}
