package resocket_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// One socket, one scope: everything done in answer to a message belongs to
// the socket the message arrived on. These tests read a message from
// socket 1 only after socket 2 is OPEN, and act on it.

func TestSessionWriteNeverReachesTheNextSocket(t *testing.T) {
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.Send("ping"), resockettest.Hangup()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1)}},
	)
	c, _, m := staleMessage(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	err := m.Session.Write(ctx, websocket.MessageText, []byte("pong"))
	mustErrorIs(t, err, resocket.ErrSocketEnded)
	if want := "resocket: socket ended: socket 1 ended; nothing was sent"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, srv, 1, 1)
	if got := srv.Conns()[1].Received(); got[0] != "after" {
		t.Fatalf("socket 2 received %q first: a reply to socket 1 reached it", got)
	}
}

func TestSessionWriteOnItsOwnSocket(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Send("ping"), resockettest.Read(2),
	}})
	var handshakeWrite error
	c, _ := newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		handshakeWrite = s.Write(ctx, websocket.MessageText, []byte("hello from the handshake"))
		return handshakeWrite
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Session.Write(ctx, websocket.MessageText, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, srv, 0, 2)
	equal(t, "received", srv.Conns()[0].Received(), []string{"hello from the handshake", "pong"})
}

// TestScopedActsOnBadInput: a nil Session, one the client did not make,
// bad arguments, and acts after the client closed: clear errors, nothing
// blocks, nothing panics.
func TestScopedActsOnBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for name, s := range map[string]*resocket.Session{"nil": nil, "foreign": {}} {
		mustErrorIs(t, s.Write(ctx, websocket.MessageText, nil), resocket.ErrSocketEnded)
		if s.Reconnect(4000, "", resocket.ActionRetry) {
			t.Fatalf("%s Session: Reconnect returned true", name)
		}
		s.AckHeartbeat()
		s.Heartbeat(time.Second, func(context.Context) error { return nil })
		select {
		case <-s.Done():
		default:
			t.Fatalf("%s Session: Done is not closed", name)
		}
	}

	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
	c, _ := newRecorded(t, srv.URL, fast()...)
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Session.Write(ctx, websocket.MessageType(9), nil); err == nil {
		t.Fatal("Session.Write took message type 9")
	}
	for _, bad := range []struct {
		code websocket.StatusCode
		a    resocket.Action
	}{{1006, resocket.ActionRetry}, {4000, resocket.Action(7)}} {
		if m.Session.Reconnect(bad.code, "", bad.a) {
			t.Fatalf("Session.Reconnect(%d, %v) returned true", bad.code, bad.a)
		}
	}
	m.Session.AckHeartbeat() // no heartbeat running: ignored
	if st := c.Stats(); st.Disconnects != 0 {
		t.Fatalf("bad input ended the socket: %+v", st)
	}
	c.Close()
	err = m.Session.Write(ctx, websocket.MessageText, []byte("late"))
	mustErrorIs(t, err, resocket.ErrSocketEnded)
	mustErrorIs(t, err, resocket.ErrClosed)
	if !strings.HasSuffix(err.Error(), "and the client is closed; nothing was sent") {
		t.Fatalf("error %q does not say the client is closed", err)
	}
	if m.Session.Reconnect(4000, "", resocket.ActionRetry) {
		t.Fatal("Session.Reconnect after Close returned true")
	}
	receive(t, m.Session.Done())
}

// A Session.Write waiting its turn on the write limiter ends when its
// socket does: it returns ErrSocketEnded then, not when the limiter or
// its ctx lets go (a wait cut short takes no turn).
func TestSessionWriteWaitEndsWithItsSocket(t *testing.T) {
	hangup := make(chan struct{})
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Send("hi"),
		func(ctx context.Context, p *resockettest.Peer) error {
			select {
			case <-hangup:
			case <-ctx.Done():
			}
			return p.Hangup()
		},
	}})
	waiting := make(chan struct{}, 1)
	never := limiterFunc(func(ctx context.Context) error { // no turn is ever free
		waiting <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithWriteLimiter(never))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	m, err := c.ReadMessage(bounded(t))
	if err != nil {
		t.Fatal(err)
	}
	wrote := make(chan error, 1)
	go func() { wrote <- m.Session.Write(bounded(t), websocket.MessageText, []byte("late")) }()
	receive(t, waiting)
	close(hangup)
	err = receive(t, wrote)
	mustErrorIs(t, err, resocket.ErrSocketEnded)
	rec.connected(t, 2)
}
