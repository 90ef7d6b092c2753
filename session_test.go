package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// One socket, one scope: everything done in answer to a message belongs to
// the socket the message arrived on. These tests read a message from
// socket 1 only after socket 2 is OPEN, and act on it.

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

func TestStaleReconnectLeavesTheNextSocketUp(t *testing.T) {
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.Send("reconnect"), resockettest.Hangup()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.Echo()}},
	)
	c, _, m := staleMessage(t, srv)
	if m.Session.Reconnect(4000, "reconnect", resocket.ActionRetry) {
		t.Fatal("Session.Reconnect of an ended socket returned true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	m2, err := c.ReadMessage(ctx)
	if err != nil || string(m2.Data) != "still here" || m2.Attempt != 2 {
		t.Fatalf("echo on socket 2: %q from attempt %d, %v", m2.Data, m2.Attempt, err)
	}
	if st := c.Stats(); st.Opens != 2 || st.Disconnects != 1 {
		t.Fatalf("opens %d, disconnects %d, want 2 and 1: the stale Reconnect cut socket 2", st.Opens, st.Disconnects)
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
			// beat can cut the socket.
			s.Heartbeat(10*time.Millisecond, func(ctx context.Context) error {
				s.AckHeartbeat()
				return s.Conn.Write(ctx, websocket.MessageText, []byte("beat"))
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

// TestReconnectRacingACloseFrameIsJudgedOnce: the server sends "invalid
// session" and closes with 4009 at once; the consumer answers the message
// with Session.Reconnect(ActionReidentify). However the two race, the
// socket's end is judged once: never two re-identifies for one socket
// (which would trip the loop guard).
func TestReconnectRacingACloseFrameIsJudgedOnce(t *testing.T) {
	const sockets = 150
	for _, path := range []string{"read", "handler"} {
		t.Run(path, func(t *testing.T) {
			srv := resockettest.NewServer(t)
			srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{
				resockettest.Send("invalid session"), resockettest.Close(4009, "session timed out"),
			}})
			act := func(m resocket.Message) {
				m.Session.Reconnect(4000, "invalid session", resocket.ActionReidentify)
			}
			opts := []resocket.Option{resocket.WithStableAfter(time.Nanosecond)}
			if path == "handler" {
				opts = append(opts, resocket.WithOnMessage(act))
			}
			c, rec := newRecorded(t, srv.URL, fast(opts...)...)
			ctx, cancel := context.WithTimeout(context.Background(), 4*waitLimit)
			defer cancel()
			if err := c.Connect(ctx); err != nil {
				t.Fatal(err)
			}
			for c.Stats().Opens < sockets && ctx.Err() == nil && c.Err() == nil {
				if path == "read" {
					if m, err := c.ReadMessage(ctx); err == nil {
						act(m)
					}
				} else {
					time.Sleep(time.Millisecond)
				}
			}
			c.Close()
			if err := c.Err(); err != resocket.ErrClosed {
				t.Fatalf("after %d sockets the client stopped by itself: %v", c.Stats().Opens, err)
			}
			st := c.Stats()
			if st.Disconnects > st.Opens {
				t.Fatalf("%d disconnects for %d sockets: a socket's end was judged twice", st.Disconnects, st.Opens)
			}
			perSocket := map[int]int{}
			attempt := 0
			for _, e := range rec.all() {
				switch e := e.(type) {
				case resocket.Connected:
					attempt = e.Attempt
				case resocket.Disconnected:
					if perSocket[attempt]++; perSocket[attempt] > 1 {
						t.Fatalf("socket %d has %d Disconnected events", attempt, perSocket[attempt])
					}
				}
			}
		})
	}
}

// TestCloseWaitsForTheHandler: Close made while the handler runs returns
// after the handler returned; Close from inside the handler returns.
func TestCloseWaitsForTheHandler(t *testing.T) {
	t.Run("from outside", func(t *testing.T) {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
		entered, release := make(chan struct{}), make(chan struct{})
		var returned atomic.Bool
		c, _ := newRecorded(t, srv.URL, fast(resocket.WithOnMessage(func(resocket.Message) {
			close(entered)
			<-release
			time.Sleep(20 * time.Millisecond) // the handler's last work, after release
			returned.Store(true)
		}))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		<-entered
		closed := make(chan struct{})
		go func() { c.Close(); close(closed) }()
		select {
		case <-closed:
			t.Fatal("Close returned while the handler was still running")
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		select {
		case <-closed:
		case <-time.After(waitLimit):
			t.Fatal("Close did not return after the handler did")
		}
		if !returned.Load() {
			t.Fatal("Close returned before the handler did")
		}
	})
	t.Run("from inside", func(t *testing.T) {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
		var c *resocket.Client
		closed := make(chan error, 1)
		c, _ = newRecorded(t, srv.URL, fast(resocket.WithOnMessage(func(resocket.Message) {
			c.Close()
			closed <- c.Err()
		}))...)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := c.Connect(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-closed:
			if err != resocket.ErrClosed {
				t.Fatalf("Err after Close from the handler: %v", err)
			}
		case <-time.After(waitLimit):
			t.Fatal("Close from inside the handler did not return")
		}
		waitDone(t, c)
	})
}

// TestCloseFromAHandlerWhoseSocketWasCut: the socket is cut (a Reconnect
// from another goroutine) while the handler runs; the handler then closes
// the client. Neither may wait for the other.
func TestCloseFromAHandlerWhoseSocketWasCut(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
	entered, release := make(chan *resocket.Session), make(chan struct{})
	var c *resocket.Client
	closed := make(chan struct{})
	c, _ = newRecorded(t, srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		entered <- m.Session
		<-release
		c.Close()
		close(closed)
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	s := <-entered
	if !s.Reconnect(4000, "cut while the handler runs", resocket.ActionRetry) {
		t.Fatal("Reconnect of the live socket returned false")
	}
	time.Sleep(20 * time.Millisecond) // the client waits for the handler now
	close(release)
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close from the handler of a cut socket did not return")
	}
	waitDone(t, c)
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

// TestConnectIsNilIffASocketOpened: the first socket opens and the server
// closes it with a fatal code at once. Connect must say nil, every time:
// a socket reached OPEN.
func TestConnectIsNilIffASocketOpened(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(websocket.StatusUnsupportedData, "")}})
	for round := 0; round < 200; round++ {
		c, err := resocket.New(srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		err = c.Connect(ctx)
		cancel()
		opened := c.Stats().Opens
		c.Close()
		if (err == nil) != (opened > 0) {
			t.Fatalf("round %d: Connect returned %v with %d sockets opened", round, err, opened)
		}
	}
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
	if m.Session.Reconnect(4000, "", resocket.ActionRetry) {
		t.Fatal("Session.Reconnect after Close returned true")
	}
	<-m.Session.Done()
}

// TestClientWriteFromAHandlerWhoseSocketEnded: Client.Write cannot wait
// for the next socket from inside the handler (the next socket waits for
// the handler): it says so at once.
func TestClientWriteFromAHandlerWhoseSocketEnded(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("a")}})
	var c *resocket.Client
	got := make(chan error, 1)
	c, _ = newRecorded(t, srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		if m.Attempt != 1 {
			return
		}
		m.Session.Reconnect(4000, "", resocket.ActionRetry)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		got <- c.Write(ctx, websocket.MessageText, []byte("late"))
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		mustErrorIs(t, err, resocket.ErrSocketEnded)
	case <-time.After(waitLimit / 2):
		t.Fatal("Client.Write from the handler waited for a socket that waits for the handler")
	}
}

// TestCloseFromABeat: a Session.Heartbeat beat that closes the client
// (a protocol's "stop" seen while beating) must not wait for itself.
func TestCloseFromABeat(t *testing.T) {
	srv := resockettest.NewServer(t) // echoes: reads the beats
	var c *resocket.Client
	var once sync.Once
	closed := make(chan struct{})
	c, _ = newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(20*time.Millisecond, func(ctx context.Context) error {
			once.Do(func() { c.Close(); close(closed) })
			return nil
		})
		return nil
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatalf("Close from a beat did not return (state %v)", c.State())
	}
	waitDone(t, c)
}

// TestHandshakeCloseFrameBeatsAReconnect: the handshake reads the peer's
// 4004, then a Reconnect lands on the socket before the handshake
// returns. The peer's close frame came first: it decides, as when OPEN.
func TestHandshakeCloseFrameBeatsAReconnect(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4004, "authentication failed")}})
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		_, _, err := s.Conn.Read(ctx)
		if websocket.CloseStatus(err) == 4004 {
			s.Reconnect(4000, "too late", resocket.ActionRetry)
		}
		return err
	}))...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	go c.Connect(ctx)
	if d := rec.disconnected(t); d.Code != 4004 || d.Action != resocket.ActionFatal {
		t.Fatalf("got %d %v (%v), want 4004 fatal: the peer's close frame came first", d.Code, d.Action, d.Err)
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
	<-s.Done()
}
