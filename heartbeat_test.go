package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/internal/clock"
	"github.com/resocket/resocket/resockettest"
)

// The application heartbeat: beats on schedule, the ACK gives the RTT,
// a missing ACK makes a zombie that is cut and resumed.
func TestApplicationHeartbeatZombie(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	s, rec := runShard(t, g, shard.Config{})
	waitRecords(t, g, "heartbeat", 3)
	waitFor(t, "an RTT", func() bool { return s.Client().Stats().RTT > 0 })
	if n := countEvents[resocket.Disconnected](rec); n != 0 {
		t.Fatalf("%d disconnects while ACKs flow", n)
	}
	g.SetAck(0, false)
	cut := time.Now()
	d := rec.disconnected(t)
	g.SetAck(0, true)
	if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry || !errors.Is(d.Err, resocket.ErrZombie) {
		t.Fatalf("got %d %v %v, want a 1006 zombie, retried", d.Code, d.Action, d.Err)
	}
	// A beat goes unanswered, the next one finds it so: within two
	// intervals, ten times that for a loaded machine (TestZombieOnTheClock
	// checks the edge exactly).
	if took := time.Since(cut); took > 20*gatewayRules.HeartbeatInterval {
		t.Fatalf("zombie found after %v", took)
	}
	if n := s.Client().Stats().HeartbeatTimeouts; n != 1 {
		t.Fatalf("HeartbeatTimeouts = %d, want 1", n)
	}
	waitRecords(t, g, "resume", 1)
}

// beatRecorder is a handshake that starts Session.Heartbeat and answers
// its own beats, recording when each was sent.
type beatRecorder struct {
	mu       sync.Mutex
	c        *resocket.Client
	start    time.Time
	beats    []time.Duration
	interval time.Duration
	beat     func(ctx context.Context, s *resocket.Session) error
}

func (b *beatRecorder) handshake(ctx context.Context, s *resocket.Session) error {
	b.mu.Lock()
	b.start = time.Now()
	b.mu.Unlock()
	s.Heartbeat(b.interval, func(ctx context.Context) error {
		b.mu.Lock()
		b.beats = append(b.beats, time.Since(b.start))
		b.mu.Unlock()
		if b.beat != nil {
			return b.beat(ctx, s)
		}
		b.c.AckHeartbeat()
		return nil
	})
	return nil
}

func (b *beatRecorder) list() []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Duration(nil), b.beats...)
}

func TestApplicationHeartbeatSchedule(t *testing.T) {
	t.Parallel()
	const interval = 200 * time.Millisecond
	srv := resockettest.NewServer(t)
	var firsts []time.Duration
	for i := 0; i < 8; i++ {
		b := &beatRecorder{interval: interval}
		c, err := resocket.New(srv.URL, fast(resocket.WithHandshake(b.handshake))...)
		if err != nil {
			t.Fatal(err)
		}
		b.c = c
		if err := c.Connect(bounded(t)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "three beats", func() bool { return len(b.list()) >= 3 })
		c.Close()
		beats := b.list()
		if beats[0] >= interval+50*time.Millisecond {
			t.Fatalf("first beat after %v, want within [0, %v)", beats[0], interval)
		}
		if gap := beats[2] - beats[1]; gap < interval*8/10 || gap > interval*2 {
			t.Fatalf("beats %v apart, want about %v", gap, interval)
		}
		if c.Stats().RTT <= 0 {
			t.Fatal("no RTT after acknowledged beats")
		}
		firsts = append(firsts, beats[0])
	}
	lo, hi := firsts[0], firsts[0]
	for _, f := range firsts {
		lo, hi = min(lo, f), max(hi, f)
	}
	if hi-lo < interval/5 { // 8 uniform draws inside a fifth of the interval: odds of 1 in 50,000
		t.Fatalf("first beats %v: not spread over the interval", firsts)
	}
}

// A consumer that stalls holds the ACKs behind unread messages: that is
// not a zombie. Nothing is lost, and the order holds.
func TestStalledConsumerIsNotAZombie(t *testing.T) {
	t.Parallel()
	const interval = 50 * time.Millisecond
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(20, "m%d"), resockettest.Echo()}})
	var c *resocket.Client
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithReadQueue(1), resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(interval, func(ctx context.Context) error { // the server echoes the beat: that is its ACK
			return s.Conn.Write(ctx, websocket.MessageText, []byte("beat"))
		})
		return nil
	}))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * interval) // stalled: twenty beats come due
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var got []string
	for len(got) < 20 {
		m, err := c.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after %v: %v; events %v", got, err, rec.all())
		}
		if string(m.Data) == "beat" {
			m.Session.AckHeartbeat()
			continue
		}
		got = append(got, string(m.Data))
	}
	for i, m := range got {
		if m != fmt.Sprintf("m%d", i+1) {
			t.Fatalf("message %d is %q: order or loss", i, m)
		}
	}
	if n := countEvents[resocket.Disconnected](rec); n != 0 || c.Stats().HeartbeatTimeouts != 0 {
		t.Fatalf("a stalled consumer was taken for a zombie: %v", rec.all())
	}
}

