package resocket_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/clock"
	"github.com/resocket/resocket/resockettest"
)

// The timing logic on a fake clock: every wait, interval and period is
// checked at its exact edge, one nanosecond before and at it, against a
// real server. Only the clock is fake; the sockets are real.

// exactBackoff is an exponential schedule without jitter: initial, ×2,
// capped at max.
func exactBackoff(initial, max time.Duration) func() backoff.BackOff {
	return func() backoff.BackOff {
		return backoff.NewExponentialBackOff(backoff.WithInitialInterval(initial),
			backoff.WithMultiplier(2), backoff.WithRandomizationFactor(0),
			backoff.WithMaxInterval(max), backoff.WithMaxElapsedTime(0))
	}
}

// onClock makes a client on clk, with no ping heartbeat unless opts turn
// it on, connected to url.
func onClock(t *testing.T, clk *clock.Fake, url string, opts ...resocket.Option) (*resocket.Client, *recorder) {
	t.Helper()
	opts = append([]resocket.Option{resocket.WithClock(clk), resocket.WithHeartbeat(0, 0),
		resocket.WithCloseTimeout(200 * time.Millisecond)}, opts...)
	c, rec := newRecorded(t, url, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// armed waits until a timer with exactly d left is armed on clk.
func armed(t *testing.T, clk *clock.Fake, d time.Duration) {
	t.Helper()
	if err := clk.WaitFor(func() bool { return slices.Contains(clk.Pending(), d) }, waitLimit); err != nil {
		t.Fatalf("waiting for a %v timer: %v", d, err)
	}
}

// nth waits for the n-th event of type E and returns it.
func nth[E resocket.Event](t *testing.T, rec *recorder, n int) E {
	t.Helper()
	var got E
	rec.waitFor(t, "event", func(resocket.Event) bool {
		k := 0
		for _, e := range rec.all() {
			if x, ok := e.(E); ok {
				if k++; k == n {
					got = x
					return true
				}
			}
		}
		return false
	})
	return got
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

// A Session.Heartbeat beat that is still unacknowledged when the next one
// is due makes the socket a zombie, exactly then; acknowledged beats keep
// it up for as many intervals as they last, and their RTT is the clock's.
func TestZombieOnTheClock(t *testing.T) {
	const interval = time.Second
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{})
	clk := clock.NewFake()
	beats := make(chan *resocket.Session, 16)
	c, rec := onClock(t, clk, srv.URL, resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(interval, func(context.Context) error {
			beats <- s
			return nil
		})
		return nil
	}))
	if err := clk.WaitForTimers(1, waitLimit); err != nil {
		t.Fatal(err)
	}
	// The first beat is due after a random fraction of the interval.
	if first, ok := clk.Next(); !ok || first.Sub(clk.Now()) >= interval {
		t.Fatalf("first beat due in %v, want less than %v", first.Sub(clk.Now()), interval)
	}
	first, _ := clk.Next()
	clk.Set(first)
	const acked = 5
	for i := 1; i <= acked; i++ {
		s := receive(t, beats)
		armed(t, clk, interval)
		clk.Advance(300 * time.Millisecond)
		s.AckHeartbeat()
		if rtt := c.Stats().RTT; rtt != 300*time.Millisecond {
			t.Fatalf("beat %d: RTT %v, want the clock's 300ms", i, rtt)
		}
		clk.Advance(interval - 300*time.Millisecond)
	}
	receive(t, beats) // beat acked+1: never acknowledged
	armed(t, clk, interval)
	clk.Advance(interval - time.Nanosecond)
	if st := c.Stats(); st.HeartbeatTimeouts != 0 || st.Disconnects != 0 {
		t.Fatalf("a nanosecond before the next beat: %+v, want no zombie yet", st)
	}
	clk.Advance(time.Nanosecond)
	d := rec.disconnected(t)
	mustErrorIs(t, d.Err, resocket.ErrZombie)
	if d.Code != websocket.StatusAbnormalClosure || c.Stats().HeartbeatTimeouts != 1 {
		t.Fatalf("zombie: code %d, heartbeat timeouts %d, want 1006 and 1", d.Code, c.Stats().HeartbeatTimeouts)
	}
	if len(beats) != 0 {
		t.Fatalf("%d beats sent on a zombie socket", len(beats))
	}
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("nothing received within %v", waitLimit)
		panic("unreachable")
	}
}

// The WebSocket heartbeat pings every interval and cuts a socket whose
// pong is late by the timeout, exactly then; answered pings measure their
// RTT on the clock.
func TestPingTimeoutOnTheClock(t *testing.T) {
	const interval, timeout = time.Second, 500 * time.Millisecond
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{}) // answers pings while it reads
	clk := clock.NewFake()
	c, rec := onClock(t, clk, srv.URL, resocket.WithHeartbeat(interval, timeout),
		resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }))
	for i := 1; i <= 3; i++ { // answered
		armed(t, clk, interval)
		arms := clk.Arms()
		clk.Advance(interval)
		// Two arms: the next interval, then this ping's timeout, which
		// its pong disarms.
		if err := clk.WaitFor(func() bool {
			return clk.Arms() >= arms+2 && !slices.Contains(clk.Pending(), timeout)
		}, waitLimit); err != nil {
			t.Fatalf("ping %d: its pong never came: %v", i, err)
		}
	}
	if st := c.Stats(); st.Disconnects != 0 || st.RTT != 0 {
		t.Fatalf("after 3 answered pings: %+v, want no disconnect and the clock's RTT, 0", st)
	}
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Silent(0)}})
	srv.DropAll()
	rec.connected(t, 2)
	armed(t, clk, interval)
	clk.Advance(interval)
	armed(t, clk, timeout)
	clk.Advance(timeout - time.Nanosecond)
	if st := c.Stats(); st.HeartbeatTimeouts != 0 {
		t.Fatalf("a nanosecond before the timeout: %+v", st)
	}
	clk.Advance(time.Nanosecond)
	d := nth[resocket.Disconnected](t, rec, 2)
	if !errors.Is(d.Err, resocket.ErrHeartbeatTimeout) || c.Stats().HeartbeatTimeouts != 1 {
		t.Fatalf("late pong: %v, heartbeat timeouts %d, want ErrHeartbeatTimeout and 1", d.Err, c.Stats().HeartbeatTimeouts)
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
}
