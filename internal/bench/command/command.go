// Package command is the benchmarks' command protocol, written once: the
// commands a benchmark client sends as its first message (Stream, Echo,
// Hello, Drop, Close), and Serve, the server's side of them. The
// command server in its own process (../server) and the in-process
// benchmarks (../inprocess) both serve it with Start.
package command

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/coder/websocket"

	"github.com/resocket/resocket/resockettest"
)

// The commands without arguments. The server reads any message type and
// answers Hello with the same type.
const (
	// Echo echoes every later message until the client leaves.
	Echo = "echo"
	// Hello is a handshake: the server answers "ok".
	Hello = "hello"
	// Drop resets the TCP connection, without a close frame.
	Drop = "drop"
	// Close closes the socket with 1012 (service restart).
	Close = "close"
)

// HelloReply is the server's answer to Hello.
const HelloReply = "ok"

// Stream asks the server for n binary messages of size bytes, sent as fast
// as it can.
func Stream(n, size int) string {
	return fmt.Sprintf("stream %d %d", n, size)
}

// Start starts a command server on addr, a loopback address ("127.0.0.1:0"
// for a free port). Its URL is in the result's URL. The caller must Close
// it.
func Start(addr string) (*resockettest.Server, error) {
	srv, err := resockettest.Start(addr)
	if err != nil {
		return nil, err
	}
	srv.SetRecording(false) // a benchmark's connections and messages are not kept
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{Serve}})
	return srv, nil
}

// Serve answers commands on one socket until the client leaves or a
// command ends the socket. It is a resockettest.Step.
func Serve(ctx context.Context, p *resockettest.Peer) error {
	for {
		typ, msg, err := p.Conn.Read(ctx)
		if err != nil {
			return err
		}
		f := strings.Fields(string(msg))
		switch {
		case len(f) == 3 && f[0] == "stream":
			n, _ := strconv.Atoi(f[1])
			size, _ := strconv.Atoi(f[2])
			err = stream(ctx, p.Conn, n, size)
		case len(f) == 1 && f[0] == Echo:
			return echo(ctx, p.Conn)
		case len(f) == 1 && f[0] == Hello:
			err = p.Conn.Write(ctx, typ, []byte(HelloReply))
		case len(f) == 1 && f[0] == Drop:
			return resockettest.Reset()(ctx, p)
		case len(f) == 1 && f[0] == Close:
			return resockettest.Close(websocket.StatusServiceRestart, "")(ctx, p)
		default:
			err = p.Conn.Write(ctx, typ, []byte("unknown command"))
		}
		if err != nil {
			return err
		}
	}
}

func stream(ctx context.Context, c *websocket.Conn, n, size int) error {
	msg := make([]byte, size)
	for i := 0; i < n; i++ {
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			return err
		}
	}
	return nil
}

func echo(ctx context.Context, c *websocket.Conn) error {
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return err
		}
	}
}
