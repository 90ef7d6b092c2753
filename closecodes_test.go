package resocket_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

var (
	retry      = resocket.ActionRetry
	reidentify = resocket.ActionReidentify
	fatal      = resocket.ActionFatal
)

// The whole table, code by code and status by status. The Rows tests
// below (TestCloseCodeRows, ...) drive each row through a real server;
// this pins every value, including the ones between the rows.
func TestDefaultPolicyTable(t *testing.T) {
	codes := map[websocket.StatusCode]resocket.Action{
		1000: reidentify, 1001: retry, 1002: reidentify, 1003: fatal, 1004: retry,
		1005: retry, 1006: retry, 1007: fatal, 1008: reidentify, 1009: fatal,
		1010: fatal, 1011: retry, 1012: retry, 1013: retry, 1014: retry, 1015: fatal,
		4000: retry, 4001: retry, 4002: retry, 4003: reidentify, 4004: fatal,
		4005: reidentify, 4006: retry, 4007: reidentify, 4008: retry, 4009: reidentify,
		4010: fatal, 4011: fatal, 4012: fatal, 4013: fatal, 4014: fatal, 4015: retry,
		3000: retry, 3999: retry, 4999: retry, 2000: retry,
	}
	for code, want := range codes {
		if got := resocket.DefaultPolicy.Classify(resocket.Disconnect{Code: code}); got != want {
			t.Errorf("code %d: %v, want %v", code, got, want)
		}
	}
	for status := 100; status < 600; status++ {
		want := fatal
		switch {
		case status >= 500, status == 408, status == 429, status == 428:
			want = retry
		}
		if got := resocket.DefaultPolicy.Classify(resocket.Disconnect{HTTPStatus: status}); got != want {
			t.Errorf("status %d: %v, want %v", status, got, want)
		}
	}
}

func TestDefaultPolicyDialErrors(t *testing.T) {
	rows := []struct {
		name string
		err  error
		want resocket.Action
	}{
		{"refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, retry},
		{"reset", &net.OpError{Op: "read", Err: syscall.ECONNRESET}, retry},
		{"dns", &net.DNSError{Err: "no such host", Name: "gateway.invalid", IsNotFound: true}, retry},
		{"timeout", context.DeadlineExceeded, retry},
		{"eof", io.EOF, retry},
		{"unknown-authority", fmt.Errorf("dial: %w", x509.UnknownAuthorityError{}), fatal},
		{"hostname", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "x"}, fatal},
	}
	for _, row := range rows {
		if got := resocket.DefaultPolicy.Classify(resocket.Disconnect{Err: row.err}); got != row.want {
			t.Errorf("%s: %v, want %v", row.name, got, row.want)
		}
	}
}

func TestPolicyOverridesAreImmutable(t *testing.T) {
	base := resocket.DefaultPolicy
	p1 := base.WithCode(4004, retry)
	p2 := p1.WithCodeRange(4100, 4199, fatal).WithCodeRange(4150, 4159, reidentify)
	p3 := p2.WithStatus(503, fatal).WithCode(4150, retry)
	p4 := p3.WithFunc(func(d resocket.Disconnect) (resocket.Action, bool) {
		return fatal, d.Reason == "stop"
	})
	check := func(p resocket.TablePolicy, d resocket.Disconnect, want resocket.Action) {
		t.Helper()
		if got := p.Classify(d); got != want {
			t.Errorf("%+v: %v, want %v", d, got, want)
		}
	}
	check(base, resocket.Disconnect{Code: 4004}, fatal) // unchanged by p1
	check(p1, resocket.Disconnect{Code: 4004}, retry)
	check(p1, resocket.Disconnect{Code: 4120}, retry) // unchanged by p2
	check(p2, resocket.Disconnect{Code: 4120}, fatal)
	check(p2, resocket.Disconnect{Code: 4155}, reidentify) // newer range wins
	check(p3, resocket.Disconnect{Code: 4150}, retry)      // a code beats a range
	check(p2, resocket.Disconnect{HTTPStatus: 503}, retry)
	check(p3, resocket.Disconnect{HTTPStatus: 503}, fatal)
	check(p4, resocket.Disconnect{Code: 4000, Reason: "stop"}, fatal)
	check(p4, resocket.Disconnect{Code: 4004}, retry) // the function said ok=false
	// Invalid actions in overrides fall through to the table.
	check(base.WithCode(4000, resocket.Action(9)), resocket.Disconnect{Code: 4000}, retry)
	check(base.WithFunc(func(resocket.Disconnect) (resocket.Action, bool) { return -1, true }), resocket.Disconnect{Code: 4004}, fatal)
	// A status override does not apply to a close code with the same number.
	check(base.WithStatus(1000, fatal), resocket.Disconnect{Code: 1000}, reidentify)
}