// A beat that fails or panics cuts that socket as a drop, and the
// session resumes; a bad interval or a nil beat stops the client with an
// error naming it.
func TestApplicationHeartbeatFailures(t *testing.T) {
	rows := []struct {
		name string
		beat func(ctx context.Context, s *resocket.Session) error
		want string
	}{
		{"error", func(context.Context, *resocket.Session) error { return errors.New("no route") }, "heartbeat beat failed: no route"},
		{"panic", func(context.Context, *resocket.Session) error { panic("beat bug") }, "beat panicked: beat bug"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t)
			b := &beatRecorder{interval: 20 * time.Millisecond}
			b.beat = func(ctx context.Context, s *resocket.Session) error {
				if s.Attempt == 1 {
					return row.beat(ctx, s)
				}
				b.c.AckHeartbeat()
				return nil
			}
			c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(b.handshake))...)
			b.c = c
			if err := c.Connect(bounded(t)); err != nil {
				t.Fatal(err)
			}
			d := rec.disconnected(t)
			if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry || !strings.Contains(d.Err.Error(), row.want) {
				t.Fatalf("got %d %v %v, want a 1006 retry saying %q", d.Code, d.Action, d.Err, row.want)
			}
			rec.connected(t, 2)
		})
	}
	for name, call := range map[string]func(*resocket.Session){
		"interval must be positive, got 0s": func(s *resocket.Session) { s.Heartbeat(0, func(context.Context) error { return nil }) },
		"interval must be positive, got -1s": func(s *resocket.Session) {
			s.Heartbeat(-time.Second, func(context.Context) error { return nil })
		},
		"beat is nil": func(s *resocket.Session) { s.Heartbeat(time.Second, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t)
			_, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
				call(s)
				return nil
			}))...)
			if err == nil || !strings.Contains(err.Error(), "Session.Heartbeat: "+name) {
				t.Fatalf("Dial = %v, want an error naming %q", err, name)
			}
		})
	}
}

