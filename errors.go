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

// Error text has one "resocket: " prefix, once: errors a method returns
// carry it, the causes they wrap (a Disconnect's Err, the sentinels below
// other than ErrClosed) do not, so a chain reads as one sentence.

// Sentinel causes. Err wraps them, together with ErrClosed.
var (
	// ErrClosed is wrapped by every error after the client reached CLOSED.
	// After Close it is Err's exact value.
	ErrClosed = errors.New("resocket: client closed")
	// ErrReidentifyLoop means WithMaxReidentify re-identifies in a row
	// happened with no stable socket between them.
	ErrReidentifyLoop = errors.New("re-identify loop")
	// ErrRetriesExhausted means the backoff schedule returned backoff.Stop.
	ErrRetriesExhausted = errors.New("retries exhausted")
	// ErrHeartbeatTimeout is the Err of a 1006 disconnect found by the
	// heartbeat: no pong within the timeout.
	ErrHeartbeatTimeout = errors.New("heartbeat timeout: no pong from the peer")
	// ErrInvalidUTF8 is the Err of a 1007 disconnect the client made itself:
	// a text message that is not UTF-8 fails the connection (RFC 6455).
	ErrInvalidUTF8 = errors.New("text message is not valid UTF-8")
	// ErrReconnectRequested is the Err of a disconnect made by Reconnect.
	ErrReconnectRequested = errors.New("reconnect requested")
	// ErrOnMessage is what Read and ReadMessage return, until the client
	// is CLOSED, when WithOnMessage delivers the messages instead.
	ErrOnMessage = errors.New("resocket: messages go to the WithOnMessage handler, not to Read")
)

// UpgradeError is the cause when the server answered the WebSocket upgrade
// with something other than a valid 101. Find it with errors.As.
type UpgradeError struct {
	Status int         // the response status
	Header http.Header // the response headers, credentials redacted
	Body   []byte      // at most the first 1 KiB of the body
	Err    error       // the error from the WebSocket dial
}

func (e *UpgradeError) Error() string {
	return fmt.Sprintf("upgrade answered %d %s: %v", e.Status, http.StatusText(e.Status), e.Err)
}

func (e *UpgradeError) Unwrap() error { return e.Err }

