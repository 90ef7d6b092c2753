package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
)

// waitLimit bounds every wait in these tests; nothing should come close.
const waitLimit = 10 * time.Second

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
