package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/resockettest"
)

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
		if err := c.Connect(bounded(t)); !errors.Is(err, resocket.ErrClosed) {
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
		go func() { connected <- c.Connect(bounded(t)) }()
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
		go c.Connect(bounded(t))
		receive(t, inHandshake)
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
		if err := c.Connect(bounded(t)); err != resocket.ErrClosed {
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
		go c.Connect(bounded(t))
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
		c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
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
		c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithCloseTimeout(100*time.Millisecond))...)
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
		if err := c.Connect(bounded(t)); err != nil && !errors.Is(err, resocket.ErrClosed) {
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

// A deploy: the old process closes with 4000, the new one starts with
// WithResume and gets the events it missed, once each.
func TestCloseWithKeepsTheSessionForTheNextProcess(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	var mu sync.Mutex
	var got []string
	onDispatch := func(p shard.Payload) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%s#%d", p.T, p.S))
		mu.Unlock()
	}
	old, _ := runShard(t, g, shard.Config{OnDispatch: onDispatch})
	g.Dispatch(0, "BEFORE", nil)
	waitFor(t, "BEFORE", func() bool { return old.Seq() == 2 })
	kept := old.Suspend()
	if r := waitRecords(t, g, "closed", 1)[0]; r.Detail != "4000" {
		t.Fatalf("the gateway saw the old process close with %s, want 4000", r.Detail)
	}
	g.Dispatch(0, "DURING", nil)
	_, rec := runShard(t, g, shard.Config{Resume: &kept, OnDispatch: onDispatch})
	first := rec.waitFor(t, "Connected", func(e resocket.Event) bool { _, ok := e.(resocket.Connected); return ok }).(resocket.Connected)
	if first.Mode != resocket.ModeResume || first.Attempt != 1 {
		t.Fatalf("the new process's first socket: %+v, want a resume", first)
	}
	if r := waitRecords(t, g, "resume", 1)[0]; r.Path != "/resume" {
		t.Fatalf("resumed at %q", r.Path)
	}
	waitFor(t, "the replay", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 4 })
	time.Sleep(50 * time.Millisecond) // a duplicate would come right behind
	mu.Lock()
	equal(t, "dispatches, once each across the two processes", got, []string{"READY#1", "BEFORE#2", "DURING#3", "RESUMED#4"})
	mu.Unlock()
}

func TestCloseWithBadInputAndStates(t *testing.T) {
	t.Parallel()
	c, err := resocket.New("ws://127.0.0.1:9/", fast()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []struct {
		code   websocket.StatusCode
		reason string
		want   string
	}{
		{1005, "", "close code 1005"}, {1006, "", "close code 1006"}, {1015, "", "close code 1015"},
		{999, "", "close code 999"}, {5000, "", "close code 5000"}, {2999, "", "close code 2999"},
		{4000, strings.Repeat("r", 124), "reason is 124 bytes"},
	} {
		if err := c.CloseWith(row.code, row.reason); err == nil || !strings.Contains(err.Error(), "resocket: CloseWith: "+row.want) {
			t.Fatalf("CloseWith(%d) = %v, want an error naming %q", row.code, err, row.want)
		}
	}
	if st := c.State(); st != resocket.StateConnecting {
		t.Fatalf("a refused CloseWith changed the state to %v", st)
	}
	if err := c.CloseWith(4000, "before connect"); err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	mustErrorIs(t, c.Err(), resocket.ErrClosed)

	// On an open socket the server sees the code; from many goroutines,
	// the first wins and all return.
	got := make(chan websocket.StatusCode, 1)
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
		_, _, err := p.Conn.Read(ctx)
		got <- websocket.CloseStatus(err)
		return err
	})}})
	c2, err := resocket.Dial(bounded(t), srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c2.CloseWith(1012, "deploy") }()
	}
	wg.Wait()
	if code := <-got; code != 1012 {
		t.Fatalf("server saw %d, want 1012", code)
	}
	if c2.Err() != resocket.ErrClosed {
		t.Fatalf("Err after CloseWith = %v, want ErrClosed", c2.Err())
	}
}