func TestForcedActionWrappers(t *testing.T) {
	if resocket.Fatal(nil) != nil || resocket.Reidentify(nil) != nil {
		t.Fatal("wrapping nil must give nil")
	}
	base := errors.New("x")
	if !errors.Is(resocket.Fatal(base), base) || resocket.Fatal(base).Error() != "x" {
		t.Fatal("Fatal must wrap transparently")
	}
}

func TestActionAndModeStrings(t *testing.T) {
	for a, want := range map[fmt.Stringer]string{
		retry: "retry", reidentify: "reidentify", fatal: "fatal", resocket.Action(5): "Action(5)",
		resocket.ModeIdentify: "identify", resocket.ModeResume: "resume", resocket.Mode(3): "Mode(3)",
	} {
		if a.String() != want {
			t.Errorf("%#v: %q, want %q", a, a.String(), want)
		}
	}
}

// TestPolicyValuesAtEveryBoundary: the gateway rows belong to
// DefaultPolicy only; CentrifugoPolicy splits each thousand at 500.
func TestPolicyValuesAtEveryBoundary(t *testing.T) {
	r, f, i := resocket.ActionRetry, resocket.ActionFatal, resocket.ActionReidentify
	rows := []struct {
		code                       websocket.StatusCode
		def, websocket, centrifugo resocket.Action
	}{
		{1000, i, i, i},
		{1003, f, f, f},
		{1006, r, r, r},
		{2999, r, r, r},
		{3000, r, r, r},
		{3499, r, r, r},
		{3500, r, r, f},
		{3501, r, r, f},
		{3999, r, r, f},
		{4000, r, r, r},
		{4003, i, r, r},
		{4004, f, r, r},
		{4014, f, r, r},
		{4499, r, r, r},
		{4500, r, r, f},
		{4501, r, r, f},
		{4999, r, r, f},
	}
	for _, row := range rows {
		d := resocket.Disconnect{Code: row.code}
		for name, c := range map[string]struct {
			p    resocket.Policy
			want resocket.Action
		}{
			"DefaultPolicy":    {resocket.DefaultPolicy, row.def},
			"WebSocketPolicy":  {resocket.WebSocketPolicy, row.websocket},
			"CentrifugoPolicy": {resocket.CentrifugoPolicy, row.centrifugo},
		} {
			if got := c.p.Classify(d); got != c.want {
				t.Errorf("%s: code %d: %v, want %v", name, row.code, got, c.want)
			}
		}
	}
	// Statuses and dial errors are the table's in all three.
	for _, p := range []resocket.Policy{resocket.WebSocketPolicy, resocket.CentrifugoPolicy} {
		if a := p.Classify(resocket.Disconnect{HTTPStatus: 401}); a != f {
			t.Errorf("401: %v", a)
		}
		if a := p.Classify(resocket.Disconnect{HTTPStatus: 503}); a != r {
			t.Errorf("503: %v", a)
		}
	}
}

