package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// A peer that dies while the client's pong is stuck behind a large write
// is a drop: coder/websocket reports it as "failed to handle control frame
// opPing: failed to write control frame opPong: <I/O error>", and that
// text must not make it a protocol error. The session resumes.
func TestPeerDiesWhilePongIsStuckIsADrop(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{
			resockettest.Read(1),
			resockettest.Sleep(300 * time.Millisecond), // not reading: the client's large write fills the buffers
			resockettest.Raw(resockettest.Frame(0x9, []byte("ping"))),
			resockettest.Sleep(300 * time.Millisecond), // the client's pump now waits to write the pong
			resockettest.Reset(),
		}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Echo()}},
	)
	var m modes
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake))...)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- c.Write(context.Background(), websocket.MessageBinary, make([]byte, 64<<20)) }()
	d := rec.disconnected(t)
	if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry {
		t.Fatalf("got %d %v (%v), want 1006 retry", d.Code, d.Action, d.Err)
	}
	if err := <-wrote; err == nil {
		t.Fatal("the large write to a reset peer reported success")
	}
	rec.connected(t, 2)
	equal(t, "modes", m.list(), []resocket.Mode{identify, resume})
}

// A real protocol violation from the server is still a 1002.
func TestServerProtocolViolationIs1002(t *testing.T) {
	t.Parallel()
	for name, frame := range map[string][]byte{
		"fragmented-ping":  {0x09, 0x00},                                // a control frame without FIN
		"unknown-opcode":   resockettest.Frame(0x3, nil),                // reserved opcode
		"long-ping":        resockettest.Frame(0x9, make([]byte, 200)),  // control payload over 125 bytes
		"bad-rsv":          append([]byte{0xC1, 0x01}, 'x'),             // RSV1 without a negotiated extension
		"lone-continue":    append([]byte{0x80, 0x01}, 'x'),             // continuation with nothing to continue
		"short-close":      resockettest.Frame(0x8, []byte{0x03}),       // a close payload of one byte
		"close-code-999":   resockettest.Frame(0x8, []byte{0x03, 0xe7}), // a code no one may send
		"close-code-1005":  resockettest.Frame(0x8, []byte{0x03, 0xed}), // reserved, never on the wire
		"close-code-5000":  resockettest.Frame(0x8, []byte{0x13, 0x88}), // outside every range
		"close-code-1016":  resockettest.Frame(0x8, []byte{0x03, 0xf8}), // unassigned
		"close-code-2999":  resockettest.Frame(0x8, []byte{0x0b, 0xb7}), // below the registered range
		"close-code-1004":  resockettest.Frame(0x8, []byte{0x03, 0xec}), // reserved
		"close-code-0":     resockettest.Frame(0x8, []byte{0x00, 0x00}), // zero
		"close-code-1006":  resockettest.Frame(0x8, []byte{0x03, 0xee}), // reserved, never on the wire
		"close-code-1015":  resockettest.Frame(0x8, []byte{0x03, 0xf7}), // reserved, never on the wire
		"close-code-65535": resockettest.Frame(0x8, []byte{0xff, 0xff}), // far outside
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Raw(frame), resockettest.Sleep(time.Second)}})
			var m modes
			c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake))...)
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			d := rec.disconnected(t)
			if d.Code != websocket.StatusProtocolError || d.Action != resocket.ActionReidentify {
				t.Fatalf("got %d %v (%v), want 1002 re-identify", d.Code, d.Action, d.Err)
			}
		})
	}
}

// WithBackoff(DefaultBackoff) is the default schedule, jittered first retry
// included: asking for the default by name changes nothing.
func TestDefaultBackoffByNameIsTheDefault(t *testing.T) {
	for name, opts := range map[string][]resocket.Option{
		"no-option": nil,
		"by-name":   {resocket.WithBackoff(resocket.DefaultBackoff)},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			url := refusedURL(t)
			var early int
			const clients = 20
			for i := 0; i < clients; i++ {
				c, rec := newRecorded(t, url, append([]resocket.Option{resocket.WithHeartbeat(0, 0)}, opts...)...)
				go c.Connect(context.Background())
				d := rec.disconnected(t)
				c.Close()
				if d.Next < 0 || d.Next >= resocket.DefaultInitialDelay {
					t.Fatalf("first retry after %v, want in [0, %v)", d.Next, resocket.DefaultInitialDelay)
				}
				if d.Next < resocket.DefaultInitialDelay/2 {
					early++
				}
			}
			// Uniform in [0, 1 s): all 20 in the upper half has odds of 1 in a million.
			if early == 0 {
				t.Fatalf("none of %d first retries fell in [0, %v): the first retry is not jittered", clients, resocket.DefaultInitialDelay/2)
			}
		})
	}
}

