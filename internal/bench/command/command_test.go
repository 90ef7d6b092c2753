package command_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket/internal/bench/command"
)

func dial(t *testing.T, ctx context.Context, first string) *websocket.Conn {
	t.Helper()
	srv, err := command.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c, _, err := websocket.Dial(ctx, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	if err := c.Write(ctx, websocket.MessageText, []byte(first)); err != nil {
		t.Fatal(err)
	}
	return c
}

func read(t *testing.T, ctx context.Context, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	typ, p, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return typ, string(p)
}

func TestCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Run("stream", func(t *testing.T) {
		c := dial(t, ctx, command.Stream(3, 5))
		for i := 0; i < 3; i++ {
			if typ, p := read(t, ctx, c); typ != websocket.MessageBinary || len(p) != 5 {
				t.Fatalf("message %d: %v of %d bytes, want binary of 5", i, typ, len(p))
			}
		}
	})
	t.Run("hello, then echo", func(t *testing.T) {
		c := dial(t, ctx, command.Hello)
		if _, p := read(t, ctx, c); p != command.HelloReply {
			t.Fatalf("hello: %q, want %q", p, command.HelloReply)
		}
		c.Write(ctx, websocket.MessageText, []byte(command.Echo))
		c.Write(ctx, websocket.MessageBinary, []byte(command.Hello))
		if typ, p := read(t, ctx, c); typ != websocket.MessageBinary || p != command.Hello {
			t.Fatalf("echo: %v %q, want the binary message back", typ, p)
		}
	})
	t.Run("drop", func(t *testing.T) {
		_, _, err := dial(t, ctx, command.Drop).Read(ctx)
		if err == nil || websocket.CloseStatus(err) != -1 {
			t.Fatalf("drop: %v, want a network error without a close frame", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		_, _, err := dial(t, ctx, command.Close).Read(ctx)
		if websocket.CloseStatus(err) != websocket.StatusServiceRestart {
			t.Fatalf("close: %v, want 1012", err)
		}
	})
}
