package resocket_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/clock"
	"github.com/resocket/resocket/resockettest"
)

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
			c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHandshake(m.handshake))...)
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
		go func() { connected <- c.Connect(bounded(t)) }()
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
			go func() { connected <- c.Connect(bounded(t)) }()
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

// A Reconnect during the wait before an attempt is one more outcome: it is
// counted, logged, scheduled and published like any other, and the
// Retrying that follows tells the new wait.
func TestReconnectDuringWaitIsOneVerdict(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Status: 503})
	c, rec := newRecorded(t, srv.URL, resocket.WithHeartbeat(0, 0),
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Hour) }))
	connected := make(chan error, 1)
	go func() { connected <- c.Connect(bounded(t)) }()
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
	if err := c.Connect(bounded(t)); err != nil {
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
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconnect(4000, "", resocket.ActionRetry); err != nil {
		t.Fatal(err)
	}
	receive(t, inHandshake)
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

func TestStaleReconnectLeavesTheNextSocketUp(t *testing.T) {
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.Send("reconnect"), resockettest.Hangup()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.Echo()}},
	)
	c, _, m := staleMessage(t, srv)
	if m.Session.Reconnect(4000, "reconnect", resocket.ActionRetry) {
		t.Fatal("Session.Reconnect of an ended socket returned true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	m2, err := c.ReadMessage(ctx)
	if err != nil || string(m2.Data) != "still here" || m2.Attempt != 2 {
		t.Fatalf("echo on socket 2: %q from attempt %d, %v", m2.Data, m2.Attempt, err)
	}
	if st := c.Stats(); st.Opens != 2 || st.Disconnects != 1 {
		t.Fatalf("opens %d, disconnects %d, want 2 and 1: the stale Reconnect cut socket 2", st.Opens, st.Disconnects)
	}
}

// TestReconnectRacingACloseFrameIsJudgedOnce: the server sends "invalid
// session" and closes with 4009 at once; the consumer answers the message
// with Session.Reconnect(ActionReidentify). However the two race, the
// socket's end is judged once: never two re-identifies for one socket
// (which would trip the loop guard).
func TestReconnectRacingACloseFrameIsJudgedOnce(t *testing.T) {
	const sockets = 150
	for _, path := range []string{"read", "handler"} {
		t.Run(path, func(t *testing.T) {
			srv := resockettest.NewServer(t)
			srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{
				resockettest.Send("invalid session"), resockettest.Close(4009, "session timed out"),
			}})
			act := func(m resocket.Message) {
				m.Session.Reconnect(4000, "invalid session", resocket.ActionReidentify)
			}
			opts := []resocket.Option{resocket.WithStableAfter(time.Nanosecond)}
			if path == "handler" {
				opts = append(opts, resocket.WithOnMessage(act))
			}
			c, rec := newRecorded(t, srv.URL, fast(opts...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 4*waitLimit)
			defer cancel()
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			for c.Stats().Opens < sockets && ctx.Err() == nil && c.Err() == nil {
				if path == "read" {
					if m, err := c.ReadMessage(ctx); err == nil {
						act(m)
					}
				} else {
					time.Sleep(time.Millisecond)
				}
			}
			c.Close()
			if err := c.Err(); err != resocket.ErrClosed {
				t.Fatalf("after %d sockets the client stopped by itself: %v", c.Stats().Opens, err)
			}
			st := c.Stats()
			if st.Disconnects > st.Opens {
				t.Fatalf("%d disconnects for %d sockets: a socket's end was judged twice", st.Disconnects, st.Opens)
			}
			perSocket := map[int]int{}
			attempt := 0
			for _, e := range rec.all() {
				switch e := e.(type) {
				case resocket.Connected:
					attempt = e.Attempt
				case resocket.Disconnected:
					if perSocket[attempt]++; perSocket[attempt] > 1 {
						t.Fatalf("socket %d has %d Disconnected events", attempt, perSocket[attempt])
					}
				}
			}
		})
	}
}

// TestHandshakeCloseFrameBeatsAReconnect: the handshake reads the peer's
// 4004, then a Reconnect lands on the socket before the handshake
// returns. The peer's close frame came first: it decides, as when OPEN.
func TestHandshakeCloseFrameBeatsAReconnect(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4004, "authentication failed")}})
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		_, _, err := s.Conn.Read(ctx)
		if websocket.CloseStatus(err) == 4004 {
			s.Reconnect(4000, "too late", resocket.ActionRetry)
		}
		return err
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	go c.Connect(ctx)
	if d := rec.disconnected(t); d.Code != 4004 || d.Action != resocket.ActionFatal {
		t.Fatalf("got %d %v (%v), want 4004 fatal: the peer's close frame came first", d.Code, d.Action, d.Err)
	}
}

// A Reconnect during the retry wait cuts it: the next attempt is made at
// once, with the clock where it was.
func TestReconnectCutsTheWaitOnTheClock(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(websocket.StatusGoingAway, "")}})
	clk := clock.NewFake()
	c, rec := onClock(t, clk, srv.URL, resocket.WithBackoff(exactBackoff(time.Hour, time.Hour)))
	nth[resocket.Retrying](t, rec, 1)
	armed(t, clk, time.Hour)
	at := clk.Now()
	if err := c.Reconnect(websocket.StatusNormalClosure, "", resocket.ActionRetry); err != nil {
		t.Fatal(err)
	}
	rec.connected(t, 2)
	if !clk.Now().Equal(at) {
		t.Fatalf("the clock moved: %v", clk.Now().Sub(at))
	}
	if r := nth[resocket.Retrying](t, rec, 2); r.Delay != 0 {
		t.Fatalf("the cut wait's Retrying.Delay %v, want 0", r.Delay)
	}
	// The Reconnect ended no socket: its Disconnected names no attempt.
	if d := nth[resocket.Disconnected](t, rec, 2); d.Attempt != 0 || d.Opened {
		t.Fatalf("the Reconnect's Disconnected: attempt %d, opened %v; want 0 and false", d.Attempt, d.Opened)
	}
}
