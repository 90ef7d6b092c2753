package resockettest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket/resockettest"
)

// The stateful mode: a handler per connection, the faults as Peer
// methods, state shared across connections.

type handler = func(ctx context.Context, p *resockettest.Peer) error

func handlerServer(t *testing.T, h handler) *resockettest.Server {
	t.Helper()
	srv := resockettest.NewServer(t)
	srv.SetHandler(h)
	return srv
}

// upgraded runs f once the handler accepted the upgrade.
func upgraded(f handler) handler {
	return func(ctx context.Context, p *resockettest.Peer) error {
		if err := p.Accept(); err != nil {
			return err
		}
		return f(ctx, p)
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }

// A handler ends a socket with a close frame, a reset or a FIN, after the
// messages sent before it.
func TestHandlerEndsTheSocket(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		end   func(p *resockettest.Peer) error
		check func(err error) bool
	}{
		{"close", func(p *resockettest.Peer) error { return p.Close(4003, "session invalidated") }, func(err error) bool {
			var ce websocket.CloseError
			return errors.As(err, &ce) && ce.Code == 4003 && ce.Reason == "session invalidated"
		}},
		{"reset", func(p *resockettest.Peer) error { return p.Reset() }, func(err error) bool {
			return websocket.CloseStatus(err) == -1 && errors.Is(err, syscall.ECONNRESET)
		}},
		{"hangup", func(p *resockettest.Peer) error { return p.Hangup() }, func(err error) bool {
			return websocket.CloseStatus(err) == -1 && isEOF(err)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := handlerServer(t, upgraded(func(ctx context.Context, p *resockettest.Peer) error {
				if err := p.Send(ctx, "before"); err != nil {
					return err
				}
				return tc.end(p)
			}))
			c, _, err := dial(t, srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			if m, err := read(t, c); m != "before" {
				t.Fatalf("read %q, %v", m, err)
			}
			if _, err := read(t, c); !tc.check(err) {
				t.Fatalf("the socket ended with %v", err)
			}
		})
	}
}

// pingWhileReading pings c within d while a reader takes what comes (the
// pong needs one); it returns the reader's end and the ping's result.
func pingWhileReading(c *websocket.Conn, d time.Duration) (<-chan error, error) {
	ended := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _, err := c.Read(ctx)
		ended <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return ended, c.Ping(ctx)
}

// Silent leaves pings unanswered, then hangs up; a handler that returns
// nil leaves the socket held, answering them.
func TestHandlerSilentThenHeld(t *testing.T) {
	t.Parallel()
	const silence = 300 * time.Millisecond
	srv := handlerServer(t, upgraded(func(ctx context.Context, p *resockettest.Peer) error {
		if p.Info.Index == 1 {
			return p.Silent(ctx, silence)
		}
		return nil
	}))
	start := time.Now()
	c, _, err := dial(t, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ended, ping := pingWhileReading(c, 100*time.Millisecond)
	if !errors.Is(ping, context.DeadlineExceeded) {
		t.Fatalf("a silent server answered a ping: %v", ping)
	}
	// The hangup throws the unread ping away: a FIN or a reset.
	if err := <-ended; websocket.CloseStatus(err) != -1 || err == nil || time.Since(start) < silence {
		t.Fatalf("silence ended after %v with %v, want a hangup after %v", time.Since(start), err, silence)
	}
	c, _, err = dial(t, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, ping := pingWhileReading(c, 5*time.Second); ping != nil {
		t.Fatalf("a held socket did not answer a ping: %v", ping)
	}
}

// Raw frames reach the client as they are, good or broken.
func TestHandlerRaw(t *testing.T) {
	t.Parallel()
	srv := handlerServer(t, upgraded(func(ctx context.Context, p *resockettest.Peer) error {
		if err := p.Raw(resockettest.Frame(0x1, []byte("raw"))); err != nil {
			return err
		}
		return p.Raw(resockettest.Frame(0x3, nil)) // a reserved opcode
	}))
	c, _, err := dial(t, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := read(t, c); m != "raw" {
		t.Fatalf("read %q, %v", m, err)
	}
	if _, err := read(t, c); err == nil || !strings.Contains(err.Error(), "opcode") {
		t.Fatalf("a reserved opcode read as %v", err)
	}
}

// upgradeFaults are the upgrade-level faults, decided by a handler before
// it answers, with what the client's dial must see.
var upgradeFaults = []struct {
	name  string
	h     handler
	check func(resp *http.Response, err error, took time.Duration) bool
}{
	{"reject", func(ctx context.Context, p *resockettest.Peer) error {
		return p.Reject(520, http.Header{"Retry-After": {"3"}}, "origin down")
	}, func(resp *http.Response, err error, _ time.Duration) bool {
		return resp != nil && resp.StatusCode == 520 && resp.Header.Get("Retry-After") == "3" && body(resp) == "origin down"
	}},
	{"bad-accept", func(ctx context.Context, p *resockettest.Peer) error { return p.BadAccept() },
		func(_ *http.Response, err error, _ time.Duration) bool {
			return err != nil && strings.Contains(err.Error(), "Sec-WebSocket-Accept")
		}},
	{"trickle", func(ctx context.Context, p *resockettest.Peer) error { return p.Trickle(ctx, 20*time.Millisecond) },
		func(_ *http.Response, err error, _ time.Duration) bool {
			return errors.Is(err, context.DeadlineExceeded)
		}},
	{"reset", func(ctx context.Context, p *resockettest.Peer) error { return p.Reset() },
		func(resp *http.Response, err error, _ time.Duration) bool {
			return resp == nil && errors.Is(err, syscall.ECONNRESET)
		}},
	{"hangup", func(ctx context.Context, p *resockettest.Peer) error { return p.Hangup() },
		func(resp *http.Response, err error, _ time.Duration) bool { return resp == nil && isEOF(err) }},
	{"silent", func(ctx context.Context, p *resockettest.Peer) error { return p.Silent(ctx, 200*time.Millisecond) },
		func(resp *http.Response, err error, took time.Duration) bool {
			return resp == nil && isEOF(err) && took >= 200*time.Millisecond
		}},
	{"unanswered", func(ctx context.Context, p *resockettest.Peer) error { return errors.New("no such shard") },
		func(resp *http.Response, err error, _ time.Duration) bool {
			return resp != nil && resp.StatusCode == 500 && strings.Contains(body(resp), "without answering the upgrade: no such shard")
		}},
}

// The upgrade-level faults, for real.
func TestHandlerUpgradeFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range upgradeFaults {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := handlerServer(t, tc.h)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			c, resp, err := websocket.Dial(ctx, srv.URL, nil)
			if c != nil {
				c.CloseNow()
			}
			if err == nil || !tc.check(resp, err, time.Since(start)) {
				t.Fatalf("dial: %v, %+v after %v", err, resp, time.Since(start))
			}
		})
	}
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A Peer refuses what its state does not allow: a socket's methods before
// Accept, a second answer to the upgrade, a TCP fault on a connection
// answered with a status (net/http's, and maybe the client's next
// request's).
func TestHandlerMisuse(t *testing.T) {
	t.Parallel()
	results := make(chan []error, 2)
	srv := handlerServer(t, func(ctx context.Context, p *resockettest.Peer) error {
		if p.Info.Index == 2 {
			err := p.Reject(503, nil, "")
			results <- []error{err, p.Reset(), p.Hangup(), p.Accept(), p.Silent(ctx, time.Hour)}
			return nil
		}
		_, _, readErr := p.Read(ctx)
		before := []error{p.Send(ctx, "x"), readErr, p.Raw([]byte{0}), p.Close(1000, "")}
		accept := p.Accept()
		results <- append(before, accept, p.Accept(), p.Reject(500, nil, ""), p.BadAccept(), p.Trickle(ctx, time.Millisecond))
		return p.Send(ctx, "after")
	})
	c, _, err := dial(t, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := read(t, c); m != "after" {
		t.Fatalf("read %q, %v", m, err)
	}
	if _, resp, _ := dial(t, srv.URL); resp == nil || resp.StatusCode != 503 {
		t.Fatalf("second connection: %+v", resp)
	}
	for i, want := range [][]bool{{false, false, false, false, true, false, false, false, false}, {true, false, false, false, false}} {
		for k, err := range <-results {
			if (err == nil) != want[k] {
				t.Errorf("connection %d, call %d: %v, want ok=%v", i+1, k, err, want[k])
			}
		}
	}
}

// registry is a gateway's state across connections: the socket each
// session lives on. A session identified again takes over: its old
// socket is closed from the new connection's handler.
type registry struct {
	mu   sync.Mutex
	live map[string]*resockettest.Peer
}

func (r *registry) serve(ctx context.Context, p *resockettest.Peer) error {
	if err := p.Accept(); err != nil {
		return err
	}
	_, b, err := p.Read(ctx)
	if err != nil {
		return err
	}
	p.Info.SetMode("identify")
	r.mu.Lock()
	old := r.live[string(b)]
	r.live[string(b)] = p
	r.mu.Unlock()
	if err := p.Send(ctx, fmt.Sprintf("ok %d", p.Info.Index)); err != nil {
		return err
	}
	if old != nil {
		old.Close(4009, "session taken over")
	}
	return nil
}

func identify(url, session string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(session)); err != nil {
		return c, err
	}
	if _, m, err := c.Read(ctx); err != nil || !strings.HasPrefix(string(m), "ok ") {
		return c, fmt.Errorf("%s: %q, %v", session, m, err)
	}
	return c, nil
}

// Handlers of different connections run at once over shared state; one
// acts on another's Peer; the records keep every connection.
func TestHandlerStateAcrossConnections(t *testing.T) {
	t.Parallel()
	srv := handlerServer(t, (&registry{live: map[string]*resockettest.Peer{}}).serve)
	sessions := []string{"s1", "s2", "s3", "s4", "s5", "s6", "taken", "taken"}
	conns := make([]*websocket.Conn, len(sessions))
	errs := make([]error, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions[:6] {
		wg.Add(1)
		go func() { defer wg.Done(); conns[i], errs[i] = identify(srv.URL, s) }()
	}
	wg.Wait()
	conns[6], errs[6] = identify(srv.URL, "taken")
	conns[7], errs[7] = identify(srv.URL, "taken")
	for i, c := range conns {
		if c != nil {
			defer c.CloseNow()
		}
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
	}
	var ce websocket.CloseError
	if _, err := read(t, conns[6]); !errors.As(err, &ce) || ce.Code != 4009 {
		t.Fatalf("the taken-over socket ended with %v", err)
	}
	if srv.Accepted() != 8 || strings.Join(srv.Modes(), ",") != strings.TrimSuffix(strings.Repeat("identify,", 8), ",") {
		t.Fatalf("Accepted %d, Modes %q", srv.Accepted(), srv.Modes())
	}
	var got []string
	for i, c := range srv.Conns() {
		if r := c.Received(); c.Index == i+1 && len(r) == 1 {
			got = append(got, r[0])
		}
	}
	if slices.Sort(got); !slices.Equal(got, sessions) {
		t.Fatalf("received %q, want %q", got, sessions)
	}
}

// Queued Scripts come first; the handler takes the rest; nil restores
// the echo.
func TestQueueComesBeforeTheHandler(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, steps(resockettest.Send("queued")))
	srv.SetHandler(upgraded(func(ctx context.Context, p *resockettest.Peer) error {
		return resockettest.Send("handled")(ctx, p) // any Step, called from a handler
	}))
	for _, want := range []string{"queued", "handled"} {
		c, _, _ := dial(t, srv.URL)
		if m, err := read(t, c); m != want {
			t.Fatalf("got %q, %v, want %q", m, err, want)
		}
	}
	srv.SetHandler(nil)
	c, _, _ := dial(t, srv.URL)
	c.Write(context.Background(), websocket.MessageText, []byte("echo"))
	if m, err := read(t, c); m != "echo" {
		t.Fatalf("default: %q, %v", m, err)
	}
}
