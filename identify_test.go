package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/resockettest"
)

// identifyHandshake reads the server's hello, starts a heartbeat, takes
// the identify limiter, and sends its identify, as a gateway SDK does. It
// records when each identify was sent.
type identifyHandshake struct {
	mu   sync.Mutex
	sent []time.Time
	skip bool // identify without WaitIdentify (a bug the client must refuse)
}

func (h *identifyHandshake) run(ctx context.Context, s *resocket.Session) error {
	if _, _, err := s.Conn.Read(ctx); err != nil { // hello
		return err
	}
	// Never acknowledged. A beat's ctx ends after one interval, and a beat
	// waiting behind the identify's write on a loaded machine took longer
	// than 10 ms once: 50 ms still puts several beats in every wait.
	s.Heartbeat(50*time.Millisecond, func(ctx context.Context) error {
		return s.Conn.Write(ctx, websocket.MessageText, []byte("beat"))
	})
	if s.Mode == resocket.ModeResume {
		return s.Conn.Write(ctx, websocket.MessageText, []byte("resume"))
	}
	if !h.skip {
		if err := s.WaitIdentify(ctx); err != nil {
			return err
		}
	}
	h.mu.Lock()
	h.sent = append(h.sent, time.Now())
	h.mu.Unlock()
	return s.Conn.Write(ctx, websocket.MessageText, []byte("identify"))
}

// identifyServer answers each connection with hello after helloDelay and
// records when each identify arrived.
type identifyServer struct {
	mu       sync.Mutex
	arrivals []time.Time
}

func (g *identifyServer) script(helloDelay time.Duration) resockettest.Script {
	return resockettest.Script{Steps: []resockettest.Step{
		resockettest.Sleep(helloDelay), resockettest.Send("hello"),
		resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			for {
				_, b, err := p.Conn.Read(ctx)
				if err != nil {
					return err
				}
				if string(b) == "identify" {
					g.mu.Lock()
					g.arrivals = append(g.arrivals, time.Now())
					g.mu.Unlock()
				}
			}
		}),
	}}
}