// Stats().RTT is the last ping-to-pong time when the WebSocket heartbeat
// is the only one.
func TestPingRTT(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHeartbeat(200*time.Millisecond, time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Stats().RTT != 0 {
		t.Fatalf("RTT %v before any ping", c.Stats().RTT)
	}
	waitFor(t, "a ping's round trip", func() bool { return c.Stats().RTT > 0 })
	if rtt := c.Stats().RTT; rtt > time.Second {
		t.Fatalf("RTT %v on loopback", rtt)
	}
}

// A zombie found while the handshake still runs cuts the handshake: the
// attempt ends as a 1006 with ErrZombie and is retried.
func TestZombieDuringTheHandshake(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Silent(0)}})
	var c *resocket.Client
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(20*time.Millisecond, func(ctx context.Context) error {
			if s.Attempt > 1 {
				c.AckHeartbeat() // the second server answers at once
			}
			return s.Conn.Write(ctx, websocket.MessageText, []byte("beat"))
		})
		if s.Attempt > 1 {
			return nil
		}
		_, _, err := s.Conn.Read(ctx) // the first server never answers
		return err
	}))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	d := rec.disconnected(t)
	if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry || !errors.Is(d.Err, resocket.ErrZombie) {
		t.Fatalf("got %d %v %v, want a 1006 zombie, retried", d.Code, d.Action, d.Err)
	}
	if c.Stats().HeartbeatTimeouts != 1 {
		t.Fatalf("HeartbeatTimeouts = %d", c.Stats().HeartbeatTimeouts)
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

// A beat sent while the consumer is stalled, whose stall ends just before
// the next beat is due, is not a zombie then: its ACK may come right
// behind the backlog. The beat after it, with no stall in its interval,
// is judged as usual.
func TestStallAcrossABeatIsNotAZombie(t *testing.T) {
	const interval = time.Second
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Send("backlog")}})
	clk := clock.NewFake()
	beats := make(chan *resocket.Session, 16)
	c, rec := onClock(t, clk, srv.URL, resocket.WithReadQueue(1), resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(interval, func(context.Context) error {
			beats <- s
			return nil
		})
		return nil
	}))
	waitFor(t, "the backlog in the read queue", func() bool { queued, _ := c.Backlog(); return queued == 1 })
	if err := clk.WaitForTimers(1, waitLimit); err != nil {
		t.Fatal(err)
	}
	first, _ := clk.Next()
	clk.Set(first) // a beat while the backlog waits in the queue
	receive(t, beats)
	armed(t, clk, interval)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	clk.Advance(interval - time.Nanosecond) // the consumer catches up at the last moment
	if m, err := c.ReadMessage(ctx); err != nil || string(m.Data) != "backlog" {
		t.Fatalf("read %q, %v", m.Data, err)
	}
	clk.Advance(time.Nanosecond)
	select {
	case <-beats: // the next beat: no stall in its interval, never acknowledged
	case <-time.After(waitLimit):
		t.Fatalf("no beat after a stall that ended a nanosecond before it was due: %+v, events %v", c.Stats(), rec.all())
	}
	armed(t, clk, interval)
	clk.Advance(interval)
	mustErrorIs(t, rec.disconnected(t).Err, resocket.ErrZombie)
	if n := c.Stats().HeartbeatTimeouts; n != 1 {
		t.Fatalf("HeartbeatTimeouts = %d, want 1", n)
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

// A pong held up by a stall that began while it was awaited and ended
// just before the extended timeout gets one more timeout, not a cut: it
// may come right behind the backlog.
func TestStallAcrossAPongTimeoutIsNotDead(t *testing.T) {
	const interval, timeout = time.Second, 500 * time.Millisecond
	backlog := make(chan struct{})
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{
		func(ctx context.Context, p *resockettest.Peer) error { // never reads: no pong
			select {
			case <-backlog:
			case <-ctx.Done():
				return ctx.Err()
			}
			return resockettest.Send("m1", "m2")(ctx, p)
		},
		resockettest.Silent(0),
	}})
	clk := clock.NewFake()
	c, rec := onClock(t, clk, srv.URL, resocket.WithHeartbeat(interval, timeout), resocket.WithReadQueue(1))
	armed(t, clk, interval)
	clk.Advance(interval) // the ping: the consumer is not stalled
	armed(t, clk, timeout)
	close(backlog) // then it is: m1 fills the queue, the pump waits with m2
	waitFor(t, "m1 in the read queue, the pump waiting with m2", func() bool {
		queued, waiting := c.Backlog()
		return queued == 1 && waiting
	})
	extended := func(arms int) {
		t.Helper()
		if err := clk.WaitFor(func() bool { return clk.Arms() > arms }, waitLimit); err != nil {
			t.Fatalf("the pong's wait was not extended: %v, %+v, events %v", err, c.Stats(), rec.all())
		}
	}
	arms := clk.Arms()
	clk.Advance(timeout)
	extended(arms)
	clk.Advance(timeout - time.Nanosecond)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for _, want := range []string{"m1", "m2"} { // the consumer catches up at the last moment
		if m, err := c.ReadMessage(ctx); err != nil || string(m.Data) != want {
			t.Fatalf("read %q, %v; want %s", m.Data, err, want)
		}
	}
	waitFor(t, "the pump no longer waiting", func() bool { _, waiting := c.Backlog(); return !waiting })
	arms = clk.Arms()
	clk.Advance(time.Nanosecond)
	extended(arms)
	if st := c.Stats(); st.HeartbeatTimeouts != 0 || st.Disconnects != 0 {
		t.Fatalf("a stall that ended a nanosecond before the timeout was a dead peer: %+v", st)
	}
	clk.Advance(timeout) // no stall in this wait, and no pong: dead
	mustErrorIs(t, rec.disconnected(t).Err, resocket.ErrHeartbeatTimeout)
}

// TestSlowReadConsumerThatAcksIsNotAZombie: a Read consumer that is slower
// than the feed but acknowledges every ACK it reads. The ACK waits in the
// read queue behind other messages when the next beat is due: that is a
// stalled consumer, not a zombie.
func TestSlowReadConsumerThatAcksIsNotAZombie(t *testing.T) {
	const beats = 15
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			for i := 0; i < beats; i++ { // each beat: 40 messages, then its ACK
				if _, _, err := p.Conn.Read(ctx); err != nil {
					return err
				}
				if err := resockettest.SendN(40, fmt.Sprintf("event %d.%%d", i))(ctx, p); err != nil {
					return err
				}
				if err := p.Conn.Write(ctx, websocket.MessageText, []byte("ack")); err != nil {
					return err
				}
			}
			return nil
		}),
	}})
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithReadQueue(10000),
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			s.Heartbeat(30*time.Millisecond, func(ctx context.Context) error {
				return s.Conn.Write(ctx, websocket.MessageText, []byte("beat"))
			})
			return nil
		}))...)
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	for acks := 0; acks < beats; {
		m, err := c.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after %d ACKs: %v (events %v)", acks, err, rec.all())
		}
		if m.Attempt != 1 {
			t.Fatalf("after %d ACKs, a message from socket %d: socket 1 was cut (events %v)", acks, m.Attempt, rec.all())
		}
		if string(m.Data) == "ack" {
			m.Session.AckHeartbeat()
			acks++
			continue
		}
		time.Sleep(time.Millisecond) // slower than the feed: the ACK waits in the queue
	}
	if n := c.Stats().HeartbeatTimeouts; n != 0 {
		t.Fatalf("%d heartbeat timeouts for a consumer that acknowledged every beat", n)
	}
}

