package resocket_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
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

// The whole table, code by code and status by status. client_test.go drives
// each row through a real server; this pins every value, including the
// ones between the rows.
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
