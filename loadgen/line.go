package loadgen

import (
	"errors"
	"fmt"
	"strconv"
)

// LineOptions configure --proto line: one fixed request and one fixed
// reply, for any request/response server of a line-based protocol. The
// reply is complete once len(Expect) bytes have arrived.
type LineOptions struct {
	Request []byte // sent as is each round trip
	Expect  []byte // the exact reply
}

// Unescape reads a command-line byte string: \r, \n, \t, \\, \0 and \xHH
// stand for their bytes; anything else is itself.
func Unescape(s string) ([]byte, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, errors.New("a lone \\ at the end: write \\\\ for a backslash")
		}
		i++
		switch s[i] {
		case 'r':
			b = append(b, '\r')
		case 'n':
			b = append(b, '\n')
		case 't':
			b = append(b, '\t')
		case '0':
			b = append(b, 0)
		case '\\':
			b = append(b, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("\\x at offset %d: want two hex digits", i-1)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("\\x%s at offset %d: want two hex digits", s[i+1:i+3], i-1)
			}
			b = append(b, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("unknown escape \\%c at offset %d: want \\r, \\n, \\t, \\0, \\\\ or \\xHH", s[i], i-1)
		}
	}
	return b, nil
}
