package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

var (
	identify = resocket.ModeIdentify
	resume   = resocket.ModeResume
)

// Every close-code row of the classification table, driven by a real
// server that closes the socket with that code after the handshake.
func TestCloseCodeRows(t *testing.T) {
	rows := []struct {
		code websocket.StatusCode
		want resocket.Action
	}{
		{websocket.StatusNoStatusRcvd, resocket.ActionRetry},
		{websocket.StatusNormalClosure, resocket.ActionReidentify},
		{websocket.StatusGoingAway, resocket.ActionRetry},
		{websocket.StatusInternalError, resocket.ActionRetry},
		{websocket.StatusServiceRestart, resocket.ActionRetry},
		{websocket.StatusBadGateway, resocket.ActionRetry},
		{websocket.StatusTryAgainLater, resocket.ActionRetry},
		{websocket.StatusProtocolError, resocket.ActionReidentify},
		{websocket.StatusPolicyViolation, resocket.ActionReidentify},
		{websocket.StatusUnsupportedData, resocket.ActionFatal},
		{websocket.StatusInvalidFramePayloadData, resocket.ActionFatal},
		{websocket.StatusMandatoryExtension, resocket.ActionFatal},
		{websocket.StatusMessageTooBig, resocket.ActionFatal},
		{4000, resocket.ActionRetry},
		{4001, resocket.ActionRetry},
		{4002, resocket.ActionRetry},
		{4008, resocket.ActionRetry},
		{4003, resocket.ActionReidentify},
		{4005, resocket.ActionReidentify},
		{4007, resocket.ActionReidentify},
		{4009, resocket.ActionReidentify},
		{4004, resocket.ActionFatal},
		{4010, resocket.ActionFatal},
		{4011, resocket.ActionFatal},
		{4012, resocket.ActionFatal},
		{4013, resocket.ActionFatal},
		{4014, resocket.ActionFatal},
		{3000, resocket.ActionRetry},
		{4006, resocket.ActionRetry},
		{4999, resocket.ActionRetry},
	}
	for _, row := range rows {
		t.Run(fmt.Sprint(int(row.code)), func(t *testing.T) {
			t.Parallel()
			reason := "bye"
			if row.code == websocket.StatusNoStatusRcvd {
				reason = "" // 1005 is an empty close payload
			}
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
				resockettest.Read(1), resockettest.Close(row.code, reason),
			}})
			var m modes
			c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake))...)
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			d := rec.disconnected(t)
			if d.Code != row.code || d.Reason != reason || d.Action != row.want || d.HTTPStatus != 0 {
				t.Fatalf("got %d %q %v status %d, want %d %q %v", d.Code, d.Reason, d.Action, d.HTTPStatus, row.code, reason, row.want)
			}
			if got := websocket.CloseStatus(d.Err); got != row.code {
				t.Fatalf("CloseStatus(d.Err) = %d, want %d", got, row.code)
			}
			switch {
			case row.code == websocket.StatusTryAgainLater:
				// The server is shedding load: the delay has a raised floor.
				if d.Next < 5*time.Second {
					t.Fatalf("1013: next delay %v, want at least 5s", d.Next)
				}
				c.Close()
				equal(t, "states", rec.states(t), []resocket.State{resocket.StateOpen, resocket.StateConnecting, resocket.StateClosing, resocket.StateClosed})
				return
			case row.want == resocket.ActionFatal:
				waitDone(t, c)
				err := c.Err()
				mustErrorIs(t, err, resocket.ErrClosed)
				var ce websocket.CloseError
				if !errors.As(err, &ce) || ce.Code != row.code {
					t.Fatalf("Err() = %v: want a CloseError with %d", err, row.code)
				}
				equal(t, "modes", m.list(), []resocket.Mode{identify})
				equal(t, "states", rec.states(t), []resocket.State{resocket.StateOpen, resocket.StateClosing, resocket.StateClosed})
				if n := srv.Accepted(); n != 1 {
					t.Fatalf("%d connections after a fatal code, want 1", n)
				}
				return
			}
			rec.connected(t, 2)
			want := []resocket.Mode{identify, resume}
			if row.want == resocket.ActionReidentify {
				want = []resocket.Mode{identify, identify}
			}
			equal(t, "modes", m.list(), want)
			// The handshake returns once its hello is written; the server
			// records it on its own goroutine.
			second := srv.Conns()[1]
			rec.waitFor(t, "the server reading the second hello", func(resocket.Event) bool { return len(second.Received()) > 0 })
			if got := second.Received(); got[0] != want[1].String() {
				t.Fatalf("second socket's server saw %v, want %v first", got, want[1])
			}
			c.Close()
			equal(t, "states", rec.states(t), []resocket.State{resocket.StateOpen, resocket.StateConnecting, resocket.StateOpen, resocket.StateClosing, resocket.StateClosed})
		})
	}
}

