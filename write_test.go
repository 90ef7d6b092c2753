package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/internal/gateway"
	"github.com/resocket/resocket/resockettest"
)

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
	go func() { written <- c.Write(bounded(t), websocket.MessageText, []byte("early")) }()
	if err := c.Connect(bounded(t)); err != nil {
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
		go c.Connect(bounded(t))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err = c.Write(ctx, websocket.MessageText, []byte("x"))
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for an open socket") {
			t.Fatalf("Write = %v", err)
		}
	})
	t.Run("bad-type", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Write(bounded(t), 0, nil); err == nil || !strings.Contains(err.Error(), "message type") {
			t.Fatalf("Write(type 0) = %v", err)
		}
	})
	t.Run("after-close", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := c.Write(bounded(t), websocket.MessageText, nil); err != resocket.ErrClosed {
			t.Fatalf("Write after Close = %v, want ErrClosed", err)
		}
		if _, _, err := c.Read(bounded(t)); err != resocket.ErrClosed {
			t.Fatalf("Read after Close = %v, want ErrClosed", err)
		}
	})
}

// A write that fails on a dead socket retires it: the next Write waits for
// the new socket instead of failing on the old one again.
func TestFailedWriteRetiresSocket(t *testing.T) {
	t.Parallel()
	for i := 0; i < 5; i++ {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Reset()}})
		c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		failures := 0
		for n := 0; n < 100; n++ {
			err := c.Write(bounded(t), websocket.MessageText, []byte("x"))
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
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	first, started := make(chan error, 1), make(chan struct{})
	payload := make([]byte, big)
	// 32 MiB through -race on a loaded machine: the big write took 13 s
	// under go test -race -cpu 4 beside another run, against 2 s idle.
	const bigWriteLimit = 60 * time.Second
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), bigWriteLimit)
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
	ctx, cancel = context.WithTimeout(context.Background(), bigWriteLimit)
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
	if err := c.Connect(bounded(t)); err != nil {
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
			if err := c.Connect(bounded(t)); err != nil {
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
	if err := c.Connect(bounded(t)); err != nil {
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
		if err := c.Connect(bounded(t)); err != nil {
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

// Sends paced by the write limiter stay under the gateway's limit; the
// same burst without it is closed with 4008.
func TestWriteLimiterKeepsUnderTheSendLimit(t *testing.T) {
	// Heartbeats every 250 ms (two or three in a send window); the
	// limiter allows 3 sends per window, at departure. Arrival can bunch
	// two adjacent windows' sends together (6), which with the beats stays
	// within the gateway's 10.
	rules := gatewayRules
	rules.HeartbeatInterval = 250 * time.Millisecond
	const burst, perWindow = 15, 3
	send := func(t *testing.T, s *shard.Shard) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		for i := 0; i < burst; i++ {
			s.Send(ctx, 3, i)
		}
	}
	t.Run("paced", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, rules)
		s, rec := runShard(t, g, shard.Config{WriteLimiter: resocket.NewLimiter(perWindow, rules.SendWindow)})
		start := time.Now()
		send(t, s)
		waitRecords(t, g, "message", burst)
		if took := time.Since(start); took < (burst/perWindow-1)*rules.SendWindow*9/10 {
			t.Fatalf("%d sends took %v: not paced", burst, took)
		}
		if n := countEvents[resocket.Disconnected](rec); n != 0 {
			t.Fatalf("%d disconnects: %v", n, rec.all())
		}
	})
	t.Run("unpaced", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, rules)
		s, rec := runShard(t, g, shard.Config{})
		send(t, s)
		if d := rec.disconnected(t); d.Code != gateway.CloseRateLimited {
			t.Fatalf("got %d %v, want the gateway's 4008", d.Code, d.Err)
		}
	})
}

// Write's ctx bounds the limiter's wait, Close cuts it, and the client's
// own frames and the heartbeat's beats never wait for it.
func TestWriteLimiterWait(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	s, rec := runShard(t, g, shard.Config{WriteLimiter: resocket.NewLimiter(1, time.Hour)})
	c := s.Client()
	if err := s.Send(bounded(t), 3, "one"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := c.Write(ctx, websocket.MessageText, []byte(`{"op":3}`))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "resocket: write: waiting for the write limiter") {
		t.Fatalf("Write past the limit = %v", err)
	}
	before := len(g.Records("heartbeat"))
	waitRecords(t, g, "heartbeat", before+3) // beats bypass the spent limiter
	if n := countEvents[resocket.Disconnected](rec); n != 0 {
		t.Fatalf("%d disconnects: the heartbeat waited for the write limiter", n)
	}
	blocked := make(chan error, 1)
	go func() { blocked <- c.Write(bounded(t), websocket.MessageText, []byte(`{"op":3}`)) }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-blocked:
		mustErrorIs(t, err, resocket.ErrClosed)
	case <-time.After(waitLimit):
		t.Fatal("Close did not cut a Write waiting for the limiter")
	}
	// The close frame is the client's own: it went out past the spent limiter.
	if r := waitRecords(t, g, "closed", 1)[0]; r.Detail != "1000" {
		t.Fatalf("the gateway saw the socket end with %s, want the client's 1000", r.Detail)
	}
}

// TestClientWriteFromAHandlerWhoseSocketEnded: Client.Write cannot wait
// for the next socket from inside the handler (the next socket waits for
// the handler): it says so at once.
func TestClientWriteFromAHandlerWhoseSocketEnded(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
	var c *resocket.Client
	got := make(chan error, 1)
	c, _ = newRecorded(t, srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		if m.Attempt != 1 {
			return
		}
		m.Session.Reconnect(4000, "", resocket.ActionRetry)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		got <- c.Write(ctx, websocket.MessageText, []byte("late"))
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		mustErrorIs(t, err, resocket.ErrSocketEnded)
	case <-time.After(waitLimit / 2):
		t.Fatal("Client.Write from the handler waited for a socket that waits for the handler")
	}
}
