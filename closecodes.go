package resocket

import (
	"fmt"
	"net/http"

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
	// After a Reconnect (Client's or Session's) it is the code the client
	// sent; errors.Is(Err, ErrReconnectRequested) tells it from the peer's.
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
	// Repeats is how many disconnects in a row, this one included, ended
	// with the same Code and HTTPStatus with no stable socket between
	// them (1 for the first). A server that closes every socket right
	// after it opens is retried with a growing delay (the schedule never
	// resets without a stable socket) for as long as the policy says
	// retry; a policy can stop it by Repeats, for example
	// DefaultPolicy.WithFunc(func(d Disconnect) (Action, bool) {
	// return ActionFatal, d.Repeats >= 20 }).
	Repeats int
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
// in the package documentation. Its rows for 4000–4014 are the conventions
// of Discord-style gateways; for other servers see WebSocketPolicy and
// CentrifugoPolicy, or override the codes your server defines.
var DefaultPolicy = TablePolicy{}

// WebSocketPolicy is DefaultPolicy without the gateway rows: the RFC 6455
// codes, the upgrade statuses and dial errors as in the table, and every
// application code (3000–4999) a retry with backoff. For a server whose
// close codes are its own.
var WebSocketPolicy = DefaultPolicy.WithCodeRange(3000, 4999, ActionRetry)

// CentrifugoPolicy is WebSocketPolicy with Centrifugo's convention for
// its close codes: 3000–3499 and 4000–4499 reconnect (ActionRetry, which
// keeps the subscriptions' recovery position), 3500–3999 and 4500–4999
// are terminal (ActionFatal: an invalid token, a bad request, a forced
// disconnect with no reconnect advice).
var CentrifugoPolicy = WebSocketPolicy.
	WithCodeRange(3000, 3499, ActionRetry).WithCodeRange(3500, 3999, ActionFatal).
	WithCodeRange(4000, 4499, ActionRetry).WithCodeRange(4500, 4999, ActionFatal)

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
