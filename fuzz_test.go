package resocket_test

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
)

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

func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "120", " 7 ", "Wed, 21 Oct 2015 07:28:00 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "-1", "1e3", "99999999999999999999", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := resocket.ParseRetryAfter(s, now)
		if !ok && d != 0 {
			t.Fatalf("%q: %v with ok=false", s, d)
		}
		if d < 0 {
			t.Fatalf("%q: negative delay %v", s, d)
		}
	})
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