// HandshakeError is the cause when the handshake given to WithHandshake
// returned an error that was neither a close frame nor an I/O error.
type HandshakeError struct {
	Mode Mode
	Err  error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("%s handshake: %v", e.Mode, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// closedError is Err of a client that ended without Close: "resocket:
// closed: " and the cause, which errors.Is and errors.As still reach.
type closedError struct{ cause error }

func (e *closedError) Error() string {
	if e.cause == nil {
		return ErrClosed.Error()
	}
	return "resocket: closed: " + e.cause.Error()
}

func (e *closedError) Unwrap() error { return e.cause }

func (e *closedError) Is(target error) bool { return target == ErrClosed }

// closeFrameError is the cause of a socket the peer closed with a close
// frame. Its text says so in a user's terms; the chain keeps coder/websocket's
// CloseError, so websocket.CloseStatus works on it.
type closeFrameError struct {
	ce  websocket.CloseError
	err error
}

func (e *closeFrameError) Error() string {
	if e.ce.Reason == "" {
		return fmt.Sprintf("server closed with %d", int(e.ce.Code))
	}
	return fmt.Sprintf("server closed with %d %q", int(e.ce.Code), e.ce.Reason)
}

func (e *closeFrameError) Unwrap() error { return e.err }

// requestedError is the cause of a socket Reconnect closed: errors.Is
// finds ErrReconnectRequested, errors.As the CloseError it sent.
type requestedError struct{ ce websocket.CloseError }

func (e *requestedError) Error() string {
	if e.ce.Reason == "" {
		return fmt.Sprintf("%v: closed with %d", ErrReconnectRequested, int(e.ce.Code))
	}
	return fmt.Sprintf("%v: closed with %d %q", ErrReconnectRequested, int(e.ce.Code), e.ce.Reason)
}

func (e *requestedError) Unwrap() []error { return []error{ErrReconnectRequested, e.ce} }

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
// The order matters: a close frame is the peer's word; an I/O failure
// anywhere in the chain is a drop (1006), whatever text coder/websocket
// wraps around it (a pong that could not be written reads "failed to
// handle control frame"); only then is the text matched for a protocol
// violation.
func socketDisconnect(err error, limit int64) Disconnect {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		d := Disconnect{Code: ce.Code, Reason: ce.Reason, Err: &closeFrameError{ce: ce, err: err}}
		if ce.Code == websocket.StatusMessageTooBig {
			d.Err = fmt.Errorf("the server refused a message of ours as too big: %w", d.Err)
		}
		return d
	case errors.Is(err, websocket.ErrMessageTooBig):
		return Disconnect{
			Code: websocket.StatusMessageTooBig,
			Err: fmt.Errorf("message larger than the read limit of %d bytes (raise it with resocket.WithReadLimit): %w",
				limit, err),
		}
	case errors.Is(err, ErrInvalidUTF8):
		return Disconnect{Code: websocket.StatusInvalidFramePayloadData, Err: err}
	case isIOError(err):
		return Disconnect{Code: websocket.StatusAbnormalClosure, Err: fmt.Errorf("connection lost without a close frame: %w", err)}
	case isProtocolViolation(err):
		return Disconnect{Code: websocket.StatusProtocolError, Err: fmt.Errorf("protocol violation: %w", err)}
	}
	return Disconnect{Code: websocket.StatusAbnormalClosure, Err: fmt.Errorf("connection lost without a close frame: %w", err)}
}

// handshakeDisconnect describes a handshake that returned err.
// A limiter's failure is the handshake's, whatever I/O error it wraps (a
// store that could not be dialed is not this socket's drop).
func handshakeDisconnect(mode Mode, err error, limit int64) Disconnect {
	err = unprefixed(err)
	var ce websocket.CloseError
	var le *identifyLimiterError
	switch {
	case errors.As(err, &le):
	case errors.As(err, &ce), errors.Is(err, websocket.ErrMessageTooBig), isIOError(err):
		return socketDisconnect(err, limit)
	}
	return Disconnect{Err: &HandshakeError{Mode: mode, Err: err}}
}

// identifyLimiterError is WaitIdentify's error when the Limiter failed.
type identifyLimiterError struct{ err error }

func (e *identifyLimiterError) Error() string { return "identify limiter: " + e.err.Error() }
func (e *identifyLimiterError) Unwrap() error { return e.err }

// unprefixed drops the "resocket: " of an error a method of this package
// returned (Session.Write, WaitIdentify) and the handshake passed on, so
// that the cause it becomes reads as one sentence; the chain is kept.
func unprefixed(err error) error {
	if err == nil || !strings.HasPrefix(err.Error(), "resocket: ") {
		return err
	}
	return &unprefixedError{err}
}

type unprefixedError struct{ err error }

func (e *unprefixedError) Error() string { return strings.TrimPrefix(e.err.Error(), "resocket: ") }
func (e *unprefixedError) Unwrap() error { return e.err }

// isIOError reports whether err, anywhere in its chain, says the socket
// itself failed: EOF, a reset, a closed connection, a timeout.
func isIOError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

// connBroken reports whether err says the connection itself failed: an
// I/O error that is not a timeout (a context's deadline is one).
func connBroken(err error) bool {
	return isIOError(err) && !isTimeout(err)
}

// isTimeout reports whether err, anywhere in its chain, is a net.Error
// timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isProtocolViolation recognises the frame-level errors coder/websocket
// reports (and answers with 1002) when the peer breaks RFC 6455. It has no
// exported type for them, so the messages are matched; callers rule out
// I/O failures first, since those can be wrapped in the same words.
func isProtocolViolation(err error) bool {
	msg := err.Error()
	for _, s := range []string{
		"invalid close payload",
		"unexpected rsv bits",
		"unknown opcode",
		"control frame payload with invalid length",
		"fragmented control frame",
		"continuation frame",
		"without finishing the previous message",
		"protocol violation",
		"unmasked frame",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
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
