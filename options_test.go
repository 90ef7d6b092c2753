package resocket_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// Bad input is a clear error from New that names the problem, and nothing
// is dialed.
func TestNewRejectsBadInput(t *testing.T) {
	srv := resockettest.NewServer(t)
	rows := []struct {
		url  string
		opts []resocket.Option
		want string
	}{
		{"", nil, "no scheme"},
		{"127.0.0.1:80", nil, "invalid URL"},
		{"ftp://x/", nil, `scheme "ftp"`},
		{"ws://", nil, "no host"},
		{"ws://a b/", nil, "invalid URL"},
		{"ws://%zz/", nil, "invalid URL"},
		{srv.URL, []resocket.Option{nil}, "option 0 is nil"},
		{srv.URL, []resocket.Option{resocket.WithHandshake(nil)}, "WithHandshake"},
		{srv.URL, []resocket.Option{resocket.WithPolicy(nil)}, "WithPolicy"},
		{srv.URL, []resocket.Option{resocket.WithPolicy(resocket.PolicyFunc(nil))}, "WithPolicy"},
		{srv.URL, []resocket.Option{resocket.WithBackoff(nil)}, "WithBackoff"},
		{srv.URL, []resocket.Option{resocket.WithBackoff(func() backoff.BackOff { return nil })}, "nil BackOff"},
		{srv.URL, []resocket.Option{resocket.WithHeartbeat(-time.Second, time.Second)}, "WithHeartbeat: interval"},
		{srv.URL, []resocket.Option{resocket.WithHeartbeat(time.Second, 0)}, "WithHeartbeat: timeout"},
		{srv.URL, []resocket.Option{resocket.WithConnectTimeout(0)}, "WithConnectTimeout"},
		{srv.URL, []resocket.Option{resocket.WithCloseTimeout(-1)}, "WithCloseTimeout"},
		{srv.URL, []resocket.Option{resocket.WithMaxReidentify(0)}, "WithMaxReidentify"},
		{srv.URL, []resocket.Option{resocket.WithStableAfter(-time.Second)}, "WithStableAfter"},
		{srv.URL, []resocket.Option{resocket.WithDialOptions(nil)}, "WithDialOptions"},
		{srv.URL, []resocket.Option{resocket.WithReadLimit(0)}, "WithReadLimit"},
		{srv.URL, []resocket.Option{resocket.WithReadLimit(-5)}, "WithReadLimit"},
		{srv.URL, []resocket.Option{resocket.WithReadQueue(0)}, "WithReadQueue"},
		{srv.URL, []resocket.Option{resocket.WithEventBuffer(-1)}, "WithEventBuffer"},
		{srv.URL, []resocket.Option{resocket.WithLogger(nil)}, "WithLogger"},
	}
	for _, row := range rows {
		c, err := resocket.New(row.url, row.opts...)
		if err == nil || c != nil || !strings.Contains(err.Error(), row.want) || !strings.HasPrefix(err.Error(), "resocket: ") {
			t.Errorf("New(%q, ...) = %v, %v; want an error naming %q", row.url, c, err, row.want)
		}
	}
	if n := srv.Accepted(); n != 0 {
		t.Fatalf("%d connections were made by failed New calls", n)
	}
	// Heartbeat off, and no read limit, are valid.
	if _, err := resocket.New(srv.URL, resocket.WithHeartbeat(0, 0), resocket.WithReadLimit(-1)); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidURLErrorHidesToken(t *testing.T) {
	for _, u := range []string{"ftp://h/?token=s3cr3t-t0ken", "ws://h/%zz?token=s3cr3t-t0ken", "ws:///?token=s3cr3t-t0ken"} {
		_, err := resocket.New(u)
		if err == nil || strings.Contains(err.Error(), "s3cr3t-t0ken") {
			t.Errorf("New(%q) = %v", u, err)
		}
	}
}

// New never panics, dials nothing, and names the problem without the
// token when it refuses a URL.
func FuzzNew(f *testing.F) {
	for _, s := range []string{"wss://gateway.example/?v=10&token=abc", "ws://[::1]:80/", "http://h", "ftp://h/?token=abc", "ws://%zz", "ws://u:pw@h/", "\x7f", "ws://h/?auth=abc#frag"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := resocket.New(raw)
		if err != nil {
			if c != nil || !strings.HasPrefix(err.Error(), "resocket: ") {
				t.Fatalf("New(%q) = %v, %v", raw, c, err)
			}
			// A token value that also occurs in the error's own text (the
			// redacted URL, the scheme it quotes, a key name...) cannot be
			// told apart from it: the same URL with other token values
			// gives that text. Any other must not show.
			safe := resocket.RedactURL(raw)
			if u, perr := url.Parse(raw); perr == nil {
				own := errorWithOtherTokens(u)
				for name, vals := range u.Query() {
					if !strings.Contains(strings.ToLower(name), "token") {
						continue
					}
					for _, v := range vals {
						if len(v) >= 4 && !strings.Contains(safe, v) && !strings.Contains(strconv.Quote(safe), v) &&
							!strings.Contains(own, v) && strings.Contains(err.Error(), v) {
							t.Fatalf("error %q shows the token %q", err, v)
						}
					}
				}
			}
			return
		}
		if c.State() != resocket.StateConnecting {
			t.Fatalf("new client in %v", c.State())
		}
		c.Close()
	})
}