// TestRepeatedCloseCode: a server that closes every socket right after it
// opens, with the same code. Disconnect.Repeats counts them, the delays
// grow (the schedule never resets without a stable socket), and a policy
// can stop the client by Repeats.
func TestRepeatedCloseCode(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4000, "go away")}})
	policy := resocket.DefaultPolicy.WithFunc(func(d resocket.Disconnect) (resocket.Action, bool) {
		return resocket.ActionFatal, d.Repeats >= 5
	})
	c, rec := newRecorded(t, srv.URL, resocket.WithPolicy(policy), resocket.WithHeartbeat(0, 0),
		resocket.WithBackoff(func() backoff.BackOff {
			return backoff.NewExponentialBackOff(backoff.WithInitialInterval(2*time.Millisecond),
				backoff.WithRandomizationFactor(0), backoff.WithMultiplier(2), backoff.WithMaxInterval(10*time.Millisecond),
				backoff.WithMaxElapsedTime(0))
		}))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c.Connect(ctx)
	waitDone(t, c)
	rec.states(t) // every event recorded
	var repeats []int
	var delays []time.Duration
	for _, e := range rec.all() {
		if d, ok := e.(resocket.Disconnected); ok {
			repeats = append(repeats, d.Repeats)
			delays = append(delays, d.Next)
		}
	}
	equal(t, "Repeats", repeats, []int{1, 2, 3, 4, 5})
	equal(t, "delays", delays, []time.Duration{2 * time.Millisecond, 4 * time.Millisecond, 8 * time.Millisecond, 10 * time.Millisecond, 0})
	if websocket.CloseStatus(c.Err()) != 4000 {
		t.Fatalf("Err %v, want the 4000 that repeated", c.Err())
	}
}

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
			if err := c.Connect(bounded(t)); err != nil {
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
			go func() { connectErr <- c.Connect(bounded(t)) }()
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
	err := c.Connect(bounded(t))
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
			if err := c.Connect(bounded(t)); err != nil {
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
		go c.Connect(bounded(t))
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
			if err := c.Connect(bounded(t)); err != nil {
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
			err := c.Connect(bounded(t))
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
		c, err := resocket.Dial(bounded(t), "wss"+strings.TrimPrefix(tlsSrv.URL, "https"),
			fast(resocket.WithDialOptions(&websocket.DialOptions{HTTPClient: tlsSrv.Client()}))...)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
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
		err = c.Connect(bounded(t))
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
		c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
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
		_, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHandshake(func(context.Context, *resocket.Session) error {
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
		_, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
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
	if err := c.Connect(bounded(t)); err != nil {
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
		c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithPolicy(resocket.PolicyFunc(func(resocket.Disconnect) resocket.Action {
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
		c, err := resocket.Dial(bounded(t), srv.URL, fast(resocket.WithPolicy(resocket.PolicyFunc(func(resocket.Disconnect) resocket.Action {
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

// A real protocol violation from the server is still a 1002.
func TestServerProtocolViolationIs1002(t *testing.T) {
	t.Parallel()
	for name, frame := range map[string][]byte{
		"fragmented-ping":  {0x09, 0x00},                                // a control frame without FIN
		"unknown-opcode":   resockettest.Frame(0x3, nil),                // reserved opcode
		"long-ping":        resockettest.Frame(0x9, make([]byte, 200)),  // control payload over 125 bytes
		"bad-rsv":          append([]byte{0xC1, 0x01}, 'x'),             // RSV1 without a negotiated extension
		"lone-continue":    append([]byte{0x80, 0x01}, 'x'),             // continuation with nothing to continue
		"short-close":      resockettest.Frame(0x8, []byte{0x03}),       // a close payload of one byte
		"close-code-999":   resockettest.Frame(0x8, []byte{0x03, 0xe7}), // a code no one may send
		"close-code-1005":  resockettest.Frame(0x8, []byte{0x03, 0xed}), // reserved, never on the wire
		"close-code-5000":  resockettest.Frame(0x8, []byte{0x13, 0x88}), // outside every range
		"close-code-1016":  resockettest.Frame(0x8, []byte{0x03, 0xf8}), // unassigned
		"close-code-2999":  resockettest.Frame(0x8, []byte{0x0b, 0xb7}), // below the registered range
		"close-code-1004":  resockettest.Frame(0x8, []byte{0x03, 0xec}), // reserved
		"close-code-0":     resockettest.Frame(0x8, []byte{0x00, 0x00}), // zero
		"close-code-1006":  resockettest.Frame(0x8, []byte{0x03, 0xee}), // reserved, never on the wire
		"close-code-1015":  resockettest.Frame(0x8, []byte{0x03, 0xf7}), // reserved, never on the wire
		"close-code-65535": resockettest.Frame(0x8, []byte{0xff, 0xff}), // far outside
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Raw(frame), resockettest.Sleep(time.Second)}})
			var m modes
			c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake))...)
			if err := c.Connect(bounded(t)); err != nil {
				t.Fatal(err)
			}
			d := rec.disconnected(t)
			if d.Code != websocket.StatusProtocolError || d.Action != resocket.ActionReidentify {
				t.Fatalf("got %d %v (%v), want 1002 re-identify", d.Code, d.Action, d.Err)
			}
		})
	}
}

// A close frame with a code that may not be sent is a protocol error:
// 1002, re-identify once.
func TestHostileInvalidCloseCode(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Read(1),
		resockettest.Raw(resockettest.Frame(0x8, []byte{0x03, 0xE7})), // 999
		resockettest.Sleep(time.Second),
	}})
	var m modes
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	d := rec.disconnected(t)
	if d.Code != websocket.StatusProtocolError || d.Action != resocket.ActionReidentify || !strings.Contains(d.Err.Error(), "999") {
		t.Fatalf("got %d %v %v, want 1002 re-identify naming the code", d.Code, d.Action, d.Err)
	}
	rec.connected(t, 2)
	equal(t, "modes", m.list(), []resocket.Mode{identify, identify})
}

// Any code, status, header and error: the policy never panics and always
// answers one of the three actions, overrides or not; the schedule's floor
// stays within its cap.
func FuzzPolicy(f *testing.F) {
	f.Add(uint16(4003), 0, "", "", "")
	f.Add(uint16(0), 503, "120", "", "upstream")
	f.Add(uint16(0), 429, "Wed, 21 Oct 2015 07:28:00 GMT", "rate limited", "")
	f.Add(uint16(1006), 0, "", "read: connection reset by peer", "")
	f.Add(uint16(0), 0, "", "tls: first record does not look like a TLS handshake", "")
	f.Add(uint16(65535), -1, "-5", "\x00", "\xff")
	policies := []resocket.Policy{
		resocket.DefaultPolicy,
		resocket.DefaultPolicy.WithCode(4004, resocket.ActionRetry).WithCodeRange(4000, 4999, resocket.Action(7)).WithStatus(503, resocket.ActionFatal),
		resocket.DefaultPolicy.WithFunc(func(d resocket.Disconnect) (resocket.Action, bool) {
			return resocket.Action(d.HTTPStatus), d.Reason != ""
		}),
	}
	f.Fuzz(func(t *testing.T, code uint16, status int, retryAfter, errText, reason string) {
		d := resocket.Disconnect{
			Code:       websocket.StatusCode(code),
			Reason:     reason,
			HTTPStatus: status,
			Header:     http.Header{"Retry-After": {retryAfter}},
		}
		if errText != "" {
			d.Err = errors.New(errText)
		}
		for _, p := range policies {
			switch a := p.Classify(d); a {
			case resocket.ActionRetry, resocket.ActionReidentify, resocket.ActionFatal:
			default:
				t.Fatalf("%+v: action %v", d, a)
			}
		}
		s := resocket.NewSchedule(resocket.DefaultBackoff(), time.Now)
		if next := s.Next(d); next < 0 || next > 10*time.Minute {
			t.Fatalf("%+v: next delay %v", d, next)
		}
	})
}