// Every upgrade-status row: the server answers the upgrade with the status
// (and headers) instead of 101.
func TestUpgradeStatusRows(t *testing.T) {
	rows := []struct {
		status     int
		retryAfter string
		want       resocket.Action
		minNext    time.Duration
	}{
		{500, "", resocket.ActionRetry, 0},
		{502, "", resocket.ActionRetry, 0},
		{503, "1", resocket.ActionRetry, time.Second},
		{504, "", resocket.ActionRetry, 0},
		{520, "", resocket.ActionRetry, 0},
		{521, "", resocket.ActionRetry, 0},
		{522, "", resocket.ActionRetry, 0},
		{523, "", resocket.ActionRetry, 0},
		{524, "1", resocket.ActionRetry, time.Second},
		{525, "", resocket.ActionRetry, 30 * time.Second},
		{526, "", resocket.ActionRetry, 30 * time.Second},
		{530, "", resocket.ActionRetry, 30 * time.Second},
		{599, "", resocket.ActionRetry, 0},
		{408, "1", resocket.ActionRetry, time.Second},
		{429, "1", resocket.ActionRetry, time.Second},
		{429, "", resocket.ActionRetry, 0},
		{428, "", resocket.ActionRetry, 0},
		{401, "", resocket.ActionFatal, 0},
		{403, "", resocket.ActionFatal, 0},
		{400, "", resocket.ActionFatal, 0},
		{404, "", resocket.ActionFatal, 0},
		{405, "", resocket.ActionFatal, 0},
		{410, "", resocket.ActionFatal, 0},
		{426, "", resocket.ActionFatal, 0},
		{200, "", resocket.ActionFatal, 0},
		{302, "", resocket.ActionFatal, 0},
	}
	for _, row := range rows {
		t.Run(fmt.Sprintf("%d_RetryAfter=%q", row.status, row.retryAfter), func(t *testing.T) {
			t.Parallel()
			plan := resockettest.Script{Status: row.status, Header: http.Header{"X-Edge": {"test"}}, Body: "no websocket here"}
			if row.retryAfter != "" {
				plan.Header.Set("Retry-After", row.retryAfter)
			}
			srv := resockettest.NewServer(t, plan)
			var m modes
			c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake))...)
			connectErr := make(chan error, 1)
			go func() { connectErr <- c.Connect(context.Background()) }()
			d := rec.disconnected(t)
			if d.HTTPStatus != row.status || d.Code != 0 || d.Action != row.want {
				t.Fatalf("got status %d code %d %v, want %d 0 %v", d.HTTPStatus, d.Code, d.Action, row.status, row.want)
			}
			if d.Header.Get("X-Edge") != "test" {
				t.Fatalf("upgrade headers not carried: %v", d.Header)
			}
			if d.Next < row.minNext {
				t.Fatalf("next delay %v, want at least %v", d.Next, row.minNext)
			}
			var ue *resocket.UpgradeError
			if !errors.As(d.Err, &ue) || ue.Status != row.status || !strings.Contains(string(ue.Body), "no websocket") {
				t.Fatalf("Disconnect.Err %v: want an UpgradeError with status %d and the body", d.Err, row.status)
			}
			if row.want == resocket.ActionFatal {
				err := <-connectErr
				mustErrorIs(t, err, resocket.ErrClosed)
				if !errors.As(err, &ue) || ue.Status != row.status {
					t.Fatalf("Connect error %v: want an UpgradeError with status %d", err, row.status)
				}
				equal(t, "states", rec.states(t), []resocket.State{resocket.StateClosed})
				equal(t, "modes", m.list(), nil)
				return
			}
			if row.minNext >= 30*time.Second { // too slow to wait for: Close cuts the wait
				c.Close()
				if err := <-connectErr; !errors.Is(err, resocket.ErrClosed) {
					t.Fatalf("Connect after Close: %v", err)
				}
				return
			}
			if err := <-connectErr; err != nil {
				t.Fatal(err)
			}
			equal(t, "modes", m.list(), []resocket.Mode{identify})
			c.Close()
			equal(t, "states", rec.states(t), []resocket.State{resocket.StateOpen, resocket.StateClosing, resocket.StateClosed})
		})
	}
}

