package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

func readText(t *testing.T, c *resocket.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Messages come out of Read once each, in the order sent, across a drop.
func TestReadOrderAcrossReconnects(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		// A FIN after the last message: everything sent is delivered. (An
		// RST would discard what still sits in the server's send buffer.)
		resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(50, "a%d"), resockettest.Hangup()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(50, "b%d"), resockettest.Close(websocket.StatusServiceRestart, "")}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(50, "c%d")}},
	)
	c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithReadQueue(4))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, prefix := range []string{"a", "b", "c"} {
		for i := 1; i <= 50; i++ {
			if got, want := readText(t, c), fmt.Sprintf("%s%d", prefix, i); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
	}
	if s := c.Stats(); s.Opens != 3 {
		t.Fatalf("opens = %d, want 3", s.Opens)
	}
}

// A Read whose ctx ends returns ctx's error and leaves the socket up.
func TestReadContextLeavesSocketUp(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, _, err := c.Read(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Read = %v, want DeadlineExceeded", err)
	}
	mustEchoOnFirstSocket(t, c, "still here", "a Read whose ctx ended cut the socket")
}

// A consumer slower than the pong timeout is not a dead peer: the pump
// waits on the full queue, the heartbeat does not fire.
func TestSlowConsumerIsNotDeadPeer(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(20, "m%d")}})
	c, err := resocket.Dial(context.Background(), srv.URL,
		fast(resocket.WithReadQueue(1), resocket.WithHeartbeat(20*time.Millisecond, 100*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(time.Second) // ten pong timeouts with the consumer stalled
	for i := 1; i <= 20; i++ {
		if got, want := readText(t, c), fmt.Sprintf("m%d", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if s := c.Stats(); s.HeartbeatTimeouts != 0 || s.Opens != 1 {
		t.Fatalf("stats %+v: a slow consumer was taken for a dead peer", s)
	}
	// The heartbeat still works once the consumer keeps up.
	time.Sleep(300 * time.Millisecond)
	if s := c.Stats(); s.HeartbeatTimeouts != 0 {
		t.Fatalf("heartbeat timeouts %d on a live peer", s.HeartbeatTimeouts)
	}
}

// Messages that arrived before a fatal close are still readable; then Read
// returns the fatal error.
func TestMessagesBeforeFatalCloseAreKept(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("last words"), resockettest.Close(4004, "bad token")}})
	c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	if got := readText(t, c); got != "last words" {
		t.Fatalf("got %q", got)
	}
	_, _, err = c.Read(context.Background())
	if websocket.CloseStatus(err) != 4004 || !errors.Is(err, resocket.ErrClosed) {
		t.Fatalf("Read = %v, want the fatal 4004 wrapped in ErrClosed", err)
	}
}

// Write waits for OPEN while CONNECTING and then writes to the live socket.
func TestWriteWaitsForOpen(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Delay: 100 * time.Millisecond, Steps: []resockettest.Step{resockettest.Echo()}})
	c, err := resocket.New(srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	written := make(chan error, 1)
	go func() { written <- c.Write(context.Background(), websocket.MessageText, []byte("early")) }()
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); got != "early" {
		t.Fatalf("echo %q", got)
	}
}

func TestWriteErrors(t *testing.T) {
	t.Parallel()
	t.Run("ctx-while-connecting", func(t *testing.T) {
		c, err := resocket.New(refusedURL(t), fast()...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go c.Connect(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err = c.Write(ctx, websocket.MessageText, []byte("x"))
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for an open socket") {
			t.Fatalf("Write = %v", err)
		}
	})
	t.Run("bad-type", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Write(context.Background(), 0, nil); err == nil || !strings.Contains(err.Error(), "message type") {
			t.Fatalf("Write(type 0) = %v", err)
		}
	})
	t.Run("after-close", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := c.Write(context.Background(), websocket.MessageText, nil); err != resocket.ErrClosed {
			t.Fatalf("Write after Close = %v, want ErrClosed", err)
		}
		if _, _, err := c.Read(context.Background()); err != resocket.ErrClosed {
			t.Fatalf("Read after Close = %v, want ErrClosed", err)
		}
	})
}

