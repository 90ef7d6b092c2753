package inprocess_test

import (
	"context"
	"testing"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/bench/command"
	"github.com/resocket/resocket/resockettest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var sizes = []int{16, 1 << 10, 64 << 10}

// startServer starts the command server in this process, closed when the
// benchmark ends.
func startServer(b *testing.B) *resockettest.Server {
	b.Helper()
	srv, err := command.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return srv
}

// rawDial is the raw twin's socket: coder/websocket, no read limit.
// conn is what the raw socket and resocket's Client both offer: the
// twins of a benchmark run the same code on either.
type conn interface {
	Write(ctx context.Context, typ websocket.MessageType, p []byte) error
	Read(ctx context.Context) (websocket.MessageType, []byte, error)
}

func rawDial(b *testing.B, url string) *websocket.Conn {
	b.Helper()
	c, _, err := websocket.Dial(context.Background(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	c.SetReadLimit(-1)
	return c
}

// newClient is a resocket client with no read limit (as the raw twin),
// and opts.
func newClient(b *testing.B, url string, opts ...resocket.Option) *resocket.Client {
	b.Helper()
	c, err := resocket.Dial(context.Background(), url, append([]resocket.Option{resocket.WithReadLimit(-1)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// send writes a command with write, a raw socket's or a client's Write.
func send(ctx context.Context, write func(context.Context, websocket.MessageType, []byte) error, cmd string) {
	if err := write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		panic(err)
	}
}