// A 101 with a wrong Sec-WebSocket-Accept is not a WebSocket endpoint.
func TestBadAcceptKeyIsFatal(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{BadAccept: true})
	c, rec := newRecorded(t, srv.URL, fast()...)
	err := c.Connect(context.Background())
	d := rec.disconnected(t)
	if d.HTTPStatus != http.StatusSwitchingProtocols || d.Action != resocket.ActionFatal {
		t.Fatalf("got status %d %v, want 101 fatal", d.HTTPStatus, d.Action)
	}
	var ue *resocket.UpgradeError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "Sec-WebSocket-Accept") {
		t.Fatalf("Connect error %v: want an UpgradeError naming the accept key", err)
	}
}

// Sockets that die without a close frame are reported as 1006 and resumed.
func TestAbnormalClosureRows(t *testing.T) {
	rows := []struct {
		name string
		step resockettest.Step
		opts []resocket.Option
		err  error
	}{
		{"tcp-reset", resockettest.Reset(), nil, nil},
		{"tcp-fin", resockettest.Hangup(), nil, nil},
		{"silent-peer", resockettest.Silent(0), []resocket.Option{resocket.WithHeartbeat(50*time.Millisecond, 100*time.Millisecond)}, resocket.ErrHeartbeatTimeout},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), row.step}})
			var m modes
			c, rec := newRecorded(t, srv.URL, fast(append(row.opts, resocket.WithHandshake(m.handshake))...)...)
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			d := rec.disconnected(t)
			if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry {
				t.Fatalf("got %d %v (%v), want 1006 retry", d.Code, d.Action, d.Err)
			}
			if row.err != nil {
				mustErrorIs(t, d.Err, row.err)
				if s := c.Stats(); s.HeartbeatTimeouts != 1 {
					t.Fatalf("HeartbeatTimeouts = %d, want 1", s.HeartbeatTimeouts)
				}
			}
			rec.connected(t, 2)
			equal(t, "modes", m.list(), []resocket.Mode{identify, resume})
		})
	}
}

// A message over our read limit is a fatal 1009 whose error names the option.
func TestReadLimitIsFatal(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.SendLarge(4096)}})
	c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithReadLimit(1024))...)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	err = c.Err()
	if !strings.Contains(err.Error(), "WithReadLimit") || !errors.Is(err, websocket.ErrMessageTooBig) {
		t.Fatalf("Err() = %v: want ErrMessageTooBig naming WithReadLimit", err)
	}
	if _, _, err := c.Read(context.Background()); !errors.Is(err, resocket.ErrClosed) {
		t.Fatalf("Read after fatal 1009: %v", err)
	}
}

