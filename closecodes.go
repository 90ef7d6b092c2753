package resocket

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"

	"github.com/coder/websocket"
)

// Action is what the client does after a socket ends.
type Action int

const (
	// ActionRetry reconnects with backoff and resumes the session: the next
	// handshake runs with ModeResume when a session exists.
	ActionRetry Action = iota
	// ActionReidentify reconnects with backoff and starts a fresh session:
	// the next handshake runs with ModeIdentify. Consecutive re-identifies
	// without a stable socket between them are bounded by WithMaxReidentify.
	ActionReidentify
	// ActionFatal stops the client for good: it goes to CLOSED and Err
	// returns the cause.
	ActionFatal
)

func (a Action) String() string {
	switch a {
	case ActionRetry:
		return "retry"
	case ActionReidentify:
		return "reidentify"
	case ActionFatal:
		return "fatal"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

func (a Action) valid() bool { return a >= ActionRetry && a <= ActionFatal }

// Disconnect describes how a socket, or an attempt to make one, ended.
type Disconnect struct {
	// Code is the close code: the peer's, 1006 when the socket died without
	// a close frame (EOF, reset, heartbeat timeout), 1015 for a TLS failure,
	// and 0 when no socket was made or the handshake failed without one.
	Code websocket.StatusCode
	// Reason is the close reason sent with Code.
	Reason string
	// HTTPStatus is the upgrade response's status when the upgrade failed,
	// else 0.
	HTTPStatus int
	// Header holds the upgrade response's headers when there was a response
	// (Retry-After lives here). Credential headers are redacted.
	Header http.Header
	// Err is the underlying error. Tokens from the URL and the request
	// headers never appear in its text.
	Err error
}

// Policy decides what to do after a disconnect. Classify must be fast, must
// not block and must not call into the Client; it runs on the connection's
// goroutine. A panic in Classify, or an Action outside the three, stops the
// client with an error that says so.
type Policy interface {
	Classify(Disconnect) Action
}

// PolicyFunc adapts a function to a Policy.
type PolicyFunc func(Disconnect) Action

// Classify calls f(d).
func (f PolicyFunc) Classify(d Disconnect) Action { return f(d) }

// TablePolicy is the classification table of the package documentation,
// plus any overrides. It is an immutable value: every With method returns a
// new policy and leaves the receiver unchanged, so DefaultPolicy can be
// shared freely. The zero value is the plain table.
//
// Precedence, first match wins: the function given to WithFunc, then code
// overrides (WithCode, then WithCodeRange, newest range first), then status
// overrides (WithStatus), then the table.
type TablePolicy struct {
	fn       func(Disconnect) (Action, bool)
	codes    map[websocket.StatusCode]Action
	ranges   []codeRange
	statuses map[int]Action
}

type codeRange struct {
	lo, hi websocket.StatusCode
	action Action
}

// DefaultPolicy is the classification table documented in the README and
// in the package documentation.
var DefaultPolicy = TablePolicy{}

// WithCode returns a policy that answers a for close code code.
func (p TablePolicy) WithCode(code websocket.StatusCode, a Action) TablePolicy {
	codes := make(map[websocket.StatusCode]Action, len(p.codes)+1)
	for k, v := range p.codes {
		codes[k] = v
	}
	codes[code] = a
	p.codes = codes
	return p
}

// WithCodeRange returns a policy that answers a for every close code in
// [lo, hi]. A later range takes precedence over an earlier one; a WithCode
// entry takes precedence over any range.
func (p TablePolicy) WithCodeRange(lo, hi websocket.StatusCode, a Action) TablePolicy {
	ranges := make([]codeRange, 0, len(p.ranges)+1)
	ranges = append(ranges, codeRange{lo, hi, a})
	p.ranges = append(ranges, p.ranges...)
	return p
}

// WithStatus returns a policy that answers a when the upgrade was answered
// with HTTP status.
func (p TablePolicy) WithStatus(status int, a Action) TablePolicy {
	statuses := make(map[int]Action, len(p.statuses)+1)
	for k, v := range p.statuses {
		statuses[k] = v
	}
	statuses[status] = a
	p.statuses = statuses
	return p
}

// WithFunc returns a policy that asks f first; when f answers ok=false
// the overrides and the table decide.
func (p TablePolicy) WithFunc(f func(Disconnect) (a Action, ok bool)) TablePolicy {
	p.fn = f
	return p
}

// Classify implements Policy. It always returns one of the three actions.
func (p TablePolicy) Classify(d Disconnect) Action {
	if p.fn != nil {
		if a, ok := p.fn(d); ok && a.valid() {
			return a
		}
	}
	if d.HTTPStatus == 0 && d.Code != 0 {
		if a, ok := p.codes[d.Code]; ok && a.valid() {
			return a
		}
		for _, r := range p.ranges {
			if d.Code >= r.lo && d.Code <= r.hi && r.action.valid() {
				return r.action
			}
		}
	}
	if d.HTTPStatus != 0 {
		if a, ok := p.statuses[d.HTTPStatus]; ok && a.valid() {
			return a
		}
	}
	return classify(d)
}

// classify is the table. Each row gives its reason.
func classify(d Disconnect) Action {
	switch {
	case d.HTTPStatus != 0:
		return classifyStatus(d.HTTPStatus)
	case d.Code != 0:
		return classifyCode(d.Code)
	}
	// No socket, or a handshake that failed without a close frame.
	if isTLSError(d.Err) {
		return ActionFatal // retrying does not fix trust
	}
	return ActionRetry // refused, reset, timeout, DNS: the network may come back
}

func classifyCode(code websocket.StatusCode) Action {
	switch code {
	case websocket.StatusAbnormalClosure, // died without a close frame: the session is still valid
		websocket.StatusNoStatusRcvd: // the peer closed without saying why
		return ActionRetry
	case websocket.StatusNormalClosure: // the server ended the session
		return ActionReidentify
	case websocket.StatusGoingAway, websocket.StatusInternalError,
		websocket.StatusServiceRestart, websocket.StatusBadGateway,
		websocket.StatusTryAgainLater: // transient, server side (1013 also raises the delay floor)
		return ActionRetry
	case websocket.StatusProtocolError, websocket.StatusPolicyViolation:
		return ActionReidentify // may be a proxy glitch once; the loop guard stops a repeat
	case websocket.StatusUnsupportedData, websocket.StatusInvalidFramePayloadData,
		websocket.StatusMandatoryExtension, // the same bytes will fail again
		websocket.StatusMessageTooBig,      // retrying loops on the same message
		websocket.StatusTLSHandshake:       // retrying does not fix trust
		return ActionFatal
	case 4000, 4001, 4002, 4008: // gateway: unknown error, opcode, decode error, rate limited: resumable
		return ActionRetry
	case 4003, // gateway: not authenticated or session invalidated (the loop guard allows one)
		4005, 4007, 4009: // gateway: already authenticated, invalid seq, session timed out
		return ActionReidentify
	case 4004, 4010, 4011, 4012, 4013, 4014: // gateway: configuration must change
		return ActionFatal
	}
	// Unknown application codes (3000–4999) and unlisted protocol codes:
	// a retry with backoff is safe.
	return ActionRetry
}

func classifyStatus(status int) Action {
	switch {
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return ActionRetry // rate limit: the delay honours Retry-After
	case status == http.StatusPreconditionRequired:
		return ActionRetry // a precondition, or a gateway's "connection closed"
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return ActionFatal // credentials
	case status >= 500 && status <= 599:
		return ActionRetry // server side; 525, 526 and 530 retry slowly
	}
	return ActionFatal // 400, 404, 410, 426, 200, a bad 101...: not a WebSocket endpoint for us
}

// isTLSError reports whether err is a failed TLS handshake or certificate
// check, including a wss:// URL pointing at a plaintext server.
func isTLSError(err error) bool {
	if err == nil {
		return false
	}
	var (
		recordErr   tls.RecordHeaderError
		verifyErr   *tls.CertificateVerificationError
		alertErr    tls.AlertError
		unknownAuth x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidErr  x509.CertificateInvalidError
	)
	return errors.As(err, &recordErr) || errors.As(err, &verifyErr) ||
		errors.As(err, &alertErr) || errors.As(err, &unknownAuth) ||
		errors.As(err, &hostErr) || errors.As(err, &invalidErr) ||
		// net/http turns the record error of a plaintext answer into an
		// untyped error.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// UpgradeError is the cause when the server answered the WebSocket upgrade
// with something other than a valid 101. Find it with errors.As.
type UpgradeError struct {
	Status int         // the response status
	Header http.Header // the response headers, credentials redacted
	Body   []byte      // at most the first 1 KiB of the body
	Err    error       // the error from the WebSocket dial
}

func (e *UpgradeError) Error() string {
	return fmt.Sprintf("resocket: upgrade answered %d %s: %v", e.Status, http.StatusText(e.Status), e.Err)
}

func (e *UpgradeError) Unwrap() error { return e.Err }

// HandshakeError is the cause when the handshake given to WithHandshake
// returned an error that was neither a close frame nor an I/O error.
type HandshakeError struct {
	Mode Mode
	Err  error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("resocket: %s handshake: %v", e.Mode, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// Sentinel causes. Err wraps them, together with ErrClosed.
var (
	// ErrClosed is wrapped by every error after the client reached CLOSED.
	// After Close it is Err's exact value.
	ErrClosed = errors.New("resocket: client closed")
	// ErrReidentifyLoop means WithMaxReidentify re-identifies in a row
	// happened with no stable socket between them.
	ErrReidentifyLoop = errors.New("resocket: re-identify loop")
	// ErrRetriesExhausted means the backoff schedule returned backoff.Stop.
	ErrRetriesExhausted = errors.New("resocket: retries exhausted")
	// ErrHeartbeatTimeout is the Err of a 1006 disconnect found by the
	// heartbeat: no pong within the timeout.
	ErrHeartbeatTimeout = errors.New("resocket: heartbeat timeout: no pong from the peer")
	// ErrInvalidUTF8 is the Err of a 1007 disconnect the client made itself:
	// a text message that is not UTF-8 fails the connection (RFC 6455).
	ErrInvalidUTF8 = errors.New("resocket: text message is not valid UTF-8")
	// ErrReconnectRequested is the Err of a disconnect made by Reconnect.
	ErrReconnectRequested = errors.New("resocket: reconnect requested")
)

// forcedError carries an action chosen by the handshake; the policy is
// skipped for it.
type forcedError struct {
	action Action
	err    error
}

func (e *forcedError) Error() string { return e.err.Error() }
func (e *forcedError) Unwrap() error { return e.err }

// Fatal wraps err so that, returned from the handshake, it stops the client
// whatever the policy says. Fatal(nil) returns nil.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return &forcedError{action: ActionFatal, err: err}
}

// Reidentify wraps err so that, returned from the handshake, the client
// reconnects with a fresh session whatever the policy says. The loop guard
// still applies. Reidentify(nil) returns nil.
func Reidentify(err error) error {
	if err == nil {
		return nil
	}
	return &forcedError{action: ActionReidentify, err: err}
}

// forcedAction returns the action a handshake forced with Fatal or
// Reidentify, if any.
func forcedAction(err error) (Action, bool) {
	var f *forcedError
	if errors.As(err, &f) {
		return f.action, true
	}
	return 0, false
}

// dialDisconnect describes a failed dial: a refused upgrade when there was
// a response, else a network or TLS failure with no socket.
func dialDisconnect(resp *http.Response, err error) Disconnect {
	if resp != nil {
		var body []byte
		if resp.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
		}
		h := redactHeader(resp.Header)
		return Disconnect{
			HTTPStatus: resp.StatusCode,
			Header:     h,
			Err:        &UpgradeError{Status: resp.StatusCode, Header: h, Body: body, Err: err},
		}
	}
	if isTLSError(err) {
		return Disconnect{Code: websocket.StatusTLSHandshake, Err: err}
	}
	return Disconnect{Err: err}
}

// socketDisconnect describes a socket that ended with err while reading.
func socketDisconnect(err error, limit int64) Disconnect {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		d := Disconnect{Code: ce.Code, Reason: ce.Reason, Err: err}
		if ce.Code == websocket.StatusMessageTooBig {
			d.Err = fmt.Errorf("resocket: the server refused a message of ours as too big: %w", err)
		}
		return d
	}
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return Disconnect{
			Code: websocket.StatusMessageTooBig,
			Err: fmt.Errorf("resocket: message larger than the read limit of %d bytes (raise it with resocket.WithReadLimit): %w",
				limit, err),
		}
	}
	if errors.Is(err, ErrInvalidUTF8) {
		return Disconnect{Code: websocket.StatusInvalidFramePayloadData, Err: err}
	}
	if isProtocolViolation(err) {
		return Disconnect{Code: websocket.StatusProtocolError, Err: err}
	}
	return Disconnect{Code: websocket.StatusAbnormalClosure, Err: err}
}

// handshakeDisconnect describes a handshake that returned err.
func handshakeDisconnect(mode Mode, err error, limit int64) Disconnect {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce), errors.Is(err, websocket.ErrMessageTooBig), isIOError(err):
		return socketDisconnect(err, limit)
	}
	return Disconnect{Err: &HandshakeError{Mode: mode, Err: err}}
}

// isIOError reports whether err means the socket itself failed.
func isIOError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne)
}

// isProtocolViolation recognises the frame-level errors coder/websocket
// reports (and answers with 1002) when the peer breaks RFC 6455. It has no
// exported type for them, so the messages are matched.
func isProtocolViolation(err error) bool {
	msg := err.Error()
	for _, s := range []string{
		"invalid close payload",
		"unexpected rsv bits",
		"unknown opcode",
		"control frame",
		"continuation frame",
		"protocol violation",
		"unmasked frame",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
