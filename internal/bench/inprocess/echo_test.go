package inprocess_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/bench/command"
)

// BenchmarkEcho: write a message, read its echo; ns/op is the round trip.
func BenchmarkEcho(b *testing.B) {
	url := startServer(b).URL
	for _, size := range sizes {
		msg := make([]byte, size)
		b.Run(fmt.Sprintf("size=%d/impl=raw", size), func(b *testing.B) {
			c := rawDial(b, url)
			defer c.CloseNow()
			echo(b, c, msg)
		})
		b.Run(fmt.Sprintf("size=%d/impl=resocket", size), func(b *testing.B) {
			c := newClient(b, url)
			defer c.Close()
			echo(b, c, msg)
		})
		b.Run(fmt.Sprintf("size=%d/impl=handler", size), func(b *testing.B) { echoHandler(b, url, msg) })
	}
}

// echo writes a message to c and reads its echo, b.N times, raw or
// resocket's Read.
func echo(b *testing.B, c conn, msg []byte) {
	ctx := context.Background()
	send(ctx, c.Write, command.Echo)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// echoHandler is the zero-hand-off echo: each echo's arrival writes the
// next message from the read goroutine itself.
func echoHandler(b *testing.B, url string, msg []byte) {
	ctx := context.Background()
	var c *resocket.Client
	var left atomic.Int64
	done := make(chan struct{})
	c = newClient(b, url, resocket.WithOnMessage(func(resocket.Message) {
		if left.Add(-1) == 0 {
			close(done)
			return
		}
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			panic(err)
		}
	}))
	defer c.Close()
	send(ctx, c.Write, command.Echo)
	left.Store(int64(b.N))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
		b.Fatal(err)
	}
	<-done
}
