package resocket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/gateway"
	"github.com/resocket/resocket/resockettest"
)

// The embedding kit, end to end against the fake gateway in
// internal/gateway, which follows the real rules and refuses what a real
// gateway refuses.

var gatewayRules = gateway.Config{
	Token:             "test-token",
	HeartbeatInterval: 100 * time.Millisecond,
	MaxConcurrency:    1,
	IdentifyEvery:     250 * time.Millisecond,
	SendLimit:         10,
	SendWindow:        500 * time.Millisecond,
}

func startGateway(t *testing.T, cfg gateway.Config) *gateway.Server {
	t.Helper()
	g, err := gateway.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// runShard starts a shard (closed when the test ends) with a recorder
// subscribed before it connects, and returns when it is OPEN.
func runShard(t *testing.T, g *gateway.Server, cfg gateway.ShardConfig) (*gateway.Shard, *recorder) {
	t.Helper()
	cfg.URL, cfg.Token = g.URL, gatewayRules.Token
	cfg.Count = max(cfg.Count, 1)
	cfg.Options = append([]resocket.Option{
		resocket.WithHeartbeat(0, 0),
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(20 * time.Millisecond) }),
	}, cfg.Options...)
	s, err := gateway.NewShard(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := record(s.Client())
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	t.Cleanup(func() { s.Close(); <-done })
	rec.connected(t, 1)
	return s, rec
}

// waitRecords waits until the gateway saw n records of kind.
func waitRecords(t *testing.T, g *gateway.Server, kind string, n int) []gateway.Record {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if rs := g.Records(kind); len(rs) >= n {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway saw %d %s, want %d; all: %v", len(g.Records(kind)), kind, n, g.Records(""))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func countEvents[E resocket.Event](r *recorder) int {
	n := 0
	for _, e := range r.all() {
		if _, ok := e.(E); ok {
			n++
		}
	}
	return n
}

// Three shards sharing one identify limiter identify one per window (the
// gateway refuses none), while a resume goes through at once.
func TestIdentifyPacingAcrossShards(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	const per = 300 * time.Millisecond // a little over the gateway's 250 ms
	lim := resocket.NewLimiter(1, per)
	var recs []*recorder
	for id := 0; id < 3; id++ {
		_, rec := runShard(t, g, gateway.ShardConfig{ID: id, Count: 3, IdentifyLimiter: lim})
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
	if after := res.At.Sub(ids[2].At); after >= per {
		t.Fatalf("the resume came %v after the last identify: it waited for the identify limiter", after)
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

// Resume attempts dial the session's resume URL; a re-identify clears it
// and identifies at New's URL.
func TestResumeURL(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	_, rec := runShard(t, g, gateway.ShardConfig{IdentifyLimiter: resocket.NewLimiter(1, 300*time.Millisecond)})
	g.Drop(0)
	if r := waitRecords(t, g, "resume", 1)[0]; r.Path != "/resume" {
		t.Fatalf("resumed at %q, want the resume URL's /resume", r.Path)
	}
	g.InvalidateSession(0, false)
	if r := waitRecords(t, g, "identify", 2)[1]; r.Path != "/" {
		t.Fatalf("identified again at %q, want New's URL", r.Path)
	}
	rec.connected(t, 3) // READY came: there is a session to resume (a drop before it identifies again)
	g.Drop(0)
	if r := waitRecords(t, g, "resume", 2)[1]; r.Path != "/resume" {
		t.Fatalf("the new session resumed at %q", r.Path)
	}
	if n := len(g.Records("resume-refused")); n != 0 {
		t.Fatalf("%d resumes refused", n)
	}
}

func TestResumeURLBadInputAndSecrets(t *testing.T) {
	t.Parallel()
	c, err := resocket.New("ws://127.0.0.1:9/", fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, bad := range []string{"::not a url", "ftp://host/", "ws:///no-host", "relative/path"} {
		if err := c.SetResumeURL(bad); err == nil || !strings.Contains(err.Error(), "resocket: SetResumeURL: invalid URL") {
			t.Fatalf("SetResumeURL(%q) = %v", bad, err)
		}
		if _, err := resocket.New("ws://127.0.0.1:9/", resocket.WithResume(bad)); err == nil || !strings.Contains(err.Error(), "WithResume: invalid URL") {
			t.Fatalf("WithResume(%q) = %v", bad, err)
		}
	}
	if err := c.SetResumeURL(""); err != nil {
		t.Fatalf("clearing: %v", err)
	}

	// A resume URL's token never shows, in errors, events or logs.
	const secret = "resume-s3cret-value"
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Sleep(100 * time.Millisecond), resockettest.Reset()}})
	var logs bytes.Buffer
	var mu sync.Mutex
	c2, rec := newRecorded(t, srv.URL, fast(resocket.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))))...)
	if err := c2.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c2.SetResumeURL(refusedURL(t) + "?token=" + secret); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "a failed resume", func(e resocket.Event) bool {
		d, ok := e.(resocket.Disconnected)
		return ok && d.Code == 0
	})
	c2.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, e := range rec.all() {
		if strings.Contains(fmt.Sprintf("%+v", e), secret) {
			t.Fatalf("event leaks the resume token: %+v", e)
		}
	}
	if strings.Contains(logs.String(), secret) || !strings.Contains(logs.String(), "token=REDACTED") {
		t.Fatalf("logs leak the resume token, or never name the resume URL:\n%s", logs.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A deploy: the old process closes with 4000, the new one starts with
// WithResume and gets the events it missed, once each.
func TestCloseWithKeepsTheSessionForTheNextProcess(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	var mu sync.Mutex
	var got []string
	onDispatch := func(p gateway.Payload) {
		mu.Lock()
		got = append(got, fmt.Sprintf("%s#%d", p.T, p.S))
		mu.Unlock()
	}
	old, _ := runShard(t, g, gateway.ShardConfig{OnDispatch: onDispatch})
	g.Dispatch(0, "BEFORE", nil)
	waitFor(t, "BEFORE", func() bool { return old.Seq() == 2 })
	kept := old.Suspend()
	if r := waitRecords(t, g, "closed", 1)[0]; r.Detail != "4000" {
		t.Fatalf("the gateway saw the old process close with %s, want 4000", r.Detail)
	}
	g.Dispatch(0, "DURING", nil)
	_, rec := runShard(t, g, gateway.ShardConfig{Resume: &kept, OnDispatch: onDispatch})
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, waitLimit)
		}
		time.Sleep(2 * time.Millisecond)
	}
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
	c2, err := resocket.Dial(context.Background(), srv.URL, fast()...)
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
	mustErrorIs(t, c.Connect(context.Background()), resocket.ErrClosed)
	select {
	case <-returned:
	case <-time.After(waitLimit):
		t.Fatal("CloseWith inside the handshake did not return")
	}
}

