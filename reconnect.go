package resocket

import (
	"errors"
	"fmt"

	"github.com/coder/websocket"
)

// Reconnect closes the current socket with code and reason and acts as if
// the server had asked for action a: ActionRetry resumes, ActionReidentify
// starts a fresh session, ActionFatal closes the client with
// ErrReconnectRequested. It returns at once; the events tell what followed.
//
// It acts on whichever socket is current when it is called. To act on a
// signal read from a socket (a gateway's "reconnect" or "invalid session"
// message), use that message's Session.Reconnect instead: a signal handled
// after its socket ended must not end the next one.
//
// Its verdict goes through the same steps as any disconnect (counted,
// loop-guarded, scheduled, published as Disconnected), and a socket's end
// is judged once: a close frame the peer had already sent, or a cut the
// client had already made, decides instead. While OPEN the next attempt
// waits for the schedule. While CONNECTING it cuts a dial or a handshake
// in progress, and it cuts the wait that followed a disconnect, so the
// next attempt is made at once. Requests never add up to skip the
// backoff: one made while another is pending, or while the client waits
// to carry one out, joins it (the stronger action wins, the wait stands).
func (c *Client) Reconnect(code websocket.StatusCode, reason string, a Action) error {
	if err := checkReconnect("Reconnect", code, reason, a); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.stopReq != nil || c.State() >= StateClosing:
		return c.closedErrLocked()
	case !c.started:
		return errors.New("resocket: Reconnect: not connected yet; call Connect first")
	}
	r := reconnectRequest{code: code, reason: reason, action: a}
	if s := c.current.Load(); s != nil && s.reconnect(r) {
		return nil
	}
	select {
	case c.reconnects <- r:
	default: // one is pending: merge, the stronger action wins
		select {
		case older := <-c.reconnects:
			r = stronger(older, r)
		default: // the loop took it meanwhile
		}
		c.reconnects <- r // room: only Reconnect sends, under c.mu
	}
	if c.cut != nil {
		c.cut(errCut)
	}
	return nil
}

// checkReconnect reports an action, close code or reason a Reconnect
// cannot use.
func checkReconnect(method string, code websocket.StatusCode, reason string, a Action) error {
	if !a.valid() {
		return fmt.Errorf("resocket: %s: invalid action %v", method, a)
	}
	return checkCloseFrame(method, code, reason)
}

// reconnectRequest is what Reconnect asks the loop for.
type reconnectRequest struct {
	code   websocket.StatusCode
	reason string
	action Action
}

// outcome describes the socket end a Reconnect asked for.
func (r reconnectRequest) outcome() outcome {
	action := r.action
	return outcome{
		d: Disconnect{Code: r.code, Reason: r.reason,
			Err: &requestedError{ce: websocket.CloseError{Code: r.code, Reason: r.reason}}},
		forced:    &action,
		byRequest: true,
	}
}

// stronger returns the request whose action goes further; the newer of two
// equal ones.
func stronger(older, newer reconnectRequest) reconnectRequest {
	if older.action > newer.action {
		return older
	}
	return newer
}

// errCut is the cause of an attempt cut short by Reconnect.
var errCut = errors.New("attempt cut by Reconnect")

// Reconnect is Client.Reconnect for this socket only: it closes the
// socket with code and reason and acts as if the server had asked for
// action a. Use it for a protocol's own signals read from this socket (a
// gateway's "reconnect" or "invalid session"), so that a signal handled
// late cannot end the socket after it.
//
// It returns true when the socket takes the request. The socket's end is
// then judged once, by the precedence table: a close frame the peer had
// already sent, or a cut the client had already made (a heartbeat
// timeout), decides instead. It returns false, and nothing happens, when
// the socket already ended, or when code, reason or a is invalid (the
// client logs why; Client.Reconnect returns it as an error).
func (s *Session) Reconnect(code websocket.StatusCode, reason string, a Action) bool {
	c, sock, ok := s.live()
	if !ok {
		return false
	}
	if err := checkReconnect("Session.Reconnect", code, reason, a); err != nil {
		c.log.Error(err.Error())
		return false
	}
	return sock.reconnect(reconnectRequest{code: code, reason: reason, action: a})
}

// reconnect makes r the cut of s. It reports false only when s was
// already decided: a cut made before it (a heartbeat's) still leaves the
// socket to the precedence table.
func (s *socket) reconnect(r reconnectRequest) bool {
	return s.cut(r.outcome()) || !s.ended()
}
