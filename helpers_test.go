package resocket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/internal/clock"
	"github.com/resocket/resocket/internal/gateway"
	"github.com/resocket/resocket/resockettest"
)

// waitLimit bounds every wait in these tests; nothing should come close.
const waitLimit = 10 * time.Second

// bounded is the context of a test's blocking calls (Dial, Connect, Read,
// Write, a limiter's Wait): one that never returns fails its test with
// the context's error after a minute, instead of hanging the package
// until go test's timeout kills it with no verdict.
func bounded(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 6*waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// fast are options that keep tests quick: no backoff, no heartbeat unless
// a test turns it on.
func fast(opts ...resocket.Option) []resocket.Option {
	return append([]resocket.Option{
		resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
		resocket.WithHeartbeat(0, 0),
		resocket.WithCloseTimeout(500 * time.Millisecond),
	}, opts...)
}

// modes is a handshake that records its modes and tells the server which
// one it runs in, so that a plan can Read(1) it.
type modes struct {
	mu  sync.Mutex
	got []resocket.Mode
}

func (m *modes) handshake(ctx context.Context, s *resocket.Session) error {
	m.mu.Lock()
	m.got = append(m.got, s.Mode)
	m.mu.Unlock()
	return s.Conn.Write(ctx, websocket.MessageText, []byte(s.Mode.String()))
}

func (m *modes) list() []resocket.Mode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]resocket.Mode(nil), m.got...)
}

// recorder collects every event of one subscription.
type recorder struct {
	mu     sync.Mutex
	events []resocket.Event
	closed chan struct{}
}

func record(c *resocket.Client) *recorder {
	r := &recorder{closed: make(chan struct{})}
	ch, _ := c.Subscribe(4096)
	go func() {
		defer close(r.closed)
		for e := range ch {
			r.mu.Lock()
			r.events = append(r.events, e)
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) all() []resocket.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]resocket.Event(nil), r.events...)
}

// waitFor waits until an event matches and returns it.
func (r *recorder) waitFor(t *testing.T, what string, match func(resocket.Event) bool) resocket.Event {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		for _, e := range r.all() {
			if match(e) {
				return e
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no %s within %v; events: %v", what, waitLimit, r.all())
	return nil
}

func (r *recorder) disconnected(t *testing.T) resocket.Disconnected {
	t.Helper()
	return r.waitFor(t, "Disconnected", func(e resocket.Event) bool {
		_, ok := e.(resocket.Disconnected)
		return ok
	}).(resocket.Disconnected)
}

// connectedCount waits until n Connected events were seen.
func (r *recorder) connected(t *testing.T, n int) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("Connected #%d", n), func(resocket.Event) bool {
		k := 0
		for _, e := range r.all() {
			if _, ok := e.(resocket.Connected); ok {
				k++
			}
		}
		return k >= n
	})
}

// states returns the To of every StateChanged, after the channel closed.
func (r *recorder) states(t *testing.T) []resocket.State {
	t.Helper()
	select {
	case <-r.closed:
	case <-time.After(waitLimit):
		t.Fatal("event channel not closed")
	}
	var out []resocket.State
	for _, e := range r.all() {
		if sc, ok := e.(resocket.StateChanged); ok {
			out = append(out, sc.To)
		}
	}
	return out
}

func waitDone(t *testing.T, c *resocket.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatalf("client not CLOSED within %v; state %v", waitLimit, c.State())
	}
}

func equal[T comparable](t *testing.T, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
}

// mustStayOnFirstSocket fails the test, saying why it matters, unless the
// client is still on the socket it opened first.
func mustStayOnFirstSocket(t *testing.T, c *resocket.Client, why string) {
	t.Helper()
	if st := c.Stats(); st.Opens != 1 || st.Disconnects != 0 {
		t.Fatalf("opens %d, disconnects %d, want 1 and 0: %s", st.Opens, st.Disconnects, why)
	}
}

// mustEchoOnFirstSocket writes msg, reads its echo, and checks that the
// client is still on the socket it opened first.
func mustEchoOnFirstSocket(t *testing.T, c *resocket.Client, msg, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("echo of %q: %v", msg, err)
	}
	if string(b) != msg {
		t.Fatalf("echo %q, want %q", b, msg)
	}
	mustStayOnFirstSocket(t, c, why)
}

func mustErrorIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v does not wrap %v", err, target)
	}
}