// Dial failures with no socket: refused, reset during the upgrade, a slow
// upgrade past the connect timeout. All are retried.
func TestDialErrorRows(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		c, rec := newRecorded(t, refusedURL(t), fast()...)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		err := c.Connect(ctx)
		mustErrorIs(t, err, context.DeadlineExceeded)
		mustErrorIs(t, err, resocket.ErrClosed)
		if !strings.Contains(err.Error(), "refused") {
			t.Fatalf("Connect error %q does not name the last failure", err)
		}
		d := rec.disconnected(t)
		if d.Code != 0 || d.HTTPStatus != 0 || d.Action != resocket.ActionRetry {
			t.Fatalf("got code %d status %d %v, want 0 0 retry", d.Code, d.HTTPStatus, d.Action)
		}
		if c.Stats().Attempts < 2 {
			t.Fatalf("attempts = %d: a refused dial must be retried", c.Stats().Attempts)
		}
		// Connect's ctx ends the client by itself before OPEN: straight to
		// CLOSED, as a fatal first attempt does (TestHowAClientEnds).
		states := rec.states(t)
		equal(t, "states", states, []resocket.State{resocket.StateClosed})
	})
	t.Run("reset-before-upgrade", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < 1000; i++ {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				conn.(*net.TCPConn).SetLinger(0)
				conn.Close()
			}
		}()
		defer func() { ln.Close(); <-done }()
		c, rec := newRecorded(t, "ws://"+ln.Addr().String()+"/", fast()...)
		go c.Connect(context.Background())
		d := rec.disconnected(t)
		c.Close()
		if d.Code != 0 || d.Action != resocket.ActionRetry {
			t.Fatalf("got code %d %v (%v), want 0 retry", d.Code, d.Action, d.Err)
		}
	})
	for _, plan := range []resockettest.Script{
		{Delay: 5 * time.Second},
		{Trickle: 100 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("slow-upgrade-delay=%v-trickle=%v", plan.Delay, plan.Trickle), func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t, plan)
			c, rec := newRecorded(t, srv.URL, fast(resocket.WithConnectTimeout(300*time.Millisecond))...)
			if err := c.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			d := rec.disconnected(t)
			if d.Action != resocket.ActionRetry || !strings.Contains(d.Err.Error(), "connect timeout") {
				t.Fatalf("got %v (%v), want a retry naming the connect timeout", d.Action, d.Err)
			}
			mustErrorIs(t, d.Err, context.DeadlineExceeded)
		})
	}
}

// TLS failures (1015) are fatal: an untrusted certificate, and wss:// to a
// plaintext server.
func TestTLSFailureIsFatal(t *testing.T) {
	t.Parallel()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := websocket.Accept(w, r, nil); err == nil {
			c.CloseNow()
		}
	}))
	defer tlsSrv.Close()
	plain := resockettest.NewServer(t)
	for name, url := range map[string]string{
		"untrusted-certificate": "wss" + strings.TrimPrefix(tlsSrv.URL, "https"),
		"wss-to-plaintext":      strings.Replace(plain.URL, "ws://", "wss://", 1),
	} {
		t.Run(name, func(t *testing.T) {
			c, rec := newRecorded(t, url, fast()...)
			err := c.Connect(context.Background())
			mustErrorIs(t, err, resocket.ErrClosed)
			d := rec.disconnected(t)
			if d.Code != websocket.StatusTLSHandshake || d.Action != resocket.ActionFatal {
				t.Fatalf("got %d %v (%v), want 1015 fatal", d.Code, d.Action, d.Err)
			}
			if c.Stats().Attempts != 1 {
				t.Fatalf("attempts = %d, want 1", c.Stats().Attempts)
			}
		})
	}
	t.Run("trusted", func(t *testing.T) {
		// The same server with its certificate trusted works: the failure
		// above is about trust, not about wss.
		c, err := resocket.Dial(context.Background(), "wss"+strings.TrimPrefix(tlsSrv.URL, "https"),
			fast(resocket.WithDialOptions(&websocket.DialOptions{HTTPClient: tlsSrv.Client()}))...)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	})
}