// Close works from every state and returns promptly.
func TestCloseFromEveryState(t *testing.T) {
	check := func(t *testing.T, c *resocket.Client, start time.Time) {
		t.Helper()
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("Close took %v", d)
		}
		if c.State() != resocket.StateClosed || c.Err() != resocket.ErrClosed {
			t.Fatalf("after Close: %v %v", c.State(), c.Err())
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
		if err := c.Connect(context.Background()); !errors.Is(err, resocket.ErrClosed) {
			t.Fatalf("Connect after Close = %v", err)
		}
	}
	t.Run("never-connected", func(t *testing.T) {
		t.Parallel()
		c, rec := newRecorded(t, "ws://127.0.0.1:9/", fast()...)
		start := time.Now()
		c.Close()
		check(t, c, start)
		equal(t, "states", rec.states(t), []resocket.State{resocket.StateClosing, resocket.StateClosed})
	})
	t.Run("dialing", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Delay: time.Minute})
		c, err := resocket.New(srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		connected := make(chan error, 1)
		go func() { connected <- c.Connect(context.Background()) }()
		for srv.Accepted() == 0 {
			time.Sleep(time.Millisecond)
		}
		start := time.Now()
		c.Close()
		check(t, c, start)
		if err := <-connected; err != resocket.ErrClosed {
			t.Fatalf("Connect = %v, want ErrClosed", err)
		}
	})
	t.Run("handshake", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		inHandshake := make(chan struct{})
		c, err := resocket.New(srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			close(inHandshake)
			<-ctx.Done()
			return ctx.Err()
		}))...)
		if err != nil {
			t.Fatal(err)
		}
		go c.Connect(context.Background())
		<-inHandshake
		start := time.Now()
		c.Close()
		check(t, c, start)
	})
	t.Run("inside-handshake", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		var c *resocket.Client
		c, err := resocket.New(srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			c.Close() // must not deadlock
			return ctx.Err()
		}))...)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := c.Connect(context.Background()); err != resocket.ErrClosed {
			t.Fatalf("Connect = %v, want ErrClosed", err)
		}
		check(t, c, start)
	})
	t.Run("backoff-wait", func(t *testing.T) {
		t.Parallel()
		c, err := resocket.New(refusedURL(t), resocket.WithBackoff(func() backoff.BackOff {
			return backoff.NewConstantBackOff(time.Hour)
		}))
		if err != nil {
			t.Fatal(err)
		}
		rec := record(c)
		go c.Connect(context.Background())
		rec.waitFor(t, "Retrying", func(e resocket.Event) bool { _, ok := e.(resocket.Retrying); return ok })
		start := time.Now()
		c.Close()
		check(t, c, start)
	})
	t.Run("open-sends-1000", func(t *testing.T) {
		t.Parallel()
		got := make(chan websocket.StatusCode, 1)
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			_, _, err := p.Conn.Read(ctx)
			got <- websocket.CloseStatus(err)
			return err
		})}})
		c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.Close()
		check(t, c, start)
		if code := <-got; code != websocket.StatusNormalClosure {
			t.Fatalf("server saw close code %d, want 1000", code)
		}
	})
	t.Run("open-silent-peer", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Silent(0)}})
		c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithCloseTimeout(100*time.Millisecond))...)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.Close()
		check(t, c, start) // bounded by the close timeout, not by the peer
	})
	t.Run("concurrent-and-from-event-consumer", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		c, err := resocket.New(srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		events := c.Events()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // closes from inside the event loop when OPEN
			defer wg.Done()
			for e := range events {
				if sc, ok := e.(resocket.StateChanged); ok && sc.To == resocket.StateOpen {
					c.Close()
				}
			}
		}()
		if err := c.Connect(context.Background()); err != nil && !errors.Is(err, resocket.ErrClosed) {
			t.Fatal(err)
		}
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); c.Close() }()
		}
		wg.Wait()
		check(t, c, time.Now())
	})
}

