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
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			<-reset
			var werr error
			for i := 0; i < 200 && werr == nil; i++ { // the RST is on its way over loopback
				werr = c.Write(context.Background(), websocket.MessageText, []byte("x"))
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

// A close frame that comes while a ping waits for its pong ends the ping
// early (the socket closes); that is not a missing pong.
func TestPingCutShortByACloseFrameIsNotATimeout(t *testing.T) {
	t.Parallel()
	const n = 10
	srv := resockettest.NewServer(t, repeat(closeAfter(100*time.Millisecond), n)...)
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHeartbeat(10*time.Millisecond, waitLimit))...)
	if err := c.Connect(context.Background()); err != nil {
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
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkCloseVerdicts(t, c, rec, n)
}
