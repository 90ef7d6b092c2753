package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/otelresocket"
)

// fleet runs the clients, each instrumented before it connects.
type fleet struct {
	url string
	in  *otelresocket.Instrumentation
}

// run keeps n clients connected until ctx ends, then closes them all.
func (f *fleet) run(ctx context.Context, n int) {
	var wg sync.WaitGroup
	for id := 1; id <= n; id++ {
		wg.Go(func() { f.keep(ctx, id) })
	}
	wg.Wait()
}

// keep runs client id, and a new one in its place whenever one stops for
// good (the re-identify loop guard), until ctx ends. A stopped client
// stays instrumented for a moment, so that CLOSED shows on the page.
func (f *fleet) keep(ctx context.Context, id int) {
	for ctx.Err() == nil {
		c, err := resocket.New(fmt.Sprintf("%s?client=%d", f.url, id), clientOptions(id)...)
		if err != nil {
			return // the options and the URL are ours: not expected
		}
		stop := f.in.Instrument(c)
		f.drive(ctx, c)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
		stop()
	}
}

// drive connects c, reads everything it receives, writes now and then,
// and returns once c is closed: by ctx or for good.
func (f *fleet) drive(ctx context.Context, c *resocket.Client) {
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return // closed for good
			}
		}
	})
	wg.Go(func() { chatter(ctx, c) })
	if err := c.Connect(ctx); err == nil {
		select {
		case <-ctx.Done():
		case <-c.Done():
		}
	}
	c.Close()
	wg.Wait()
}

// chatter writes a short message every second or so while c lives. A
// write that finds no socket fails, as it would in a real program.
func chatter(ctx context.Context, c *resocket.Client) {
	for seq := 1; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
			return
		case <-time.After(500*time.Millisecond + rand.N(time.Second)):
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_ = c.Write(wctx, websocket.MessageText, fmt.Appendf(nil, "tick %d", seq))
		cancel()
	}
}

// clientOptions: a handshake (hello, then the server's welcome), a
// WebSocket heartbeat of a few hundred milliseconds, a short backoff.
func clientOptions(id int) []resocket.Option {
	return []resocket.Option{
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			if err := s.Conn.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "hello %d %v", id, s.Mode)); err != nil {
				return err
			}
			_, b, err := s.Conn.Read(ctx)
			if err == nil && string(b) != welcome {
				err = fmt.Errorf("handshake: got %q, want %q", b, welcome)
			}
			return err
		}),
		resocket.WithHeartbeat(heartbeatInterval, heartbeatTimeout),
		resocket.WithBackoff(func() backoff.BackOff {
			return backoff.NewExponentialBackOff(backoff.WithInitialInterval(50*time.Millisecond),
				backoff.WithMaxInterval(time.Second), backoff.WithMaxElapsedTime(0))
		}),
		resocket.WithConnectTimeout(5 * time.Second),
		resocket.WithStableAfter(time.Second),
	}
}