// Reconnect acts on a protocol's own signals.
func TestReconnect(t *testing.T) {
	for _, row := range []struct {
		action resocket.Action
		modes  []resocket.Mode
	}{
		{resocket.ActionRetry, []resocket.Mode{identify, resume}},
		{resocket.ActionReidentify, []resocket.Mode{identify, identify}},
		{resocket.ActionFatal, []resocket.Mode{identify}},
	} {
		t.Run(row.action.String(), func(t *testing.T) {
			t.Parallel()
			got := make(chan websocket.StatusCode, 1)
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
				_, _, err := p.Conn.Read(ctx)
				got <- websocket.CloseStatus(err)
				return err
			})}})
			var m modes
			c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHandshake(m.handshake))...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rec := record(c)
			if err := c.Reconnect(4900, "server said reconnect", row.action); err != nil {
				t.Fatal(err)
			}
			if code := <-got; code != 4900 {
				t.Fatalf("server saw %d, want 4900", code)
			}
			d := rec.disconnected(t)
			if d.Action != row.action || d.Code != 4900 || !errors.Is(d.Err, resocket.ErrReconnectRequested) {
				t.Fatalf("got %+v", d)
			}
			if row.action == resocket.ActionFatal {
				waitDone(t, c)
				mustErrorIs(t, c.Err(), resocket.ErrReconnectRequested)
			} else {
				rec.connected(t, 1)
			}
			equal(t, "modes", m.list(), row.modes)
		})
	}
	t.Run("bad-input", func(t *testing.T) {
		t.Parallel()
		c, err := resocket.New("ws://127.0.0.1:9/", fast()...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, call := range []struct {
			code   websocket.StatusCode
			reason string
			action resocket.Action
			want   string
		}{
			{1005, "", resocket.ActionRetry, "close code 1005"},
			{999, "", resocket.ActionRetry, "close code 999"},
			{4000, strings.Repeat("x", 200), resocket.ActionRetry, "reason"},
			{4000, "", resocket.Action(9), "invalid action"},
			{4000, "", resocket.ActionRetry, "not connected"},
		} {
			if err := c.Reconnect(call.code, call.reason, call.action); err == nil || !strings.Contains(err.Error(), call.want) {
				t.Fatalf("Reconnect(%d, %d bytes, %v) = %v, want an error naming %q", call.code, len(call.reason), call.action, err, call.want)
			}
		}
	})
	t.Run("cuts-the-wait", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Status: 503})
		c, rec := newRecorded(t, srv.URL, resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Hour) }))
		connected := make(chan error, 1)
		go func() { connected <- c.Connect(context.Background()) }()
		rec.waitFor(t, "Retrying", func(e resocket.Event) bool { _, ok := e.(resocket.Retrying); return ok })
		if err := c.Reconnect(4000, "", resocket.ActionRetry); err != nil {
			t.Fatal(err)
		}
		if err := <-connected; err != nil {
			t.Fatal(err)
		}
	})
}

// A Reconnect during the wait before an attempt reports its verdict like
// any disconnect, and the loop guard counts it.
func TestReconnectDuringWait(t *testing.T) {
	rows := []struct {
		name     string
		action   resocket.Action
		opts     []resocket.Option
		want     resocket.Action
		closedBy error
	}{
		{"fatal", resocket.ActionFatal, nil, resocket.ActionFatal, resocket.ErrReconnectRequested},
		{"reidentify", resocket.ActionReidentify, nil, resocket.ActionReidentify, nil},
		{"reidentify-trips-the-guard", resocket.ActionReidentify, []resocket.Option{resocket.WithMaxReidentify(1)}, resocket.ActionFatal, resocket.ErrReidentifyLoop},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t, resockettest.Script{Status: 503})
			var m modes
			opts := append([]resocket.Option{
				resocket.WithHandshake(m.handshake),
				resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Hour) }),
			}, row.opts...)
			c, rec := newRecorded(t, srv.URL, opts...)
			connected := make(chan error, 1)
			go func() { connected <- c.Connect(context.Background()) }()
			rec.waitFor(t, "Retrying", func(e resocket.Event) bool { _, ok := e.(resocket.Retrying); return ok })
			if err := c.Reconnect(4100, "from the protocol", row.action); err != nil {
				t.Fatal(err)
			}
			d := rec.waitFor(t, "the Reconnect's verdict", func(e resocket.Event) bool {
				d, ok := e.(resocket.Disconnected)
				return ok && d.Code == 4100
			}).(resocket.Disconnected)
			if d.Action != row.want || d.Reason != "from the protocol" || !errors.Is(d.Err, resocket.ErrReconnectRequested) {
				t.Fatalf("got %v %q %v, want %v", d.Action, d.Reason, d.Err, row.want)
			}
			err := <-connected
			if row.closedBy != nil {
				mustErrorIs(t, err, row.closedBy)
				mustErrorIs(t, c.Err(), resocket.ErrClosed)
				if websocket.CloseStatus(c.Err()) != 4100 {
					t.Fatalf("Err() = %v: want the Reconnect's code", c.Err())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			equal(t, "modes", m.list(), []resocket.Mode{identify})
			if n := c.Stats().Reidentifies; n != 1 {
				t.Fatalf("Reidentifies = %d, want 1", n)
			}
		})
	}
}