// The application heartbeat: beats on schedule, the ACK gives the RTT,
// a missing ACK makes a zombie that is cut and resumed.
func TestApplicationHeartbeatZombie(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	s, rec := runShard(t, g, gateway.ShardConfig{})
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
	// intervals and some scheduling slack.
	if took := time.Since(cut); took > 4*gatewayRules.HeartbeatInterval+200*time.Millisecond {
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
		if err := c.Connect(context.Background()); err != nil {
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
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * interval) // stalled: twenty beats come due
	var got []string
	for len(got) < 20 {
		m, err := c.ReadMessage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) == "beat" {
			c.AckHeartbeat()
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
			if err := c.Connect(context.Background()); err != nil {
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
			_, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
				call(s)
				return nil
			}))...)
			if err == nil || !strings.Contains(err.Error(), "Session.Heartbeat: "+name) {
				t.Fatalf("Dial = %v, want an error naming %q", err, name)
			}
		})
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
	send := func(t *testing.T, s *gateway.Shard) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		for i := 0; i < burst; i++ {
			s.Send(ctx, 3, i)
		}
	}
	t.Run("paced", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, rules)
		s, rec := runShard(t, g, gateway.ShardConfig{WriteLimiter: resocket.NewLimiter(perWindow, rules.SendWindow)})
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
		s, rec := runShard(t, g, gateway.ShardConfig{})
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
	s, rec := runShard(t, g, gateway.ShardConfig{WriteLimiter: resocket.NewLimiter(1, time.Hour)})
	c := s.Client()
	if err := s.Send(context.Background(), 3, "one"); err != nil {
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
	go func() { blocked <- c.Write(context.Background(), websocket.MessageText, []byte(`{"op":3}`)) }()
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

// Stats().RTT is the last ping-to-pong time when the WebSocket heartbeat
// is the only one.
func TestPingRTT(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHeartbeat(200*time.Millisecond, time.Second))...)
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

// ReadMessage tells which socket each message came from: the Attempt
// changes exactly at the socket boundary.
func TestReadMessageAttempt(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a1", "a2"), resockettest.Sleep(50 * time.Millisecond), resockettest.Reset()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.Send("b1"), resockettest.Echo()}},
	)
	c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
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
	if err := c.Connect(context.Background()); err != nil {
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