func TestStaleAckDoesNotCountForTheNextSocket(t *testing.T) {
	const stale = 300
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(stale, "ack %d"), resockettest.Hangup()}},
		resockettest.Script{}, // holds the socket, reads the beats, never acknowledges them
	)
	beat := func(s *resocket.Session) func(context.Context) error {
		return func(ctx context.Context) error { return s.Conn.Write(ctx, websocket.MessageText, []byte("beat")) }
	}
	c, rec, m := staleMessage(t, srv, resocket.WithReadQueue(stale+10),
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			if s.Attempt == 2 {
				s.Heartbeat(20*time.Millisecond, beat(s))
			}
			return nil
		}))
	// Acknowledge socket 1's ACKs, one a millisecond: none may count for
	// socket 2, whose peer never answers, so socket 2 is a zombie (judged
	// once the consumer has taken what waited in the queue).
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for i := 1; ; i++ {
		m.Session.AckHeartbeat()
		if i == stale || c.Stats().HeartbeatTimeouts > 0 {
			break
		}
		time.Sleep(time.Millisecond)
		if m, _ = c.ReadMessage(ctx); m.Attempt != 1 {
			break
		}
	}
	d := rec.waitFor(t, "the zombie on socket 2", func(e resocket.Event) bool {
		d, ok := e.(resocket.Disconnected)
		return ok && errors.Is(d.Err, resocket.ErrZombie)
	})
	if d == nil {
		t.Fatal("no zombie")
	}
}

// A black-holed path (bytes accepted, nothing forwarded, TCP still open)
// is found by the heartbeat within interval+timeout; while every new
// connection is black-holed too the attempts time out; once the path is
// restored the client resumes on its own.
func TestBlackholeDetectedAndResumed(t *testing.T) {
	t.Parallel()
	const interval, timeout = 100 * time.Millisecond, 200 * time.Millisecond
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Echo()}}) // the handshake's hello is not echoed
	proxy := startProxy(t, srv)
	var m modes
	c, err := resocket.Dial(bounded(t), proxy.URL, fast(
		resocket.WithHandshake(m.handshake),
		resocket.WithHeartbeat(interval, timeout),
		resocket.WithConnectTimeout(300*time.Millisecond),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := record(c)
	start := time.Now()
	proxy.SetAll(resockettest.Settings{Blackhole: true})
	d := rec.disconnected(t)
	noticed := time.Since(start)
	if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry || !errors.Is(d.Err, resocket.ErrHeartbeatTimeout) {
		t.Fatalf("got %d %v %v, want a 1006 heartbeat timeout, retried", d.Code, d.Action, d.Err)
	}
	// interval+timeout, with ten times that for a loaded machine;
	// BenchmarkDeadPeer measures it, TestPingTimeoutOnTheClock checks
	// the edge exactly.
	if noticed > 10*(interval+timeout) {
		t.Fatalf("noticed after %v, want about %v", noticed, interval+timeout)
	}
	rec.waitFor(t, "an attempt timing out in the black hole", func(e resocket.Event) bool {
		d, ok := e.(resocket.Disconnected)
		return ok && strings.Contains(d.Err.Error(), "connect timeout")
	})
	proxy.SetAll(resockettest.Settings{})
	rec.waitFor(t, "a resumed socket", func(e resocket.Event) bool {
		c, ok := e.(resocket.Connected)
		return ok && c.Mode == resume
	})
	if err := c.Write(bounded(t), websocket.MessageText, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); got != "back" {
		t.Fatalf("echo %q", got)
	}
}

// Latency below the pong timeout is not a dead peer.
func TestLatencyIsNotDeath(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	proxy := startProxy(t, srv)
	proxy.SetDefault(resockettest.Settings{Latency: 80 * time.Millisecond}) // 160 ms round trip
	c, err := resocket.Dial(bounded(t), proxy.URL, fast(resocket.WithHeartbeat(50*time.Millisecond, time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		if err := c.Write(bounded(t), websocket.MessageText, []byte("slow")); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, c); got != "slow" {
			t.Fatalf("echo %q", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := c.Stats(); s.HeartbeatTimeouts != 0 || s.Opens != 1 {
		t.Fatalf("stats %+v: latency was taken for death", s)
	}
}
