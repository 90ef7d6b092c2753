package resockettest_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// How an SDK built on resocket tests itself with this kit. The SDK speaks
// a tiny protocol: the server says "hello"; the client answers "identify"
// or "resume <session>"; the server confirms with "ready <session>" or
// "resumed"; then the client beats ("beat") and the server acknowledges
// ("ack").

// sdk is the SDK under test: a handshake and a reader on the public client.
type sdk struct {
	c       *resocket.Client
	mu      sync.Mutex
	session string
}

func newSDK(t *testing.T, url string) *sdk {
	t.Helper()
	s := &sdk{}
	c, err := resocket.New(url,
		resocket.WithHandshake(s.handshake),
		resocket.WithHeartbeat(0, 0),
		resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
	)
	if err != nil {
		t.Fatal(err)
	}
	s.c = c
	t.Cleanup(func() { c.Close() })
	return s
}

func (s *sdk) handshake(ctx context.Context, sess *resocket.Session) error {
	if _, b, err := sess.Conn.Read(ctx); err != nil || string(b) != "hello" {
		return resocket.Fatal(errors.New("no hello"))
	}
	sess.Heartbeat(20*time.Millisecond, func(ctx context.Context) error {
		return sess.Conn.Write(ctx, websocket.MessageText, []byte("beat"))
	})
	s.mu.Lock()
	msg := "identify"
	if sess.Mode == resocket.ModeResume {
		msg = "resume " + s.session
	}
	s.mu.Unlock()
	if err := sess.Conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return err
	}
	for {
		_, b, err := sess.Conn.Read(ctx)
		if err != nil {
			return err
		}
		switch m := string(b); {
		case m == "ack":
			sess.AckHeartbeat()
		case strings.HasPrefix(m, "ready "):
			s.mu.Lock()
			s.session = strings.TrimPrefix(m, "ready ")
			s.mu.Unlock()
			return nil
		case m == "resumed":
			return nil
		}
	}
}

// run reads until the client closes, acknowledging heartbeats.
func (s *sdk) run() error {
	if err := s.c.Connect(context.Background()); err != nil {
		return err
	}
	for {
		m, err := s.c.ReadMessage(context.Background())
		if err != nil {
			return err
		}
		if string(m.Data) == "ack" {
			m.Session.AckHeartbeat() // the ACK counts for the socket it came on
		}
	}
}

// serverHandshake plays the server's side: hello, then ready or resumed,
// recording the mode the client identified in.
func serverHandshake(session string) resockettest.Step {
	return func(ctx context.Context, p *resockettest.Peer) error {
		if err := p.Conn.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			return err
		}
		// A beat may come first, as a gateway allows: the SDK's heartbeat
		// starts at HELLO, its first beat after a random fraction of the
		// interval (on a loaded machine, before the identify was written).
		var b []byte
		for i := 0; i < 100 && (i == 0 || string(b) == "beat"); i++ {
			var err error
			if _, b, err = p.Conn.Read(ctx); err != nil {
				return err
			}
		}
		mode, _, _ := strings.Cut(string(b), " ")
		p.Info.SetMode(mode)
		answer := "ready " + session
		if mode == "resume" {
			answer = "resumed"
		}
		return p.Conn.Write(ctx, websocket.MessageText, []byte(answer))
	}
}

// ackBeats answers n beats (forever when n < 0), then goes on.
func ackBeats(n int) resockettest.Step {
	return func(ctx context.Context, p *resockettest.Peer) error {
		for i := 0; n < 0 || i < n; i++ {
			if _, _, err := p.Conn.Read(ctx); err != nil {
				return err
			}
			if err := p.Conn.Write(ctx, websocket.MessageText, []byte("ack")); err != nil {
				return err
			}
		}
		return nil
	}
}

func script(s ...resockettest.Step) resockettest.Script { return resockettest.Script{Steps: s} }

func TestSDKResumesAfterADrop(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		script(serverHandshake("s1"), ackBeats(3), resockettest.Reset()),
		script(serverHandshake("s1"), ackBeats(-1)),
	)
	s := newSDK(t, srv.URL)
	go s.run()
	waitModes(t, srv, "identify", "resume")
}

func TestSDKReidentifiesThenStops(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		script(serverHandshake("s1"), resockettest.Close(4003, "session invalidated")),
		script(serverHandshake("s2"), resockettest.Close(4014, "disallowed intents")),
	)
	s := newSDK(t, srv.URL)
	err := s.run()
	if websocket.CloseStatus(err) != 4014 || !errors.Is(err, resocket.ErrClosed) {
		t.Fatalf("run = %v, want a stop on 4014", err)
	}
	waitModes(t, srv, "identify", "identify")
}

func TestSDKStopsOnBadCredentials(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Status: 401, Body: "bad token"})
	err := newSDK(t, srv.URL).run()
	var ue *resocket.UpgradeError
	if !errors.As(err, &ue) || ue.Status != 401 || string(ue.Body) != "bad token" {
		t.Fatalf("run = %v, want the 401", err)
	}
	if srv.Accepted() != 1 {
		t.Fatalf("%d attempts: a credential error must not be retried", srv.Accepted())
	}
}

func TestSDKCutsAZombieAndResumes(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		script(serverHandshake("s1"), ackBeats(2), resockettest.Silent(0)), // stops acknowledging
		script(serverHandshake("s1"), ackBeats(-1)),
	)
	s := newSDK(t, srv.URL)
	events := s.c.Events()
	go s.run()
	for e := range events {
		if d, ok := e.(resocket.Disconnected); ok {
			if d.Code != websocket.StatusAbnormalClosure || !errors.Is(d.Err, resocket.ErrZombie) {
				t.Fatalf("got %d %v, want a zombie 1006", d.Code, d.Err)
			}
			break
		}
	}
	waitModes(t, srv, "identify", "resume")
}

func waitModes(t *testing.T, srv *resockettest.Server, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Join(srv.Modes(), ",") != strings.Join(want, ",") {
		if time.Now().After(deadline) {
			t.Fatalf("modes %q, want %q", srv.Modes(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
