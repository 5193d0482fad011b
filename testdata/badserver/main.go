// Command badserver is a deliberately faulty ping-pong server for tests and
// demonstrations of volleyscope's error handling. It answers the first
// BADSERVER_GOOD requests (default 1000) correctly, then misbehaves as
// BADSERVER_MODE says: "wrong" (a wrong integer), "short" (two bytes, then
// close), "die" (the process exits with status 3), "silent" (no answer).
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
)

func main() {
	port := flag.Int("p", 0, "port")
	flag.Parse()
	good := int64(1000)
	if v, err := strconv.ParseInt(os.Getenv("BADSERVER_GOOD"), 10, 64); err == nil {
		good = v
	}
	mode := os.Getenv("BADSERVER_MODE")
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var n atomic.Int64
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			var b [4]byte
			for {
				if _, err := io.ReadFull(c, b[:]); err != nil {
					return
				}
				v := binary.BigEndian.Uint32(b[:])
				if v == 0 {
					os.Exit(0)
				}
				if n.Add(1) > good {
					switch mode {
					case "wrong":
						v += 41
					case "short":
						c.Write(b[:2])
						return
					case "die":
						fmt.Fprintln(os.Stderr, "badserver: dying on purpose after", good, "requests")
						os.Exit(3)
					case "silent":
						select {}
					}
				}
				binary.BigEndian.PutUint32(b[:], v+1)
				c.Write(b[:])
			}
		}()
	}
}