// A Reconnect during the wait before an attempt is one more outcome: it is
// counted, logged, scheduled and published like any other, and the
// Retrying that follows tells the new wait.
func TestReconnectDuringWaitIsOneVerdict(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Status: 503})
	c, rec := newRecorded(t, srv.URL, resocket.WithHeartbeat(0, 0),
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Hour) }))
	connected := make(chan error, 1)
	go func() { connected <- c.Connect(context.Background()) }()
	rec.waitFor(t, "Retrying", func(e resocket.Event) bool { _, ok := e.(resocket.Retrying); return ok })
	before := c.Stats().Disconnects
	if err := c.Reconnect(4100, "from the protocol", resocket.ActionRetry); err != nil {
		t.Fatal(err)
	}
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
	rec.connected(t, 1)
	if got := c.Stats().Disconnects; got != before+1 {
		t.Fatalf("Disconnects %d after the Reconnect, want %d", got, before+1)
	}
	var seq []string
	for _, e := range rec.all() {
		switch e := e.(type) {
		case resocket.Disconnected:
			seq = append(seq, "disconnected "+e.Action.String()+" next="+e.Next.String())
		case resocket.Retrying:
			seq = append(seq, "retrying delay="+e.Delay.String())
		case resocket.Connected:
			seq = append(seq, "connected")
		}
	}
	equal(t, "events", seq, []string{
		"disconnected retry next=1h0m0s", "retrying delay=1h0m0s", // the 503
		"disconnected retry next=0s", "retrying delay=0s", // the Reconnect cuts the wait
		"connected",
	})
}

// Two Reconnects racing on an open socket never skip the backoff: the
// second joins the first, whose delay stands.
func TestRacingReconnectsKeepTheBackoff(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, rec := newRecorded(t, srv.URL, resocket.WithHeartbeat(0, 0),
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(300 * time.Millisecond) }))
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 5; round++ {
		var wg sync.WaitGroup
		start := time.Now()
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Reconnect(4000, "", resocket.ActionRetry); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		rec.connected(t, round+2)
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Fatalf("round %d: reconnected after %v, inside the 300ms backoff", round, took)
		}
	}
	for _, e := range rec.all() {
		if d, ok := e.(resocket.Disconnected); ok && d.Next < 300*time.Millisecond {
			t.Fatalf("a Disconnected with Next %v: a racing Reconnect skipped the backoff", d.Next)
		}
	}
}

// A Reconnect during the dial or the handshake cuts that attempt: the
// next one follows the request's verdict.
func TestReconnectCutsAHandshake(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	inHandshake := make(chan struct{}, 4)
	var mu sync.Mutex
	var seen []resocket.Mode
	c, rec := newRecorded(t, srv.URL, resocket.WithHeartbeat(0, 0),
		resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			mu.Lock()
			seen = append(seen, s.Mode)
			n := len(seen)
			mu.Unlock()
			if n == 2 { // the second socket's handshake hangs until cut
				inHandshake <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}))
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconnect(4000, "", resocket.ActionRetry); err != nil {
		t.Fatal(err)
	}
	<-inHandshake
	if err := c.Reconnect(4001, "cut", resocket.ActionReidentify); err != nil {
		t.Fatal(err)
	}
	rec.connected(t, 2)
	mu.Lock()
	got := append([]resocket.Mode(nil), seen...)
	mu.Unlock()
	equal(t, "modes", got, []resocket.Mode{identify, resume, identify})
	d := rec.waitFor(t, "the cut's verdict", func(e resocket.Event) bool {
		d, ok := e.(resocket.Disconnected)
		return ok && d.Code == 4001
	}).(resocket.Disconnected)
	if d.Action != resocket.ActionReidentify {
		t.Fatalf("cut verdict %v, want re-identify", d.Action)
	}
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
			go c.Connect(context.Background())
			time.Sleep(50 * time.Millisecond)
			return c.Close()
		}, []resocket.State{closing, closed}},
		{"close-while-open", resockettest.Script{}, func(c *resocket.Client) error {
			if err := c.Connect(context.Background()); err != nil {
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
			if err := c.Connect(context.Background()); err == nil {
				return errors.New("a 401 connected")
			}
			return nil
		}, []resocket.State{closed}},
		{"fatal-while-open", resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4004, "authentication failed")}}, func(c *resocket.Client) error {
			if err := c.Connect(context.Background()); err != nil {
				return err
			}
			<-c.Done()
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
					if err := c.Connect(context.Background()); err != nil {
						return err
					}
					<-c.Done()
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

// Every error the client returns has one "resocket: " prefix, once, and
// says what happened in the user's terms.
func TestErrorTextHasOnePrefix(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, err error, want string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "resocket: ") || strings.Count(msg, "resocket:") != 1 {
			t.Fatalf("%q: want exactly one resocket: prefix, at the start", msg)
		}
		if !strings.Contains(msg, want) {
			t.Fatalf("%q does not say %q", msg, want)
		}
	}
	t.Run("connect-timeout-after-503", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Status: 503})
		srv.SetDefault(resockettest.Script{Status: 503})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := resocket.Dial(ctx, srv.URL, fast()...)
		check(t, err, "upgrade answered 503")
	})
	t.Run("fatal-close-code", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4014, "disallowed intents")}})
		c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		check(t, c.Err(), `server closed with 4014 "disallowed intents"`)
		_, _, err = c.Read(context.Background())
		check(t, err, "4014")
		check(t, c.Write(context.Background(), websocket.MessageText, nil), "4014")
	})
	t.Run("reidentify-loop", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4003, "not authenticated")}})
		c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
		if err == nil {
			waitDone(t, c)
			err = c.Err()
		}
		check(t, err, "re-identify loop")
	})
	t.Run("fatal-upgrade", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Status: 401})
		_, err := resocket.Dial(context.Background(), srv.URL, fast()...)
		check(t, err, "upgrade answered 401")
	})
}