// refusedURL returns a loopback URL on which nothing listens.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ws://" + addr + "/"
}

// newRecorded makes a client (closed when the test ends) with a recorder
// subscribed before anything happens. It does not connect.
func newRecorded(t *testing.T, url string, opts ...resocket.Option) (*resocket.Client, *recorder) {
	t.Helper()
	c, err := resocket.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, record(c)
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func readText(t *testing.T, c *resocket.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

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
func runShard(t *testing.T, g *gateway.Server, cfg shard.Config) (*shard.Shard, *recorder) {
	t.Helper()
	cfg.URL, cfg.Token = g.URL, gatewayRules.Token
	cfg.Count = max(cfg.Count, 1)
	cfg.Options = append([]resocket.Option{
		resocket.WithHeartbeat(0, 0),
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(20 * time.Millisecond) }),
	}, cfg.Options...)
	s, err := shard.New(cfg)
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

// collector is a WithOnMessage handler that keeps a copy of every message
// with the socket it came from.
type collector struct {
	mu  sync.Mutex
	got []string
}

func (k *collector) handle(m resocket.Message) {
	k.mu.Lock()
	k.got = append(k.got, fmt.Sprintf("%s@%d", m.Data, m.Attempt))
	k.mu.Unlock()
}

func (k *collector) list() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.got...)
}

func (k *collector) wait(t *testing.T, n int) []string {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages", n), func() bool { return len(k.list()) >= n })
	return k.list()
}

// staleMessage connects a client to srv, waits for socket 2 to be OPEN,
// and returns the first message, which socket 1 carried.
func staleMessage(t *testing.T, srv *resockettest.Server, opts ...resocket.Option) (*resocket.Client, *recorder, resocket.Message) {
	t.Helper()
	c, rec := newRecorded(t, srv.URL, fast(opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	rec.connected(t, 2)
	m, err := c.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Attempt != 1 || m.Session == nil || m.Session.Attempt != 1 {
		t.Fatalf("first message from attempt %d (session %+v), want socket 1", m.Attempt, m.Session)
	}
	select {
	case <-m.Session.Done():
	default:
		t.Fatal("socket 1's Session.Done is open after socket 2 opened")
	}
	return c, rec, m
}

// waitReceived waits until connection i of srv recorded n messages.
func waitReceived(t *testing.T, srv *resockettest.Server, i, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if conns := srv.Conns(); len(conns) > i && len(conns[i].Received()) >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("connection %d did not receive %d messages within %v", i, n, waitLimit)
}

func startProxy(t *testing.T, srv *resockettest.Server) *resockettest.Proxy {
	t.Helper()
	p, err := resockettest.StartProxy(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// closeAfter is a script that stops reading for d (so the client's pings
// and beats go unanswered, in flight), then sends a close frame with code
// 4000 and reads nothing more for a while.
func closeAfter(d time.Duration) resockettest.Script {
	return resockettest.Script{Steps: []resockettest.Step{
		resockettest.Sleep(d),
		resockettest.Raw(resockettest.Frame(0x8, append([]byte{0x0f, 0xa0}, "going"...))),
		resockettest.Sleep(300 * time.Millisecond),
	}}
}

// repeat returns n copies of s.
func repeat(s resockettest.Script, n int) []resockettest.Script {
	out := make([]resockettest.Script, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// checkCloseVerdicts waits for n disconnects and checks each is the 4000
// of closeAfter, not a heartbeat's cut.
func checkCloseVerdicts(t *testing.T, c *resocket.Client, rec *recorder, n int) {
	t.Helper()
	var ds []resocket.Disconnected
	for deadline := time.Now().Add(waitLimit); len(ds) < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d disconnects within %v, want %d", len(ds), waitLimit, n)
		}
		ds = ds[:0]
		for _, e := range rec.all() {
			if d, ok := e.(resocket.Disconnected); ok {
				ds = append(ds, d)
			}
		}
	}
	for i, d := range ds[:n] {
		if d.Code != 4000 || d.Action != resocket.ActionRetry {
			t.Fatalf("disconnect %d: %d %v (%v), want the peer's 4000 retry", i+1, d.Code, d.Action, d.Err)
		}
	}
	if n := c.Stats().HeartbeatTimeouts; n != 0 {
		t.Fatalf("%d heartbeat timeouts counted, want 0", n)
	}
}

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

var (
	identify = resocket.ModeIdentify
	resume   = resocket.ModeResume
)

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