func TestConnectContextAndTwice(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, err := resocket.New(srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	cancel() // bounds only the first connection
	if err := c.Connect(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Connect = %v", err)
	}
	if err := c.Write(context.Background(), websocket.MessageText, []byte("after ctx")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); got != "after ctx" {
		t.Fatalf("echo %q", got)
	}
}

func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	c, err := resocket.New(refusedURL(t), resocket.WithBackoff(func() backoff.BackOff {
		return backoff.WithMaxRetries(&backoff.ZeroBackOff{}, 3)
	}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Connect(context.Background())
	mustErrorIs(t, err, resocket.ErrRetriesExhausted)
	mustErrorIs(t, err, resocket.ErrClosed)
	if n := c.Stats().Attempts; n != 4 {
		t.Fatalf("attempts = %d, want 4 (one plus three retries)", n)
	}
}

// The default schedule never gives up by itself: backoff/v4's 15-minute
// MaxElapsedTime does not leak through.
func TestDefaultBackoffNeverStops(t *testing.T) {
	b := resocket.ExponentialPart(resocket.DefaultBackoff())
	if b.MaxElapsedTime != 0 {
		t.Fatalf("MaxElapsedTime = %v, want 0", b.MaxElapsedTime)
	}
	b.Clock = fixedClock{time.Now().Add(100 * time.Hour)}
	for i := 0; i < 1000; i++ {
		if d := b.NextBackOff(); d == backoff.Stop || d > resocket.DefaultMaxDelay*12/10 {
			t.Fatalf("attempt %d: %v", i, d)
		}
	}
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// A write that fails on a dead socket retires it: the next Write waits for
// the new socket instead of failing on the old one again.
func TestFailedWriteRetiresSocket(t *testing.T) {
	t.Parallel()
	for i := 0; i < 5; i++ {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Reset()}})
		c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		failures := 0
		for n := 0; n < 100; n++ {
			err := c.Write(context.Background(), websocket.MessageText, []byte("x"))
			if err == nil && c.Stats().Opens == 2 {
				break
			}
			if err != nil {
				if failures++; failures > 1 {
					t.Fatalf("second failed write in a row: %v", err)
				}
			} else {
				failures = 0
			}
			time.Sleep(time.Millisecond)
		}
		if c.Stats().Opens != 2 {
			t.Fatalf("opens = %d, want 2", c.Stats().Opens)
		}
		c.Close()
	}
}

// A Write whose ctx ends while it waits behind another write has written
// nothing: the socket stays up, and both the write before it and the ones
// after it go through on the same socket.
func TestWriteWaitingItsTurnLeavesTheSocketUp(t *testing.T) {
	t.Parallel()
	const big = 32 << 20 // more than loopback's buffers hold: the write stalls
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Sleep(2 * time.Second), // not reading yet
		resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			for _, want := range []int{big, len("after")} {
				_, b, err := p.Conn.Read(ctx)
				if err != nil {
					return err
				}
				if len(b) != want {
					return fmt.Errorf("read %d bytes, want %d", len(b), want)
				}
			}
			return p.Conn.Write(ctx, websocket.MessageText, []byte("done"))
		}),
		resockettest.Echo(),
	}})
	c, _ := newRecorded(t, srv.URL, fast()...)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	first, started := make(chan error, 1), make(chan struct{})
	payload := make([]byte, big)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		close(started)
		first <- c.Write(ctx, websocket.MessageBinary, payload)
	}()
	<-started
	time.Sleep(100 * time.Millisecond) // the big write holds the socket
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := c.Write(ctx, websocket.MessageText, []byte("short"))
	cancel()
	mustErrorIs(t, err, context.DeadlineExceeded)
	ctx, cancel = context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("after")); err != nil {
		t.Fatalf("write after the timed-out one: %v", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("the big write: %v", err)
	}
	if got := readText(t, c); got != "done" {
		t.Fatalf("read %q, want done", got)
	}
	mustStayOnFirstSocket(t, c, "the timed-out write cut the socket")
}

// A Write whose ctx has already ended sends nothing and leaves the socket
// up. (coder/websocket cuts the socket of a write whose ctx ends, even one
// that ended before the write began: a Write that waited for OPEN until its
// deadline must not take the new socket down with it.)
func TestWriteWithAnEndedContextLeavesTheSocketUp(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, _ := newRecorded(t, srv.URL, fast()...)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 50; i++ {
		err := c.Write(ended, websocket.MessageText, []byte("never"))
		mustErrorIs(t, err, context.Canceled)
	}
	mustEchoOnFirstSocket(t, c, "after", "a write with an ended ctx cut the socket")
}