// TestIdentifyArrivalsAreSpacedWithSlowHellos: three clients share a
// limiter of one identify per 300 ms; their HELLOs come after 0, 250 and
// 120 ms. Taken at the send, the limiter spaces the identifies as they
// arrive at the server, not as the dials went out.
func TestIdentifyArrivalsAreSpacedWithSlowHellos(t *testing.T) {
	const per = 300 * time.Millisecond
	g := &identifyServer{}
	srv := resockettest.NewServer(t, g.script(0), g.script(250*time.Millisecond), g.script(120*time.Millisecond))
	lim := resocket.NewLimiter(1, per)
	h := &identifyHandshake{}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		c, _ := newRecorded(t, srv.URL, fast(resocket.WithIdentifyLimiter(lim), resocket.WithHandshake(h.run),
			resocket.WithConnectTimeout(waitLimit))...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if err := c.Connect(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	h.mu.Lock()
	sent := append([]time.Time(nil), h.sent...)
	h.mu.Unlock()
	deadline := time.Now().Add(waitLimit)
	for {
		g.mu.Lock()
		n := len(g.arrivals)
		g.mu.Unlock()
		if n == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(sent) != 3 || len(g.arrivals) != 3 {
		t.Fatalf("%d identifies sent, %d arrived, want 3", len(sent), len(g.arrivals))
	}
	for i := 1; i < 3; i++ {
		// Each send is recorded just after its turn: a few microseconds late.
		if gap := sent[i].Sub(sent[i-1]); gap < per-5*time.Millisecond {
			t.Errorf("identifies %d and %d sent %v apart, inside the limiter's %v", i, i+1, gap, per)
		}
		// Loopback adds microseconds; a loaded machine may delay one send a
		// little after its turn. Before the limiter moved to the send, the
		// slow HELLOs put arrivals about 50 ms apart.
		if gap := g.arrivals[i].Sub(g.arrivals[i-1]); gap < per-100*time.Millisecond {
			t.Errorf("identifies %d and %d arrived %v apart", i, i+1, gap)
		}
	}
}

// waitingForIdentify makes a client whose identify limiter is taken for
// an hour: each handshake waits in WaitIdentify until it is cut, and sends
// what WaitIdentify returned on the channel.
func waitingForIdentify(t *testing.T, url string) (*resocket.Client, *recorder, <-chan error) {
	t.Helper()
	lim := resocket.NewLimiter(1, time.Hour)
	lim.Wait(bounded(t))
	waiting := make(chan error, 2)
	c, rec := newRecorded(t, url, fast(resocket.WithIdentifyLimiter(lim),
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			err := s.WaitIdentify(ctx)
			select {
			case waiting <- err:
			default: // a third socket's: no test reads that far
			}
			return err
		}))...)
	return c, rec, waiting
}

// TestWaitIdentify drives the rest of the contract: resumes never wait,
// the wait is outside the connect timeout and keeps the heartbeat from
// judging a zombie, Close cuts it, a failing limiter is a retried attempt,
// and a handshake that skips the wait stops the client.
func TestWaitIdentify(t *testing.T) {
	g := &identifyServer{}
	t.Run("resume-never-waits", func(t *testing.T) {
		srv := resockettest.NewServer(t, g.script(0))
		lim := resocket.NewLimiter(1, time.Hour)
		lim.Wait(bounded(t)) // the window is taken for an hour
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithIdentifyLimiter(lim), resocket.WithResume(""),
			resocket.WithHandshake((&identifyHandshake{}).run))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		if n := countEvents[resocket.IdentifyPaced](rec); n != 0 {
			t.Fatalf("%d IdentifyPaced on a resume", n)
		}
	})
	t.Run("outside-the-connect-timeout-and-no-zombie", func(t *testing.T) {
		srv := resockettest.NewServer(t, g.script(0))
		lim := resocket.NewLimiter(1, 400*time.Millisecond)
		lim.Wait(bounded(t))
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithIdentifyLimiter(lim), resocket.WithHandshake((&identifyHandshake{}).run),
			resocket.WithConnectTimeout(100*time.Millisecond))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		if st := c.Stats(); st.Disconnects != 0 || st.HeartbeatTimeouts != 0 {
			t.Fatalf("%+v: the wait counted against the connect timeout, or its silence made a zombie", st)
		}
		paced := rec.waitFor(t, "IdentifyPaced", func(e resocket.Event) bool { _, ok := e.(resocket.IdentifyPaced); return ok }).(resocket.IdentifyPaced)
		if paced.Attempt != 1 || paced.Waited < 200*time.Millisecond {
			t.Fatalf("IdentifyPaced %+v, want attempt 1 after most of the window", paced)
		}
	})
	t.Run("close-cuts-it", func(t *testing.T) {
		srv := resockettest.NewServer(t, g.script(0))
		c, _, waiting := waitingForIdentify(t, srv.URL)
		connected := make(chan error, 1)
		go func() { connected <- c.Connect(bounded(t)) }()
		time.Sleep(50 * time.Millisecond)
		c.Close()
		mustErrorIs(t, <-connected, resocket.ErrClosed)
		select {
		case err := <-waiting:
			if err == nil {
				t.Fatal("WaitIdentify returned nil after Close")
			}
		case <-time.After(waitLimit):
			t.Fatal("Close did not cut WaitIdentify")
		}
	})
	t.Run("the-sockets-end-cuts-it", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		srv.SetDefault(g.script(0))
		c, rec, waiting := waitingForIdentify(t, srv.URL)
		go c.Connect(bounded(t))
		time.Sleep(50 * time.Millisecond) // the handshake waits on the limiter
		if err := c.Reconnect(4000, "cut the wait", resocket.ActionRetry); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-waiting:
			mustErrorIs(t, err, resocket.ErrSocketEnded)
		case <-time.After(waitLimit):
			t.Fatal("a Reconnect of the socket did not cut WaitIdentify")
		}
		if d := rec.disconnected(t); !errors.Is(d.Err, resocket.ErrReconnectRequested) || d.Code != 4000 {
			t.Fatalf("verdict %d %v (%v), want the Reconnect's", d.Code, d.Action, d.Err)
		}
	})
	t.Run("failing-limiter-is-a-retried-attempt", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		srv.SetDefault(g.script(0))
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithIdentifyLimiter(&flakyLimiter{fails: 1}),
			resocket.WithHandshake((&identifyHandshake{}).run))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		d := rec.disconnected(t)
		if d.Action != resocket.ActionRetry || !strings.Contains(d.Err.Error(), "identify limiter: store unreachable") {
			t.Fatalf("got %v %v", d.Action, d.Err)
		}
	})
	t.Run("a-store-that-cannot-be-dialed-is-the-handshakes", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		srv.SetDefault(g.script(0))
		down := resocket.Limiter(limiterFunc(func(context.Context) error {
			return fmt.Errorf("store unreachable: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
		}))
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithIdentifyLimiter(down),
			resocket.WithHandshake((&identifyHandshake{}).run))...)
		go c.Connect(bounded(t))
		d := rec.disconnected(t)
		var he *resocket.HandshakeError
		if d.Code != 0 || d.Action != resocket.ActionRetry || !errors.As(d.Err, &he) {
			t.Fatalf("got code %d %v (%v), want a HandshakeError retried, not a 1006 drop", d.Code, d.Action, d.Err)
		}
		if strings.Contains(d.Err.Error(), "resocket:") {
			t.Fatalf("the cause carries the package prefix: %v", d.Err)
		}
	})
	t.Run("skipped-wait-is-fatal", func(t *testing.T) {
		srv := resockettest.NewServer(t, g.script(0))
		c, _ := newRecorded(t, srv.URL, fast(resocket.WithIdentifyLimiter(resocket.NewLimiter(1, time.Second)),
			resocket.WithHandshake((&identifyHandshake{skip: true}).run))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		err := c.Connect(ctx)
		mustErrorIs(t, err, resocket.ErrIdentifySkipped)
		mustErrorIs(t, err, resocket.ErrClosed)
		if !strings.Contains(err.Error(), "WaitIdentify") {
			t.Fatalf("the error does not name WaitIdentify: %v", err)
		}
	})
	t.Run("no-handshake", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		lim := resocket.NewLimiter(1, time.Second)
		c, _ := newRecorded(t, srv.URL, fast(resocket.WithIdentifyLimiter(lim))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		err := c.Connect(ctx)
		mustErrorIs(t, err, resocket.ErrIdentifySkipped) // nothing took the gate for this identify-mode socket
		// A resume needs no gate, handshake or not.
		r, _ := newRecorded(t, srv.URL, fast(resocket.WithIdentifyLimiter(lim), resocket.WithResume(""))...)
		if err := r.Connect(ctx); err != nil {
			t.Fatalf("a resume with no handshake: %v", err)
		}
	})
	t.Run("no-limiter-returns-at-once", func(t *testing.T) {
		srv := resockettest.NewServer(t, g.script(0))
		c, _ := newRecorded(t, srv.URL, fast(resocket.WithHandshake((&identifyHandshake{}).run))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		var s *resocket.Session
		if err := s.WaitIdentify(ctx); !errors.Is(err, resocket.ErrSocketEnded) {
			t.Fatalf("WaitIdentify on a nil Session: %v", err)
		}
	})
}

// limiterFunc adapts a func to a Limiter.
type limiterFunc func(context.Context) error

func (f limiterFunc) Wait(ctx context.Context) error { return f(ctx) }

// Three shards sharing one identify limiter identify one per window (the
// gateway refuses none), while a resume goes through at once.
func TestIdentifyPacingAcrossShards(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	const per = 300 * time.Millisecond // a little over the gateway's 250 ms
	window := resocket.NewLimiter(1, per)
	var waits atomic.Int64
	lim := limiterFunc(func(ctx context.Context) error {
		waits.Add(1)
		return window.Wait(ctx)
	})
	var recs []*recorder
	for id := 0; id < 3; id++ {
		_, rec := runShard(t, g, shard.Config{ID: id, Count: 3, IdentifyLimiter: lim})
		recs = append(recs, rec)
	}
	ids := waitRecords(t, g, "identify", 3)
	for i := 1; i < len(ids); i++ {
		if gap := ids[i].At.Sub(ids[i-1].At); gap < gatewayRules.IdentifyEvery {
			t.Fatalf("identifies %v apart, inside the gateway's %v", gap, gatewayRules.IdentifyEvery)
		}
	}
	if n := len(g.Records("identify-too-soon")); n != 0 {
		t.Fatalf("the gateway refused %d identifies as too soon", n)
	}
	// The limiter's window is taken until per after the third identify;
	// a resume does not wait for it.
	dropped := ids[0].Shard
	g.Drop(dropped)
	res := waitRecords(t, g, "resume", 1)[0]
	if res.Shard != dropped || res.Path != "/resume" {
		t.Fatalf("resume %+v, want shard %d at /resume", res, dropped)
	}
	if n := waits.Load(); n != 3 {
		t.Fatalf("the identify limiter was waited on %d times, want 3: the resume waited on it", n)
	}
	if n := countEvents[resocket.IdentifyPaced](recs[dropped]); n != 1 {
		t.Fatalf("%d IdentifyPaced events on the resumed shard, want 1 (its identify, not its resume)", n)
	}
}

// flakyLimiter fails its first Waits, like a shared store that is down.
type flakyLimiter struct {
	mu    sync.Mutex
	fails int
}

func (f *flakyLimiter) Wait(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fails > 0 {
		f.fails--
		return errors.New("store unreachable")
	}
	return nil
}
