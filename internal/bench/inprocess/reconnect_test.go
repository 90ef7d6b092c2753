package inprocess_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/bench/command"
	"github.com/resocket/resocket/resockettest"
)

// hello is the handshake both twins make on every socket.
func hello(ctx context.Context, c *websocket.Conn) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(command.Hello)); err != nil {
		return err
	}
	_, _, err := c.Read(ctx)
	return err
}

func noDelay() backoff.BackOff { return &backoff.ZeroBackOff{} }

// BenchmarkReconnect: the server drops the socket (a TCP reset, or a 1012
// close); the time until the client is OPEN again with its handshake done,
// with a zero-delay schedule. The raw twin notices the drop and makes a
// fresh Dial plus the same handshake.
func BenchmarkReconnect(b *testing.B) {
	url := startServer(b).URL
	for _, drop := range []string{command.Drop, command.Close} {
		b.Run(fmt.Sprintf("by=%s/impl=raw", drop), func(b *testing.B) { reconnectRaw(b, url, drop) })
		b.Run(fmt.Sprintf("by=%s/impl=resocket", drop), func(b *testing.B) { reconnectClient(b, url, drop) })
	}
}

func reconnectRaw(b *testing.B, url, drop string) {
	ctx := context.Background()
	c := rawDial(b, url)
	hello(ctx, c)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		send(ctx, c.Write, drop)
		for {
			if _, _, err := c.Read(ctx); err != nil {
				break
			}
		}
		c.CloseNow()
		c = rawDial(b, url)
		if err := hello(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	c.CloseNow()
}

func reconnectClient(b *testing.B, url, drop string) {
	ctx := context.Background()
	c := newClient(b, url, resocket.WithBackoff(noDelay),
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error { return hello(ctx, s.Conn) }))
	defer c.Close()
	events, cancel := c.Subscribe(16)
	defer cancel()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		send(ctx, c.Write, drop)
		waitFor[resocket.Connected](events)
	}
}

// waitFor reads events until one of type E.
func waitFor[E resocket.Event](events <-chan resocket.Event) {
	for e := range events {
		if _, ok := e.(E); ok {
			return
		}
	}
}

// BenchmarkDeadPeer: a black-holed path with heartbeat interval I and
// timeout T; reports the time to notice as a multiple of I+T.
func BenchmarkDeadPeer(b *testing.B) {
	const interval, timeout = 50 * time.Millisecond, 50 * time.Millisecond
	srv := startServer(b)
	proxy, err := resockettest.StartProxy(srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer proxy.Close()
	c := newClient(b, proxy.URL, resocket.WithHeartbeat(interval, timeout), resocket.WithBackoff(noDelay))
	defer c.Close()
	events, cancel := c.Subscribe(64)
	defer cancel()
	var worst, total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		proxy.Last().Blackhole(true)
		waitFor[resocket.Disconnected](events)
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		waitFor[resocket.Connected](events)
	}
	b.ReportMetric(float64(total)/float64(b.N)/float64(interval+timeout), "x(I+T)")
	b.ReportMetric(float64(worst)/float64(interval+timeout), "worst-x(I+T)")
}