// A Write whose ctx ends while its message is still being written cuts
// the socket (half a frame cannot be taken back), and the disconnect says
// so: a 1006 that resumes, whose Err wraps the ctx's error. Both with the
// client's own transport and with a caller's RoundTripper, whose TCP
// connection the client cannot see.
func TestWriteCutMidMessageSaysSo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []resocket.Option
	}{
		{"own-transport", nil},
		{"callers-round-tripper", []resocket.Option{resocket.WithDialOptions(&websocket.DialOptions{
			HTTPClient: &http.Client{Transport: roundTripperFunc(http.DefaultTransport.(*http.Transport).Clone().RoundTrip)},
		})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const big = 32 << 20 // more than loopback's buffers hold: the write stalls
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
				resockettest.Sleep(time.Minute), // never reads
			}})
			c, rec := newRecorded(t, srv.URL, fast(tc.opts...)...)
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			payload := make([]byte, big)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err := c.Write(ctx, websocket.MessageBinary, payload)
			mustErrorIs(t, err, context.DeadlineExceeded)
			if !strings.Contains(err.Error(), "socket was cut") {
				t.Fatalf("the write was not cut mid-frame: %v", err)
			}
			d := rec.disconnected(t)
			if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry {
				t.Fatalf("verdict %v %v, want a 1006 retry", d.Code, d.Action)
			}
			if !errors.Is(d.Err, context.DeadlineExceeded) || !strings.Contains(d.Err.Error(), "Write's ctx ended") {
				t.Fatalf("the disconnect does not name the write that cut it: %v", d.Err)
			}
			rec.connected(t, 2)
		})
	}
}

// A Write whose ctx ends just as its message has gone out whole leaves
// the socket up: so does a process stopped mid-write (a laptop's sleep)
// that wakes with the deadline long past. coder/websocket, given the ctx,
// would cut the socket here. The connection under the client ends the
// ctx right after its write of the frame returns, and then lets the
// ctx's watchers run before the write returns up the stack.
func TestWriteWhoseCtxEndsAsItFinishesLeavesTheSocketUp(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	var arm atomic.Pointer[context.CancelFunc]
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &cancelAfterWrite{Conn: conn, arm: &arm}, nil
	}
	c, _ := newRecorded(t, srv.URL, fast(resocket.WithDialOptions(&websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}}))...)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		arm.Store(&cancel)
		msg := fmt.Sprintf("m%d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if ctx.Err() == nil {
			t.Fatal("the ctx did not end during the write")
		}
		if got := readText(t, c); got != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	mustStayOnFirstSocket(t, c, "a write that went out whole cut its socket")
}

// cancelAfterWrite ends the armed ctx after a write to the connection
// returns, and gives the ctx's watchers time to run.
type cancelAfterWrite struct {
	net.Conn
	arm *atomic.Pointer[context.CancelFunc]
}

func (c *cancelAfterWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if cancel := c.arm.Swap(nil); cancel != nil {
		(*cancel)()
		time.Sleep(20 * time.Millisecond)
	}
	return n, err
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A Write cut mid-frame by its ctx stays the verdict when the server was
// pinging meanwhile: the pongs wait behind the stalled write and then fail
// on the deadline that cut it, and that timeout is the write's doing.
// Several rounds, since which one the client hears of first is a race.
func TestWriteCutWhileTheServerPingsSaysSo(t *testing.T) {
	t.Parallel()
	const big = 32 << 20 // more than loopback's buffers hold: the write stalls
	payload := make([]byte, big)
	for round := 0; round < 8; round++ {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
			resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
				// A ping every 20 ms, written raw: coder/websocket's own Ping
				// closes the socket when its ctx ends mid-write, and a server
				// goroutine held up 20 ms on a loaded machine then reset the
				// client's write (seen once in go test -race -count=3 .).
				// Never reads the pongs or the write.
				for ctx.Err() == nil {
					if _, err := p.TCP.Write(resockettest.Frame(0x9, []byte("ping"))); err != nil {
						return err
					}
					resockettest.Sleep(20*time.Millisecond)(ctx, p)
				}
				return ctx.Err()
			}),
		}})
		c, rec := newRecorded(t, srv.URL, fast()...)
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := c.Write(ctx, websocket.MessageBinary, payload)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "socket was cut") {
			t.Fatalf("round %d: the write was not cut mid-frame: %v", round, err)
		}
		d := rec.disconnected(t)
		if !errors.Is(d.Err, context.DeadlineExceeded) || d.Action != resocket.ActionRetry {
			t.Fatalf("round %d: verdict %v %v %v, want the write's cut (a 1006 retry wrapping its ctx's error)", round, d.Code, d.Action, d.Err)
		}
		c.Close()
	}
}
