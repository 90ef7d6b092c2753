package resocket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

func TestRedactURL(t *testing.T) {
	rows := map[string]string{
		"wss://g.example/?v=10&token=abc":                  "wss://g.example/?token=REDACTED&v=10",
		"wss://u:pw@g.example/":                            "wss://u:REDACTED@g.example/",
		"ws://h/?access_token=a&api_key=b&Signature=c&x=1": "ws://h/?Signature=REDACTED&access_token=REDACTED&api_key=REDACTED&x=1",
		"ws://h/?auth=a&password=b&secret=c":               "ws://h/?auth=REDACTED&password=REDACTED&secret=REDACTED",
		"ws://h/path?v=1":                                  "ws://h/path?v=1",
		"ws://h/%zz":                                       "REDACTED",
	}
	for in, want := range rows {
		if got := resocket.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// syncBuffer is a log sink safe for the client's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every failure path, with a token in the URL and in the Authorization
// header: no error, event or debug log line may contain it.
func TestSecretsNeverLeak(t *testing.T) {
	const queryToken, headerToken = "q-s3cr3t-T0KEN", "h-s3cr3t-T0KEN"
	srv := resockettest.NewServer(t)
	paths := []struct {
		name string
		url  string
		plan *resockettest.Script
		hs   func(context.Context, *resocket.Session) error
	}{
		{name: "refused", url: refusedURL(t)},
		{name: "upgrade-401", plan: &resockettest.Script{Status: 401, Body: "bad token"}},
		{name: "upgrade-503", plan: &resockettest.Script{Status: 503, Header: http.Header{"Retry-After": {"0"}}}},
		{name: "bad-accept", plan: &resockettest.Script{BadAccept: true}},
		{name: "slow-upgrade", plan: &resockettest.Script{Delay: time.Second}},
		{name: "close-reason-echoes-token", plan: &resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4004, "bad token "+queryToken)}}},
		{name: "reset", plan: &resockettest.Script{Steps: []resockettest.Step{resockettest.Reset()}}},
		{name: "handshake-error-names-token", hs: func(context.Context, *resocket.Session) error {
			return resocket.Fatal(fmt.Errorf("identify with %s and Bearer %s refused", queryToken, headerToken))
		}},
		{name: "wss-to-plaintext", url: strings.Replace(srv.URL, "ws://", "wss://", 1)},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			s := resockettest.NewServer(t)
			if p.plan != nil {
				s.Queue(*p.plan)
			}
			base := s.URL
			if p.url != "" {
				base = p.url
			}
			var logs syncBuffer
			opts := fast(
				resocket.WithDialOptions(&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + headerToken}}}),
				resocket.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
				resocket.WithConnectTimeout(200*time.Millisecond),
			)
			if p.hs != nil {
				opts = append(opts, resocket.WithHandshake(p.hs))
			}
			c, rec := newRecorded(t, base+"?v=10&token="+queryToken, opts...)
			ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
			defer cancel()
			connectErr := c.Connect(ctx)
			c.Close()
			rec.states(t)
			// What a user sees: the errors returned, the error types of this
			// package found in them, events and logs. (Deeper in a chain lie
			// the caller's own and coder/websocket's original values.)
			texts := []string{logs.String()}
			ownTypes := func(err error) {
				if err == nil {
					return
				}
				texts = append(texts, err.Error())
				var ue *resocket.UpgradeError
				if errors.As(err, &ue) {
					texts = append(texts, ue.Error(), fmt.Sprint(ue.Header))
				}
				var he *resocket.HandshakeError
				if errors.As(err, &he) {
					texts = append(texts, he.Error())
				}
			}
			ownTypes(connectErr)
			ownTypes(c.Err())
			for _, e := range rec.all() {
				texts = append(texts, fmt.Sprintf("%v %+v", e, e))
				if d, ok := e.(resocket.Disconnected); ok {
					ownTypes(d.Err)
				}
			}
			if !strings.Contains(logs.String(), "resocket: dialing") {
				t.Fatalf("no debug log: %q", logs.String())
			}
			for _, text := range texts {
				if strings.Contains(text, queryToken) || strings.Contains(text, headerToken) {
					t.Fatalf("token leaked: %s", text)
				}
			}
		})
	}
}

// errorWithOtherTokens returns New's error text for u with every token
// value replaced, or "" when that URL is accepted.
func errorWithOtherTokens(u *url.URL) string {
	q := u.Query()
	for name := range q {
		if strings.Contains(strings.ToLower(name), "token") {
			q.Set(name, "otherTokenValue")
		}
	}
	other := *u
	other.RawQuery = q.Encode()
	c, err := resocket.New(other.String())
	if err != nil {
		return err.Error()
	}
	c.Close()
	return ""
}

// Redaction hides every credential value, whatever it holds.
func FuzzRedactURL(f *testing.F) {
	f.Add("gateway.example", "token", "s3cr3t", "v", "10")
	f.Add("h", "access_token", "a b&c=d", "x", "")
	f.Add("h:443", "Signature", "%zz", "api_key", "k")
	f.Fuzz(func(t *testing.T, host, secretName, secret, otherName, other string) {
		q := url.Values{secretName: {secret}, otherName: {other}}
		raw := "wss://" + url.PathEscape(host) + "/p?" + q.Encode()
		out := resocket.RedactURL(raw)
		if out == "REDACTED" {
			return // did not parse: replaced whole
		}
		u, err := url.Parse(out)
		if err != nil {
			t.Fatalf("RedactURL(%q) = %q, which does not parse: %v", raw, out, err)
		}
		lower := strings.ToLower(secretName)
		for _, c := range []string{"token", "key", "secret", "password", "signature", "auth"} {
			if strings.Contains(lower, c) {
				for _, v := range u.Query()[secretName] {
					if v != "REDACTED" {
						t.Fatalf("RedactURL(%q) = %q: %s kept %q", raw, out, secretName, v)
					}
				}
			}
		}
	})
}