// The gateway case: 4003 re-identifies once; a second quick 4003 stops;
// 4003 then 4014 stops after exactly two sockets.
func TestReidentifyLoopGuard(t *testing.T) {
	closeWith := func(code websocket.StatusCode) resockettest.Script {
		return resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Close(code, "")}}
	}
	t.Run("4003-4003", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, closeWith(4003), closeWith(4003))
		var m modes
		c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHandshake(m.handshake))...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		mustErrorIs(t, c.Err(), resocket.ErrReidentifyLoop)
		if websocket.CloseStatus(c.Err()) != 4003 || !strings.Contains(c.Err().Error(), "re-identify loop") {
			t.Fatalf("Err() = %v: want the loop guard with the last 4003", c.Err())
		}
		equal(t, "modes", m.list(), []resocket.Mode{identify, identify})
		if srv.Accepted() != 2 {
			t.Fatalf("%d sockets, want 2", srv.Accepted())
		}
	})
	t.Run("4003-4014", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, closeWith(4003), closeWith(4014))
		var m modes
		c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHandshake(m.handshake))...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		if websocket.CloseStatus(c.Err()) != 4014 {
			t.Fatalf("Err() = %v: want 4014", c.Err())
		}
		equal(t, "modes", m.list(), []resocket.Mode{identify, identify})
		if srv.Accepted() != 2 {
			t.Fatalf("%d sockets, want exactly 2", srv.Accepted())
		}
	})
	t.Run("stable-socket-resets-the-guard", func(t *testing.T) {
		t.Parallel()
		stable := resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Sleep(150 * time.Millisecond), resockettest.Close(4003, "")}}
		// Without the reset, the second 4003 would stop the client.
		srv := resockettest.NewServer(t, closeWith(4003), stable)
		var m modes
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake), resocket.WithStableAfter(100*time.Millisecond))...)
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		rec.connected(t, 3)
		if c.State() == resocket.StateClosed {
			t.Fatalf("closed after a stable socket: %v", c.Err())
		}
		equal(t, "modes", m.list(), []resocket.Mode{identify, identify, identify})
	})
	t.Run("max-reidentify-3", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, closeWith(4003), closeWith(4003), closeWith(4003))
		var m modes
		c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithMaxReidentify(3), resocket.WithHandshake(m.handshake))...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		mustErrorIs(t, c.Err(), resocket.ErrReidentifyLoop)
		if srv.Accepted() != 3 {
			t.Fatalf("%d sockets, want 3", srv.Accepted())
		}
	})
}

