package resocket_test

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// The peer's close frame says why a socket ended. Whatever the client was
// doing when it came (writing, pinging, beating), the frame's code is the
// verdict.
// A peer that sends a close frame and then resets fails the client's next
// write, while the close frame still waits to be read (here because the
// consumer has not caught up). The failed write must not cut the socket
// under the reader: the close frame's code is the verdict, not a drop.
func TestCloseFrameOutlivesAFailedWrite(t *testing.T) {
	t.Parallel()
	for _, handler := range []bool{false, true} {
		name := map[bool]string{false: "read", true: "handler"}[handler]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reset := make(chan struct{})
			payload := append([]byte{0x0f, 0xa4}, "authentication failed"...) // 4004
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
				resockettest.Send("a", "b"),
				resockettest.Raw(resockettest.Frame(0x8, payload)),
				resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
					err := resockettest.Reset()(ctx, p)
					close(reset)
					return err
				}),
			}})
			release := make(chan struct{})
			got := make(chan string, 2)
			opts := fast(resocket.WithReadQueue(1), resocket.WithCloseTimeout(waitLimit))
			if handler {
				opts = append(opts, resocket.WithOnMessage(func(m resocket.Message) {
					<-release // the consumer is slow: nothing more is read
					got <- string(m.Data)
				}))
			}
			c, rec := newRecorded(t, srv.URL, opts...)
			if err := c.Connect(bounded(t)); err != nil {
				t.Fatal(err)
			}
			receive(t, reset)
			var werr error
			for i := 0; i < 200 && werr == nil; i++ { // the RST is on its way over loopback
				werr = c.Write(bounded(t), websocket.MessageText, []byte("x"))
				time.Sleep(5 * time.Millisecond)
			}
			if werr == nil {
				t.Fatal("no write failed after the peer reset")
			}
			close(release)
			if !handler {
				got <- readText(t, c)
				got <- readText(t, c)
			}
			for _, want := range []string{"a", "b"} {
				select {
				case m := <-got:
					if m != want {
						t.Fatalf("message %q, want %q", m, want)
					}
				case <-time.After(waitLimit):
					t.Fatalf("message %q never delivered", want)
				}
			}
			d := rec.disconnected(t)
			if d.Code != 4004 || d.Action != resocket.ActionFatal {
				t.Fatalf("verdict %d %v (%v), want 4004 fatal: the failed write cut the socket before its close frame was read", d.Code, d.Action, d.Err)
			}
		})
	}
}

// A close frame that comes while a ping waits for its pong ends the ping
// early (the socket closes); that is not a missing pong.
func TestPingCutShortByACloseFrameIsNotATimeout(t *testing.T) {
	t.Parallel()
	const n = 10
	srv := resockettest.NewServer(t, repeat(closeAfter(100*time.Millisecond), n)...)
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHeartbeat(10*time.Millisecond, waitLimit))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	checkCloseVerdicts(t, c, rec, n)
}

// A beat that fails because the peer's close frame closed the socket under
// it is not what ended the socket.
func TestBeatCutShortByACloseFrameIsNotADrop(t *testing.T) {
	t.Parallel()
	const n = 10
	srv := resockettest.NewServer(t, repeat(closeAfter(100*time.Millisecond), n)...)
	var c *resocket.Client
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		conn := s.Conn
		s.Heartbeat(2*time.Millisecond, func(context.Context) error {
			// Not the beat's ctx (2 ms): one that ends mid-frame would cut
			// the socket, and this test is about the close frame.
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if err := conn.Write(ctx, websocket.MessageText, []byte("beat")); err != nil {
				return err
			}
			c.AckHeartbeat() // acknowledged at once: never a zombie
			return nil
		})
		return nil
	}))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	checkCloseVerdicts(t, c, rec, n)
}

// TestCloseFrameInTheHandshakeBeatsAFailedBeat: the server refuses the
// identify with 4004 while the handshake's heartbeat runs. The beat fails
// on the socket the close frame closed; the close frame is the verdict,
// so the client stops instead of retrying a bad token.
func TestCloseFrameInTheHandshakeBeatsAFailedBeat(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{
		resockettest.Send("hello"), resockettest.Read(1), resockettest.Close(4004, "authentication failed"),
	}})
	for round := 0; round < 20; round++ {
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			if _, _, err := s.Conn.Read(ctx); err != nil {
				return err
			}
			// A beat every 10 ms: at least two fail on the closed socket in
			// the 30 ms below. Each is answered at once, so only a failed
			// beat can cut the socket. The write is not bounded by the
			// beat's 10 ms ctx: on a loaded machine that ctx can end
			// before the write takes its lock, a failure before the close
			// frame arrived, which rightly decides the socket.
			s.Heartbeat(10*time.Millisecond, func(context.Context) error {
				s.AckHeartbeat()
				wctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				defer cancel()
				return s.Conn.Write(wctx, websocket.MessageText, []byte("beat"))
			})
			_, _, err := s.Conn.Read(ctx) // the close frame
			time.Sleep(30 * time.Millisecond)
			return err
		}))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		err := c.Connect(ctx)
		cancel()
		if websocket.CloseStatus(err) != 4004 {
			t.Fatalf("round %d: Connect: %v, want the fatal 4004 (%d attempts)", round, err, c.Stats().Attempts)
		}
		if st := c.Stats(); st.Attempts != 1 || st.Disconnects != 1 {
			t.Fatalf("round %d: %d attempts, %d disconnects, want 1 and 1 (first event %v)", round, st.Attempts, st.Disconnects, rec.all()[0])
		}
	}
}

// TestActsOnAnEndingSocket: a consumer that sets an idle limit or starts
// a heartbeat on the Session of a socket that is being let go: nothing
// starts, nothing races (run with -race).
func TestActsOnAnEndingSocket(t *testing.T) {
	srv := resockettest.NewServer(t)
	sessions := make(chan *resocket.Session, 1)
	c, _ := newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(time.Millisecond, func(ctx context.Context) error {
			<-ctx.Done() // a beat in flight: the socket's release waits for it
			time.Sleep(2 * time.Millisecond)
			return nil
		})
		select {
		case sessions <- s:
		default:
		}
		return nil
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s := <-sessions
	for i := 0; i < 50; i++ { // acts while the release runs
		if i == 10 {
			s.Reconnect(4000, "", resocket.ActionRetry)
		}
		s.SetIdleTimeout(time.Hour)
		s.Heartbeat(time.Hour, func(context.Context) error { return nil })
		time.Sleep(100 * time.Microsecond)
	}
	receive(t, s.Done())
}

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
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- c.Write(bounded(t), websocket.MessageBinary, make([]byte, 64<<20)) }()
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

// Reset and half-close on the path are 1006 drops, resumed.
func TestProxyResetAndHalfClose(t *testing.T) {
	for name, cut := range map[string]func(*resockettest.ProxyConn){
		"reset":      (*resockettest.ProxyConn).Reset,
		"half-close": (*resockettest.ProxyConn).HalfClose,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t)
			proxy := startProxy(t, srv)
			var m modes
			c, err := resocket.Dial(bounded(t), proxy.URL, fast(resocket.WithHandshake(m.handshake))...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rec := record(c)
			cut(proxy.Last())
			d := rec.disconnected(t)
			if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry {
				t.Fatalf("got %d %v (%v)", d.Code, d.Action, d.Err)
			}
			rec.connected(t, 1)
			equal(t, "modes", m.list(), []resocket.Mode{identify, resume})
		})
	}
}
