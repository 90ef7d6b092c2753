// Server is the comparison benchmarks' peer, in its own process so that
// the client's CPU and allocations are measured alone. It prints its URL,
// then answers commands on each connection: "stream N S" sends N binary
// messages of S bytes; "echo" echoes every message until the client
// leaves.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/coder/websocket"
)

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
	fmt.Printf("ws://%s/\n", ln.Addr())
	go func() { // the parent closes stdin to stop us
		buf := make([]byte, 1)
		os.Stdin.Read(buf)
		os.Exit(0)
	}()
	http.Serve(ln, http.HandlerFunc(serve))
}

func serve(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	ctx := context.Background()
	for {
		typ, cmd, err := c.Read(ctx)
		if err != nil {
			return
		}
		f := strings.Fields(string(cmd))
		switch {
		case len(f) == 3 && f[0] == "stream":
			n, _ := strconv.Atoi(f[1])
			size, _ := strconv.Atoi(f[2])
			msg := make([]byte, size)
			for i := 0; i < n; i++ {
				if c.Write(ctx, websocket.MessageBinary, msg) != nil {
					return
				}
			}
		case len(f) == 1 && f[0] == "echo":
			for {
				typ, b, err := c.Read(ctx)
				if err != nil || c.Write(ctx, typ, b) != nil {
					return
				}
			}
		default:
			c.Write(ctx, typ, []byte("unknown command"))
		}
	}
}
