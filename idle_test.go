package resocket_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// The idle limit: a socket on which nothing arrives within the limit set
// by Session.SetIdleTimeout is a drop (1006, retry), on both delivery
// paths, and never while the consumer is stalled.

const idleLimit = 150 * time.Millisecond

// idleClient connects with an idle limit set in the handshake, on the
// Read path or (handler non-nil) the handler path.
func idleClient(t *testing.T, url string, handler func(resocket.Message), opts ...resocket.Option) (*resocket.Client, *recorder) {
	t.Helper()
	opts = append(opts, resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.SetIdleTimeout(idleLimit)
		return nil
	}))
	if handler != nil {
		opts = append(opts, resocket.WithOnMessage(handler))
	}
	c, rec := newRecorded(t, url, fast(opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func paths() map[string]func(resocket.Message) {
	return map[string]func(resocket.Message){"read": nil, "handler": func(resocket.Message) {}}
}

func idleDisconnect(t *testing.T, rec *recorder) resocket.Disconnected {
	t.Helper()
	d := rec.disconnected(t)
	if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry || !errors.Is(d.Err, resocket.ErrIdleTimeout) {
		t.Fatalf("disconnect %d %v (%v), want a 1006 retry wrapping ErrIdleTimeout", d.Code, d.Action, d.Err)
	}
	return d
}

// TestIdleLimitCutsASilentServer: the server says nothing once OPEN.
func TestIdleLimitCutsASilentServer(t *testing.T) {
	for name, h := range paths() {
		t.Run(name, func(t *testing.T) {
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Silent(waitLimit)}})
			start := time.Now()
			c, rec := idleClient(t, srv.URL, h)
			idleDisconnect(t, rec)
			if took := time.Since(start); took < idleLimit {
				t.Fatalf("cut after %v, before the limit of %v", took, idleLimit)
			}
			if n := c.Stats().IdleTimeouts; n != 1 {
				t.Fatalf("IdleTimeouts %d, want 1", n)
			}
		})
	}
}

// TestIdleLimitReArmedByTraffic: messages every 30 ms, or only pongs to
// the client's pings, keep a 150 ms limit from firing.
func TestIdleLimitReArmedByTraffic(t *testing.T) {
	for name, h := range paths() {
		t.Run(name+"/messages", func(t *testing.T) {
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
				resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
					for i := 0; i < 25; i++ {
						if err := p.Conn.Write(ctx, websocket.MessageText, []byte("tick")); err != nil {
							return err
						}
						resockettest.Sleep(30*time.Millisecond)(ctx, p)
					}
					return nil
				}),
			}})
			c, _ := idleClient(t, srv.URL, h)
			drain(c, 25)
			mustStayOnFirstSocket(t, c, "messages every 30 ms re-arm a 150 ms idle limit")
		})
		t.Run(name+"/pongs", func(t *testing.T) {
			srv := resockettest.NewServer(t) // answers pings, sends nothing
			c, _ := idleClient(t, srv.URL, h, resocket.WithHeartbeat(30*time.Millisecond, waitLimit))
			time.Sleep(4 * idleLimit)
			mustStayOnFirstSocket(t, c, "pongs every 30 ms re-arm a 150 ms idle limit")
		})
	}
}

// drain reads n messages on the Read path (the handler path reads by itself).
func drain(c *resocket.Client, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for i := 0; i < n; i++ {
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
	}
}

// TestIdleLimitWaitsForAStalledConsumer: the server sends 20 messages and
// goes silent. The consumer takes 400 ms over the first (more than twice
// the limit): no cut while it is stalled; every message is delivered, and
// only then does the silence count.
func TestIdleLimitWaitsForAStalledConsumer(t *testing.T) {
	for _, name := range []string{"read", "handler"} {
		t.Run(name, func(t *testing.T) {
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
				resockettest.SendN(20, "m%d"), resockettest.Silent(waitLimit),
			}})
			var got atomic.Int64
			var stallEnded atomic.Int64
			consume := func(m resocket.Message) {
				if got.Add(1) == 1 {
					time.Sleep(400 * time.Millisecond)
					stallEnded.Store(time.Now().UnixNano())
				}
			}
			var h func(resocket.Message)
			if name == "handler" {
				h = consume
			}
			c, rec := idleClient(t, srv.URL, h, resocket.WithReadQueue(4))
			if name == "read" {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
					defer cancel()
					for {
						m, err := c.ReadMessage(ctx)
						if err != nil || m.Attempt != 1 {
							return
						}
						consume(m)
					}
				}()
			}
			idleDisconnect(t, rec)
			if n := got.Load(); n < 20 {
				t.Fatalf("cut with %d of 20 messages consumed: the stalled consumer was taken for silence", n)
			}
			if ended := stallEnded.Load(); ended == 0 || time.Since(time.Unix(0, ended)) > waitLimit {
				t.Fatal("the stall did not end before the cut")
			}
		})
	}
}

// TestIdleLimitInTheHandshakeAndOff: set in the handshake, the limit is
// watched from OPEN on; a server silent mid-handshake is the connect
// timeout's. A limit set to 0 after OPEN turns the watch off.
func TestIdleLimitInTheHandshakeAndOff(t *testing.T) {
	t.Run("silent-mid-handshake", func(t *testing.T) {
		srv := resockettest.NewServer(t)
		srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Silent(waitLimit)}})
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithConnectTimeout(2*idleLimit),
			resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
				s.SetIdleTimeout(idleLimit)
				_, _, err := s.Conn.Read(ctx) // a hello that never comes
				return err
			}))...)
		go c.Connect(bounded(t))
		d := rec.disconnected(t)
		if !strings.Contains(d.Err.Error(), "connect timeout") || d.Action != resocket.ActionRetry {
			t.Fatalf("disconnect %v (%v), want the connect timeout, retried", d.Action, d.Err)
		}
		if n := c.Stats().IdleTimeouts; n != 0 {
			t.Fatalf("IdleTimeouts %d during a handshake", n)
		}
	})
	t.Run("off", func(t *testing.T) {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a"), resockettest.Silent(waitLimit)}})
		c, _ := idleClient(t, srv.URL, nil)
		m, err := c.ReadMessage(bounded(t))
		if err != nil {
			t.Fatal(err)
		}
		m.Session.SetIdleTimeout(0)
		time.Sleep(3 * idleLimit)
		mustStayOnFirstSocket(t, c, "a limit of 0 turns the watch off")
	})
}
