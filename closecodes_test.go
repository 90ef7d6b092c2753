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

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
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
