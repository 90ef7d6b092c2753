package resocket

import (
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
)

const redacted = "REDACTED"

// credentialParams are the query parameter names (and parts of names, such
// as api_key or auth_token) whose values are secrets.
var credentialParams = []string{"token", "key", "secret", "password", "passwd", "signature", "auth", "credential"}

// credentialHeaders are the request and response headers whose values are
// secrets.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

func isCredentialParam(name string) bool {
	name = strings.ToLower(name)
	for _, p := range credentialParams {
		if strings.Contains(name, p) {
			return true
		}
	}
	return false
}

// RedactURL returns u with the password and the values of credential-like
// query parameters (token, access_token, key, secret, password, signature,
// auth and names containing them) replaced by REDACTED. A string that does
// not parse is replaced whole.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return redacted
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), redacted)
	}
	if p.RawQuery != "" {
		q := p.Query()
		changed := false
		for name, vals := range q {
			if isCredentialParam(name) {
				for i := range vals {
					vals[i] = redacted
				}
				changed = true
			}
		}
		if changed {
			p.RawQuery = q.Encode()
		}
	}
	return p.String()
}

// redactHeader returns a copy of h with credential headers' values
// replaced. It returns nil for nil.
func redactHeader(h http.Header) http.Header {
	if h == nil {
		return nil
	}
	h = h.Clone()
	for _, name := range credentialHeaders {
		if vals := h.Values(name); len(vals) > 0 {
			h[http.CanonicalHeaderKey(name)] = []string{redacted}
		}
	}
	return h
}

// redactor removes one client's secrets from text: the credential query
// values and passwords of its URLs (New's, and every resume URL it was
// given), and the Authorization and Cookie headers it sends, in raw and
// escaped forms. It is safe for concurrent use; a resume URL set while the
// client runs adds its secrets.
type redactor struct {
	mu      sync.RWMutex
	secrets map[string]bool
	r       *strings.Replacer // nil when there is nothing to hide
}

func newRedactor(u *url.URL, h http.Header) *redactor {
	r := &redactor{secrets: map[string]bool{}}
	for _, name := range credentialHeaders {
		for _, v := range h.Values(name) {
			r.add(v)
			// "Bearer abc": hide the credential on its own too.
			if _, cred, ok := strings.Cut(v, " "); ok {
				r.add(strings.TrimSpace(cred))
			}
		}
	}
	r.addURL(u)
	return r
}

// addURL hides the password and credential query values of u from now on.
func (r *redactor) addURL(u *url.URL) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if pw, ok := u.User.Password(); ok {
		r.add(pw)
	}
	for name, vals := range u.Query() {
		if isCredentialParam(name) {
			for _, v := range vals {
				r.add(v)
			}
		}
	}
	r.build()
}

// add records a secret in raw and escaped forms; build makes it effective.
func (r *redactor) add(s string) {
	if len(s) < 3 { // too short to hide without mangling everything else
		return
	}
	r.secrets[s], r.secrets[url.QueryEscape(s)], r.secrets[url.PathEscape(s)] = true, true, true
}

func (r *redactor) build() {
	if len(r.secrets) == 0 {
		return
	}
	secrets := make([]string, 0, len(r.secrets))
	for s := range r.secrets {
		secrets = append(secrets, s)
	}
	// Longest first, so that a secret containing another is hidden whole.
	sort.Slice(secrets, func(i, j int) bool {
		if len(secrets[i]) != len(secrets[j]) {
			return len(secrets[i]) > len(secrets[j])
		}
		return secrets[i] < secrets[j]
	})
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, redacted)
	}
	r.r = strings.NewReplacer(pairs...)
}

func (r *redactor) replacer() *strings.Replacer {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.r
}

func (r *redactor) string(s string) string {
	if rr := r.replacer(); rr != nil {
		return rr.Replace(s)
	}
	return s
}

// err returns err unchanged when its text holds no secret, else an error
// with the redacted text that still unwraps to err, so errors.Is and
// errors.As see the same chain. A *url.Error in the chain has its URL
// redacted in place as well.
func (r *redactor) err(err error) error {
	rr := r.replacer()
	if err == nil || rr == nil {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		ue.URL = RedactURL(ue.URL)
	}
	msg := err.Error()
	clean := rr.Replace(msg)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// disconnect redacts the text a Disconnect carries.
func (r *redactor) disconnect(d Disconnect) Disconnect {
	d.Reason = r.string(d.Reason)
	d.Err = r.err(d.Err)
	return d
}