// CloseWith inside the handshake returns, and the client closes.
func TestCloseWithInsideTheHandshake(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	var c *resocket.Client
	ready := make(chan struct{})
	returned := make(chan struct{})
	c, err := resocket.New(srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		<-ready
		c.CloseWith(4000, "from the handshake")
		close(returned)
		return nil
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	close(ready)
	mustErrorIs(t, c.Connect(bounded(t)), resocket.ErrClosed)
	select {
	case <-returned:
	case <-time.After(waitLimit):
		t.Fatal("CloseWith inside the handshake did not return")
	}
}

// TestCloseWaitsForTheHandler: Close made while the handler runs returns
// after the handler returned; Close from inside the handler returns.
func TestCloseWaitsForTheHandler(t *testing.T) {
	t.Run("from outside", func(t *testing.T) {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
		entered, release := make(chan struct{}), make(chan struct{})
		var returned atomic.Bool
		c, _ := newRecorded(t, srv.URL, fast(resocket.WithOnMessage(func(resocket.Message) {
			close(entered)
			<-release
			time.Sleep(20 * time.Millisecond) // the handler's last work, after release
			returned.Store(true)
		}))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		receive(t, entered)
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		select {
		case <-closed:
			t.Fatal("Close returned while the handler was still running")
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		select {
		case <-closed:
		case <-time.After(waitLimit):
			t.Fatal("Close did not return after the handler did")
		}
		if !returned.Load() {
			t.Fatal("Close returned before the handler did")
		}
	})
	t.Run("from inside", func(t *testing.T) {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
		var c *resocket.Client
		closed := make(chan error, 1)
		c, _ = newRecorded(t, srv.URL, fast(resocket.WithOnMessage(func(resocket.Message) {
			c.Close()
			closed <- c.Err()
		}))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-closed:
			if err != resocket.ErrClosed {
				t.Fatalf("Err after Close from the handler: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Close from inside the handler did not return")
		}
		waitDone(t, c)
	})
}

// TestCloseFromAHandlerWhoseSocketWasCut: the socket is cut (a Reconnect
// from another goroutine) while the handler runs; the handler then closes
// the client. Neither may wait for the other.
func TestCloseFromAHandlerWhoseSocketWasCut(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
	entered, release := make(chan *resocket.Session), make(chan struct{})
	var c *resocket.Client
	closed := make(chan struct{})
	c, _ = newRecorded(t, srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		entered <- m.Session
		<-release
		c.Close()
		close(closed)
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s := receive(t, entered)
	if !s.Reconnect(4000, "cut while the handler runs", resocket.ActionRetry) {
		t.Fatal("Reconnect of the live socket returned false")
	}
	time.Sleep(20 * time.Millisecond) // the client waits for the handler now
	close(release)
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close from the handler of a cut socket did not return")
	}
	waitDone(t, c)
}

// TestCloseFromABeat: a Session.Heartbeat beat that closes the client
// (a protocol's "stop" seen while beating) must not wait for itself.
func TestCloseFromABeat(t *testing.T) {
	srv := resockettest.NewServer(t) // echoes: reads the beats
	var c *resocket.Client
	var once sync.Once
	closed := make(chan struct{})
	c, _ = newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(20*time.Millisecond, func(ctx context.Context) error {
			once.Do(func() { c.Close(); close(closed) })
			return nil
		})
		return nil
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatalf("Close from a beat did not return (state %v)", c.State())
	}
	waitDone(t, c)
}

// A beat that closes the client once its socket ended (a protocol's
// "stop" noticed as the socket goes) must not wait for the loop that is
// releasing that socket, nor the loop for it.
func TestCloseFromABeatAsItsSocketEnds(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.ReadMode(), resockettest.Sleep(100 * time.Millisecond), // beats go out meanwhile
		resockettest.Close(websocket.StatusGoingAway, "restart")}})
	var c *resocket.Client
	var once sync.Once
	closed := make(chan struct{})
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(time.Millisecond, func(ctx context.Context) error {
			once.Do(func() {
				<-s.Done()                        // the socket ended: the loop is letting it go
				time.Sleep(20 * time.Millisecond) // and waits for this beat
				c.Close()
				close(closed)
			})
			return nil
		})
		return s.Conn.Write(ctx, websocket.MessageText, []byte(s.Mode.String()))
	}))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatalf("Close from a beat of an ending socket did not return (state %v, events %v)", c.State(), rec.all())
	}
	waitDone(t, c)
	if c.Err() != resocket.ErrClosed || countEvents[resocket.Disconnected](rec) > 1 {
		t.Fatalf("Err %v, events %v; want ErrClosed and at most the 1001's Disconnected", c.Err(), rec.all())
	}
}