// The handshake can force the action with Fatal and Reidentify; a plain
// handshake error is retried; a panic is fatal, not a crash.
func TestHandshakeForcesAction(t *testing.T) {
	errBadToken := errors.New("identify refused")
	t.Run("fatal", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		calls := 0
		c, err := resocket.New(srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			calls++
			return resocket.Fatal(errBadToken)
		}))...)
		if err != nil {
			t.Fatal(err)
		}
		rec := record(c)
		err = c.Connect(context.Background())
		mustErrorIs(t, err, errBadToken)
		mustErrorIs(t, err, resocket.ErrClosed)
		if calls != 1 {
			t.Fatalf("handshake ran %d times, want 1", calls)
		}
		equal(t, "states", rec.states(t), []resocket.State{resocket.StateClosed})
	})
	t.Run("reidentify-and-retry", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		var got []resocket.Mode
		c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			got = append(got, s.Mode)
			switch len(got) {
			case 2:
				return errors.New("resume refused") // plain: retried, still resuming
			case 3:
				return resocket.Reidentify(errors.New("session gone"))
			}
			return nil
		}))...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rec := record(c)
		c.Reconnect(4000, "resume please", resocket.ActionRetry)
		rec.waitFor(t, "the 4th handshake", func(resocket.Event) bool { return c.Stats().Opens == 2 })
		equal(t, "modes", got, []resocket.Mode{identify, resume, resume, identify})
		var hs *resocket.HandshakeError
		for _, e := range rec.all() {
			d, ok := e.(resocket.Disconnected)
			if !ok || !errors.As(d.Err, &hs) {
				continue
			}
			want := resocket.ActionRetry
			if strings.Contains(d.Err.Error(), "session gone") {
				want = resocket.ActionReidentify
			}
			if d.Action != want {
				t.Fatalf("handshake error %v classified %v, want %v", d.Err, d.Action, want)
			}
		}
		if hs == nil {
			t.Fatal("no HandshakeError reported")
		}
	})
	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		_, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHandshake(func(context.Context, *resocket.Session) error {
			panic("bug in the handshake")
		}))...)
		if err == nil || !strings.Contains(err.Error(), "bug in the handshake") {
			t.Fatalf("Dial = %v, want the panic as an error", err)
		}
	})
	t.Run("close-frame-during-handshake", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Close(4004, "bad token")}})
		var m modes
		_, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			if err := m.handshake(ctx, s); err != nil {
				return err
			}
			_, _, err := s.Conn.Read(ctx) // wait for "ready"
			return err
		}))...)
		if websocket.CloseStatus(err) != 4004 {
			t.Fatalf("Dial = %v, want fatal 4004", err)
		}
	})
}

// The caller's own policy, and DefaultPolicy's overrides, decide for real.
func TestPolicyOverrides(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4014, "")}},
		resockettest.Script{Status: 401})
	policy := resocket.DefaultPolicy.WithCode(4014, resocket.ActionRetry).WithStatus(401, resocket.ActionReidentify)
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithPolicy(policy))...)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	third := rec.waitFor(t, "the third attempt open", func(e resocket.Event) bool {
		c, ok := e.(resocket.Connected)
		return ok && c.Attempt == 3
	}).(resocket.Connected)
	if third.Mode != identify { // the 401 was turned into a re-identify
		t.Fatalf("third socket in %v", third.Mode)
	}
	var verdicts []string
	for _, e := range rec.all() {
		if d, ok := e.(resocket.Disconnected); ok {
			verdicts = append(verdicts, fmt.Sprintf("%d/%d %v", d.Code, d.HTTPStatus, d.Action))
		}
	}
	equal(t, "verdicts", verdicts, []string{"4014/0 retry", "0/401 reidentify"})
	t.Run("panicking-policy", func(t *testing.T) {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4000, "")}})
		c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithPolicy(resocket.PolicyFunc(func(resocket.Disconnect) resocket.Action {
			panic("bad policy")
		})))...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		if !strings.Contains(c.Err().Error(), "policy panicked: bad policy") {
			t.Fatalf("Err() = %v", c.Err())
		}
	})
	t.Run("invalid-action", func(t *testing.T) {
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4000, "")}})
		c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithPolicy(resocket.PolicyFunc(func(resocket.Disconnect) resocket.Action {
			return resocket.Action(42)
		})))...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		if !strings.Contains(c.Err().Error(), "invalid Action(42)") {
			t.Fatalf("Err() = %v", c.Err())
		}
	})
}

// Close and the caller's ctx stop the client with no verdict events.
func TestCallerStopsAreNotErrors(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, rec := newRecorded(t, srv.URL, fast()...)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if c.Err() != resocket.ErrClosed {
		t.Fatalf("Err() = %v, want exactly ErrClosed", c.Err())
	}
	for _, e := range rec.all() {
		if _, ok := e.(resocket.Disconnected); ok {
			t.Fatalf("Close produced %#v", e)
		}
	}
	equal(t, "states", rec.states(t), []resocket.State{resocket.StateOpen, resocket.StateClosing, resocket.StateClosed})
}
