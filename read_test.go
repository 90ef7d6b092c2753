package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/clock"
	"github.com/resocket/resocket/resockettest"
)

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
	c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithReadQueue(4))...)
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
	c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
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
	c, rec := newRecorded(t, srv.URL,
		fast(resocket.WithReadQueue(1), resocket.WithHeartbeat(20*time.Millisecond, 100*time.Millisecond))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // ten pong timeouts with the consumer stalled
	for i := 1; i <= 20; i++ {
		if got, want := readText(t, c), fmt.Sprintf("m%d", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if s := c.Stats(); s.HeartbeatTimeouts != 0 || s.Opens != 1 {
		t.Fatalf("stats %+v: a slow consumer was taken for a dead peer", s)
	}
	// The heartbeat still works once the consumer keeps up: a round trip
	// completes. (Whether a 100 ms pong is late on a loaded machine is
	// not this test's question: TestPingTimeoutOnTheClock checks the
	// timeout's edge.)
	before := countEvents[resocket.HeartbeatRTT](rec)
	waitFor(t, "a heartbeat round trip after the stall", func() bool { return countEvents[resocket.HeartbeatRTT](rec) > before })
}

// Messages that arrived before a fatal close are still readable; then Read
// returns the fatal error.
func TestMessagesBeforeFatalCloseAreKept(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("last words"), resockettest.Close(4004, "bad token")}})
	c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	if got := readText(t, c); got != "last words" {
		t.Fatalf("got %q", got)
	}
	_, _, err = c.Read(bounded(t))
	if websocket.CloseStatus(err) != 4004 || !errors.Is(err, resocket.ErrClosed) {
		t.Fatalf("Read = %v, want the fatal 4004 wrapped in ErrClosed", err)
	}
}

// ReadMessage tells which socket each message came from: the Attempt
// changes exactly at the socket boundary.
func TestReadMessageAttempt(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a1", "a2"), resockettest.Sleep(50 * time.Millisecond), resockettest.Reset()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.Send("b1"), resockettest.Echo()}},
	)
	c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for len(got) < 3 {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		m, err := c.ReadMessage(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s@%d", m.Data, m.Attempt))
	}
	equal(t, "messages", got, []string{"a1@1", "a2@1", "b1@2"})
}

// Messages reach the handler once each, in order, across a drop; Attempt
// changes at the socket boundary.
func TestHandlerOrderAcrossReconnects(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(50, "a%d"), resockettest.Sleep(50 * time.Millisecond), resockettest.Reset()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(50, "b%d"), resockettest.Echo()}},
	)
	var k collector
	c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithOnMessage(k.handle))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := k.wait(t, 100)
	for i, m := range got {
		want := fmt.Sprintf("a%d@1", i+1)
		if i >= 50 {
			want = fmt.Sprintf("b%d@2", i-49)
		}
		if m != want {
			t.Fatalf("message %d is %q, want %q", i, m, want)
		}
	}
}

// With WithOnMessage, the handshake of socket N+1 starts only after the
// handler returned for socket N's last message, however long it runs and
// however soon the socket ended.
func TestNextHandshakeWaitsForTheHandler(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Send("last"),
		func(ctx context.Context, p *resockettest.Peer) error {
			select { // the handler holds "last": reset the socket under it
			case <-entered:
			case <-ctx.Done():
			}
			return p.Reset()
		},
	}})
	var returned atomic.Bool
	early := make(chan bool, 2)
	c, err := resocket.Dial(bounded(t), srv.URL, fast(
		resocket.WithOnMessage(func(m resocket.Message) {
			if string(m.Data) == "last" {
				close(entered)
				time.Sleep(100 * time.Millisecond) // the reset lands meanwhile
				returned.Store(true)
			}
		}),
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			if s.Attempt == 2 {
				early <- !returned.Load()
			}
			return nil
		}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if receive(t, early) {
		t.Fatal("socket 2's handshake started while the handler ran for socket 1's last message")
	}
}

