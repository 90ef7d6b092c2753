package inprocess_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/bench/command"
)

// BenchmarkStream: one-way server-to-client streaming; ns/op is the time
// per message received.
func BenchmarkStream(b *testing.B) {
	url := startServer(b).URL
	for _, size := range sizes {
		b.Run(fmt.Sprintf("size=%d/impl=raw", size), func(b *testing.B) {
			c := rawDial(b, url)
			defer c.CloseNow()
			stream(b, c, size)
		})
		b.Run(fmt.Sprintf("size=%d/impl=resocket", size), func(b *testing.B) {
			c := newClient(b, url)
			defer c.Close()
			stream(b, c, size)
		})
		b.Run(fmt.Sprintf("size=%d/impl=handler", size), func(b *testing.B) { streamHandler(b, url, size) })
	}
}

// stream reads b.N messages the server streams to c, raw or resocket's
// Read.
func stream(b *testing.B, c conn, size int) {
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	send(ctx, c.Write, command.Stream(b.N, size))
	for i := 0; i < b.N; i++ {
		if _, _, err := c.Read(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func streamHandler(b *testing.B, url string, size int) {
	var n atomic.Int64
	want := int64(b.N)
	done := make(chan struct{})
	c := newClient(b, url, resocket.WithOnMessage(func(resocket.Message) {
		if n.Add(1) == want {
			close(done)
		}
	}))
	defer c.Close()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	send(context.Background(), c.Write, command.Stream(b.N, size))
	<-done
}
