package resocket_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/clock"
	"github.com/resocket/resocket/resockettest"
)

func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	c, err := resocket.New(refusedURL(t), resocket.WithBackoff(func() backoff.BackOff {
		return backoff.WithMaxRetries(&backoff.ZeroBackOff{}, 3)
	}))
	if err != nil {
		t.Fatal(err)
	}
	err = c.Connect(bounded(t))
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

// The gateway case: 4003 re-identifies once; a second quick 4003 stops;
// 4003 then 4014 stops after exactly two sockets.
func TestReidentifyLoopGuard(t *testing.T) {
	closeWith := func(code websocket.StatusCode) resockettest.Script {
		return resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Close(code, "")}}
	}
	t.Run("4003-4003", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, closeWith(4003), closeWith(4003))
		var m modes
		c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHandshake(m.handshake))...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		mustErrorIs(t, c.Err(), resocket.ErrReidentifyLoop)
		if websocket.CloseStatus(c.Err()) != 4003 || !strings.Contains(c.Err().Error(), "re-identify loop") {
			t.Fatalf("Err() = %v: want the loop guard with the last 4003", c.Err())
		}
		equal(t, "modes", m.list(), []resocket.Mode{identify, identify})
		if srv.Accepted() != 2 {
			t.Fatalf("%d sockets, want 2", srv.Accepted())
		}
	})
	t.Run("4003-4014", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, closeWith(4003), closeWith(4014))
		var m modes
		c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHandshake(m.handshake))...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		if websocket.CloseStatus(c.Err()) != 4014 {
			t.Fatalf("Err() = %v: want 4014", c.Err())
		}
		equal(t, "modes", m.list(), []resocket.Mode{identify, identify})
		if srv.Accepted() != 2 {
			t.Fatalf("%d sockets, want exactly 2", srv.Accepted())
		}
	})
	t.Run("stable-socket-resets-the-guard", func(t *testing.T) {
		t.Parallel()
		stable := resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Sleep(150 * time.Millisecond), resockettest.Close(4003, "")}}
		// Without the reset, the second 4003 would stop the client.
		srv := resockettest.NewServer(t, closeWith(4003), stable)
		var m modes
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake), resocket.WithStableAfter(100*time.Millisecond))...)
		if err := c.Connect(bounded(t)); err != nil {
			t.Fatal(err)
		}
		rec.connected(t, 3)
		if c.State() == resocket.StateClosed {
			t.Fatalf("closed after a stable socket: %v", c.Err())
		}
		equal(t, "modes", m.list(), []resocket.Mode{identify, identify, identify})
	})
	t.Run("max-reidentify-3", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, closeWith(4003), closeWith(4003), closeWith(4003))
		var m modes
		c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithMaxReidentify(3), resocket.WithHandshake(m.handshake))...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		mustErrorIs(t, c.Err(), resocket.ErrReidentifyLoop)
		if srv.Accepted() != 3 {
			t.Fatalf("%d sockets, want 3", srv.Accepted())
		}
	})
}

// The retry wait lasts exactly the schedule's delay: no attempt a
// nanosecond before, one at it; the delays double up to the cap.
func TestRetryWaitIsExactOnTheClock(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(websocket.StatusGoingAway, "")}})
	clk := clock.NewFake()
	_, rec := onClock(t, clk, srv.URL, resocket.WithBackoff(exactBackoff(100*time.Millisecond, time.Second)))
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		800 * time.Millisecond, time.Second, time.Second} {
		if r := nth[resocket.Retrying](t, rec, i+1); r.Delay != want {
			t.Fatalf("wait %d: Retrying.Delay %v, want %v", i+1, r.Delay, want)
		}
		waitsExactly(t, clk, srv, rec, i+1, want)
	}
}

// waitsExactly checks that the n-th retry wait, of d, ends exactly after
// d: no attempt a nanosecond before, one at d.
func waitsExactly(t *testing.T, clk *clock.Fake, srv *resockettest.Server, rec *recorder, n int, d time.Duration) {
	t.Helper()
	armed(t, clk, d)
	accepted := srv.Accepted()
	clk.Advance(d - time.Nanosecond)
	if left := clk.Pending(); !slices.Contains(left, time.Nanosecond) || srv.Accepted() != accepted {
		t.Fatalf("wait %d: a nanosecond before its end: timers %v, accepted %d, want a 1ns timer and %d",
			n, left, srv.Accepted(), accepted)
	}
	clk.Advance(time.Nanosecond)
	rec.connected(t, n+1)
}

// DefaultBackoff's waits: the first a random fraction of a second, then
// ×1.6 with ±20% jitter; each lasts exactly what Retrying announced.
func TestJitteredWaitsOnTheClock(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(websocket.StatusGoingAway, "")}})
	clk := clock.NewFake()
	_, rec := onClock(t, clk, srv.URL) // DefaultBackoff
	base := float64(time.Second)
	for i := 1; i <= 8; i++ {
		d := nth[resocket.Retrying](t, rec, i).Delay
		lo, hi := time.Duration(0), time.Second
		if i > 1 {
			lo, hi = time.Duration(0.8*base), time.Duration(1.2*base)
			base *= 1.6
		}
		if d < lo || d > hi || (i == 1 && d == hi) {
			t.Fatalf("wait %d: %v, want within [%v, %v]", i, d, lo, hi)
		}
		if d == 0 { // nothing to wait for: the attempt is made at once
			rec.connected(t, i+1)
			continue
		}
		waitsExactly(t, clk, srv, rec, i, d)
	}
}

// A socket that stays OPEN for the stable period resets the schedule; one
// that drops a nanosecond short of it does not.
func TestStablePeriodOnTheClock(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{}) // held open until DropAll
	clk := clock.NewFake()
	const stable = time.Second
	_, rec := onClock(t, clk, srv.URL, resocket.WithBackoff(exactBackoff(100*time.Millisecond, 10*time.Second)),
		resocket.WithStableAfter(stable))
	// open for: 0, 0, stable-1ns (not stable), stable (stable: reset)
	steps := []struct {
		open time.Duration
		want time.Duration // the delay that follows
	}{
		{0, 100 * time.Millisecond},
		{0, 200 * time.Millisecond},
		{stable - time.Nanosecond, 400 * time.Millisecond},
		{stable, 100 * time.Millisecond},
		{0, 200 * time.Millisecond},
	}
	for i, st := range steps {
		rec.connected(t, i+1)
		clk.Advance(st.open)
		srv.DropAll()
		r := nth[resocket.Retrying](t, rec, i+1)
		if r.Delay != st.want {
			t.Fatalf("socket %d, open for %v: next delay %v, want %v", i+1, st.open, r.Delay, st.want)
		}
		armed(t, clk, st.want)
		clk.Advance(st.want)
	}
}