// Data is valid only during the call: the next message reuses the buffer.
func TestHandlerReusesTheBuffer(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("first", "again")}})
	var mu sync.Mutex
	var kept [][]byte
	var copies []string
	c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		mu.Lock()
		kept = append(kept, m.Data) // wrong on purpose: not a copy
		copies = append(copies, string(m.Data))
		mu.Unlock()
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "two messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(kept) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if copies[0] != "first" || copies[1] != "again" {
		t.Fatalf("copies %q", copies)
	}
	if string(kept[0]) != "again" {
		t.Fatalf("the first message's Data still reads %q: the buffer was not reused", kept[0])
	}
}

// A handler that runs long is a stalled consumer, not a dead peer; a
// black-holed path with an idle handler is a dead peer.
func TestHandlerStalledIsNotDead(t *testing.T) {
	t.Parallel()
	t.Run("stalled", func(t *testing.T) {
		t.Parallel()
		const interval = time.Second
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("slow", "after"), resockettest.Echo()}})
		var k collector
		in, release := make(chan struct{}), make(chan struct{})
		clk := clock.NewFake()
		c, rec := onClock(t, clk, srv.URL, resocket.WithHeartbeat(interval, interval/2), resocket.WithOnMessage(func(m resocket.Message) {
			if string(m.Data) == "slow" {
				close(in)
				<-release
			}
			k.handle(m)
		}))
		receive(t, in)
		for i := 0; i < 10; i++ { // ten heartbeat periods pass while the handler runs
			armed(t, clk, interval)
			arms := clk.Arms()
			clk.Advance(interval)
			if err := clk.WaitFor(func() bool { return clk.Arms() > arms }, waitLimit); err != nil {
				t.Fatal(err)
			}
		}
		close(release)
		k.wait(t, 2)
		if n := countEvents[resocket.Disconnected](rec); n != 0 || c.Stats().HeartbeatTimeouts != 0 {
			t.Fatalf("a slow handler was taken for a dead peer: %v", rec.all())
		}
	})
	t.Run("dead", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		proxy := resockettest.NewProxy(t, srv.Addr())
		var k collector
		c, rec := newRecorded(t, proxy.URL, fast(resocket.WithHeartbeat(20*time.Millisecond, 40*time.Millisecond), resocket.WithOnMessage(k.handle))...)
		if err := c.Connect(bounded(t)); err != nil {
			t.Fatal(err)
		}
		proxy.Last().Blackhole(true)
		if d := rec.disconnected(t); !errors.Is(d.Err, resocket.ErrHeartbeatTimeout) {
			t.Fatalf("got %v, want a heartbeat timeout", d.Err)
		}
	})
}

// A panic in the handler stops the client with an error naming it.
func TestHandlerPanicStopsTheClient(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("boom")}})
	c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		panic("handler bug: " + string(m.Data))
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	err = c.Err()
	if !errors.Is(err, resocket.ErrClosed) || !strings.Contains(err.Error(), "resocket: closed: message handler panicked: handler bug: boom") {
		t.Fatalf("Err = %v", err)
	}
}

// The handler may Write (the zero-hand-off echo) and Close; Read says
// where the messages go.
func TestHandlerWritesAndCloses(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Send("ping"),
		resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			_, b, err := p.Conn.Read(ctx)
			got <- string(b)
			return err
		}),
		resockettest.Send("close now"),
	}})
	var c *resocket.Client
	closed := make(chan struct{})
	c, err := resocket.New(srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		switch string(m.Data) {
		case "ping":
			if err := c.Write(bounded(t), websocket.MessageText, []byte("pong")); err != nil {
				panic(err)
			}
		case "close now":
			c.Close() // from the read goroutine: returns once CLOSED
			close(closed)
		}
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(bounded(t)); !errors.Is(err, resocket.ErrOnMessage) {
		t.Fatalf("Read = %v, want ErrOnMessage", err)
	}
	if m := <-got; m != "pong" {
		t.Fatalf("server got %q", m)
	}
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close inside the handler did not return")
	}
	if c.Err() != resocket.ErrClosed {
		t.Fatalf("Err = %v", c.Err())
	}
	if _, err := c.ReadMessage(bounded(t)); !errors.Is(err, resocket.ErrClosed) {
		t.Fatalf("ReadMessage after Close = %v", err)
	}
	if _, err := resocket.New(srv.URL, resocket.WithOnMessage(nil)); err == nil || !strings.Contains(err.Error(), "WithOnMessage: handler is nil") {
		t.Fatalf("WithOnMessage(nil): %v", err)
	}
}