// TestErrIsFinalAtTheClosedEvent: whoever receives StateChanged{To:
// CLOSED} finds Err and State already final, for every way a client ends.
func TestErrIsFinalAtTheClosedEvent(t *testing.T) {
	close4003 := resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4003, "not authenticated")}}
	rows := []struct {
		name   string
		script resockettest.Script
		end    func(c *resocket.Client)           // how the client is ended, once it is connected or failing
		ctx    time.Duration                      // Connect's ctx; 0 for waitLimit
		check  func(t *testing.T, err error) bool // what Err must be
		url    func(t *testing.T, srv *resockettest.Server) string
	}{
		{name: "Close", end: func(c *resocket.Client) { c.Close() },
			check: func(t *testing.T, err error) bool { return err == resocket.ErrClosed }},
		{name: "CloseWith", end: func(c *resocket.Client) { c.CloseWith(4000, "restarting") },
			check: func(t *testing.T, err error) bool { return err == resocket.ErrClosed }},
		{name: "fatal close code", script: resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4004, "authentication failed")}},
			check: func(t *testing.T, err error) bool { return websocket.CloseStatus(err) == 4004 }},
		{name: "fatal upgrade status", script: resockettest.Script{Status: 401},
			check: func(t *testing.T, err error) bool {
				var ue *resocket.UpgradeError
				return errors.As(err, &ue) && ue.Status == 401
			}},
		{name: "Connect's ctx", ctx: 20 * time.Millisecond, url: func(t *testing.T, _ *resockettest.Server) string { return refusedURL(t) },
			check: func(t *testing.T, err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "loop guard", script: close4003,
			check: func(t *testing.T, err error) bool { return errors.Is(err, resocket.ErrReidentifyLoop) }},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			srv := resockettest.NewServer(t)
			srv.SetDefault(row.script)
			url := srv.URL
			if row.url != nil {
				url = row.url(t, srv)
			}
			for round := 0; round < 30; round++ {
				c, err := resocket.New(url, fast()...)
				if err != nil {
					t.Fatal(err)
				}
				atClosed := make(chan error, 1)
				go func() {
					for e := range c.Events() {
						if sc, ok := e.(resocket.StateChanged); ok && sc.To == resocket.StateClosed {
							err := c.Err()
							if err == nil || c.State() != resocket.StateClosed {
								err = fmt.Errorf("Err %v, State %v at the CLOSED event", err, c.State())
							}
							atClosed <- err
						}
					}
				}()
				d := row.ctx
				if d == 0 {
					d = waitLimit
				}
				ctx, cancel := context.WithTimeout(context.Background(), d)
				c.Connect(ctx)
				cancel()
				if row.end != nil {
					row.end(c)
				}
				select {
				case err := <-atClosed:
					if !row.check(t, err) {
						t.Fatalf("round %d: Err at the CLOSED event: %v", round, err)
					}
				case <-time.After(waitLimit):
					t.Fatalf("round %d: no CLOSED event", round)
				}
				c.Close()
			}
		})
	}
}