// Close and the caller's ctx stop the client with no verdict events.
func TestCallerStopsAreNotErrors(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, rec := newRecorded(t, srv.URL, fast()...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if c.Err() != resocket.ErrClosed {
		t.Fatalf("Err() = %v, want exactly ErrClosed", c.Err())
	}
	for _, e := range rec.all() {
		if _, ok := e.(resocket.Disconnected); ok {
			t.Fatalf("Close produced %#v", e)
		}
	}
	equal(t, "states", rec.states(t), []resocket.State{resocket.StateOpen, resocket.StateClosing, resocket.StateClosed})
}

// How a client ends, one rule: Close passes through CLOSING from any
// state; a client that ends by itself (a fatal verdict, Connect's ctx)
// passes through CLOSING only from OPEN, and goes straight from
// CONNECTING to CLOSED.
func TestHowAClientEnds(t *testing.T) {
	open, connecting, closing, closed := resocket.StateOpen, resocket.StateConnecting, resocket.StateClosing, resocket.StateClosed
	rows := []struct {
		name string
		plan resockettest.Script
		end  func(c *resocket.Client) error
		want []resocket.State
	}{
		{"close-before-connect", resockettest.Script{}, func(c *resocket.Client) error { return c.Close() },
			[]resocket.State{closing, closed}},
		{"close-while-connecting", resockettest.Script{Delay: time.Hour}, func(c *resocket.Client) error {
			go c.Connect(bounded(t))
			time.Sleep(50 * time.Millisecond)
			return c.Close()
		}, []resocket.State{closing, closed}},
		{"close-while-open", resockettest.Script{}, func(c *resocket.Client) error {
			if err := c.Connect(bounded(t)); err != nil {
				return err
			}
			return c.Close()
		}, []resocket.State{open, closing, closed}},
		{"connect-ctx-before-open", resockettest.Script{Delay: time.Hour}, func(c *resocket.Client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := c.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
				return errors.New("Connect did not report its ctx")
			}
			return nil
		}, []resocket.State{closed}},
		{"fatal-before-open", resockettest.Script{Status: 401}, func(c *resocket.Client) error {
			if err := c.Connect(bounded(t)); err == nil {
				return errors.New("a 401 connected")
			}
			return nil
		}, []resocket.State{closed}},
		{"fatal-while-open", resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4004, "authentication failed")}}, func(c *resocket.Client) error {
			if err := c.Connect(bounded(t)); err != nil {
				return err
			}
			receive(t, c.Done())
			return nil
		}, []resocket.State{open, closing, closed}},
		{"fatal-after-a-retry", resockettest.Script{Steps: []resockettest.Step{resockettest.Reset()}}, nil,
			[]resocket.State{open, connecting, closed}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t, row.plan)
			if row.end == nil { // a drop, then a 401: CONNECTING→CLOSED
				srv.SetDefault(resockettest.Script{Status: 401})
				row.end = func(c *resocket.Client) error {
					if err := c.Connect(bounded(t)); err != nil {
						return err
					}
					receive(t, c.Done())
					return nil
				}
			}
			c, rec := newRecorded(t, srv.URL, fast()...)
			if err := row.end(c); err != nil {
				t.Fatal(err)
			}
			waitDone(t, c)
			equal(t, "states", rec.states(t), row.want)
		})
	}
}