// A 10 MB message against the default 1 MiB read limit is a fatal 1009
// naming WithReadLimit, and the client never holds the 10 MB.
func TestHostileHugeMessage(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.SendLarge(10 << 20)}})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	err = c.Err()
	if websocket.CloseStatus(err) != -1 || !errors.Is(err, websocket.ErrMessageTooBig) || !strings.Contains(err.Error(), "WithReadLimit") {
		t.Fatalf("Err() = %v: want our own 1009 naming WithReadLimit", err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 6<<20 {
		t.Fatalf("allocated %d bytes for a message refused at 1 MiB", allocated)
	}
}

// Invalid UTF-8 in a text message fails the connection with 1007 (fatal:
// the same bytes would fail again); the server is told so.
func TestHostileInvalidUTF8(t *testing.T) {
	t.Parallel()
	got := make(chan websocket.StatusCode, 1)
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Send("fine"),
		resockettest.Raw(resockettest.Frame(0x1, []byte{'b', 'a', 'd', 0xff, 0xfe})),
		resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			_, _, err := p.Conn.Read(ctx)
			got <- websocket.CloseStatus(err)
			return err
		}),
	}})
	c, rec := newRecorded(t, srv.URL, fast()...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	d := rec.disconnected(t)
	if d.Code != websocket.StatusInvalidFramePayloadData || d.Action != resocket.ActionFatal || !errors.Is(d.Err, resocket.ErrInvalidUTF8) {
		t.Fatalf("got %d %v %v, want 1007 fatal", d.Code, d.Action, d.Err)
	}
	if code := <-got; code != websocket.StatusInvalidFramePayloadData {
		t.Fatalf("server saw %d, want 1007", code)
	}
	if got := readText(t, c); got != "fine" {
		t.Fatalf("the valid message before it: %q", got)
	}
	waitDone(t, c)
	mustErrorIs(t, c.Err(), resocket.ErrInvalidUTF8)
}

// A server that floods faster than the consumer reads: memory stays
// bounded by the read queue (backpressure reaches TCP), the stalled
// consumer is not a dead peer, and every message arrives in order.
func TestHostileFlood(t *testing.T) {
	const n = 100000
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(n, "flood %d")}})
	c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHeartbeat(20*time.Millisecond, 500*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // the consumer stalls; the server keeps sending
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > 32<<20 {
		t.Fatalf("heap %d bytes while the consumer stalled", ms.HeapAlloc)
	}
	for i := 1; i <= n; i++ {
		if got, want := readText(t, c), fmt.Sprintf("flood %d", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if s := c.Stats(); s.HeartbeatTimeouts != 0 || s.Opens != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// A message over our read limit is a fatal 1009 whose error names the option.
func TestReadLimitIsFatal(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.SendLarge(4096)}})
	c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithReadLimit(1024))...)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	err = c.Err()
	if !strings.Contains(err.Error(), "WithReadLimit") || !errors.Is(err, websocket.ErrMessageTooBig) {
		t.Fatalf("Err() = %v: want ErrMessageTooBig naming WithReadLimit", err)
	}
	if _, _, err := c.Read(bounded(t)); !errors.Is(err, resocket.ErrClosed) {
		t.Fatalf("Read after fatal 1009: %v", err)
	}
}
