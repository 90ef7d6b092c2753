package resocket

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/coder/websocket"
)

// ErrSocketEnded is wrapped by the error of a socket-scoped act (a
// Session's Write) made after its socket ended: the act never reaches
// another socket.
var ErrSocketEnded = errors.New("resocket: socket ended")

// Session is one socket, from its handshake to its end: what the handshake
// gets, and the handle for every act that answers something the socket
// carried. A reply, a Reconnect or an ACK made through a Session after its
// socket ended fails or does nothing; it never reaches the next socket, as
// an http.ResponseWriter never writes into the next request.
//
// Every Message names its Session. All methods may be called concurrently,
// from any goroutine, and on a nil or zero Session (which acts like one
// whose socket ended).
type Session struct {
	Mode    Mode            // ModeIdentify or ModeResume
	Attempt int             // the attempt that made this socket, 1 for the client's first
	Conn    *websocket.Conn // the raw socket; use it inside the handshake and for Heartbeat's beats
	// Response is the upgrade response. It is valid until the handshake
	// returns: the client then lets go of it, so that an idle socket does
	// not hold it.
	Response *http.Response

	sock *socket
}

// live returns the client and socket behind s, or false for a nil Session
// or one the client did not make.
func (s *Session) live() (*Client, *socket, bool) {
	if s == nil || s.sock == nil {
		return nil, nil, false
	}
	return s.sock.c, s.sock, true
}

// Write sends one message on this socket only, from the handshake on. It
// goes through the write limiter and takes turns with other writes as
// Client.Write does, and a ctx that ends mid-frame cuts the socket the
// same way; but it never waits for another socket. Once this socket has
// ended (a close frame, a drop, a cut, a Reconnect, Close) it returns an
// error wrapping ErrSocketEnded and sends nothing; after the client
// closed, the error wraps ErrClosed too. A write that fails because the
// socket breaks under it returns that failure (a reset, say): the frame
// was not handed over either, and the socket's end is reported as usual.
//
// In the handshake, Session.Conn writes raw (no limiter, not counted in
// Stats), which is what an identify or a resume wants; Session.Write
// there is for what the protocol counts against its send limit.
func (s *Session) Write(ctx context.Context, typ websocket.MessageType, p []byte) error {
	c, sock, ok := s.live()
	if !ok {
		return fmt.Errorf("%w: Session.Write on a Session the client did not make", ErrSocketEnded)
	}
	if err := checkMessageType("Session.Write", typ); err != nil {
		return err
	}
	if sock.retired.Load() {
		return sock.endedError()
	}
	if err := c.waitWriteLimiter(ctx, sock); err != nil {
		return err
	}
	if done, err := sock.writeMessage(ctx, typ, p); done {
		return err
	}
	return sock.endedError()
}

// endedError is the error of a scoped act on a socket that ended.
func (s *socket) endedError() error {
	c := s.c
	if c.State() == StateClosed {
		return &socketEndedError{attempt: s.attempt, closed: c.Err()}
	}
	return &socketEndedError{attempt: s.attempt}
}

type socketEndedError struct {
	attempt int
	closed  error // the client's Err, once it is CLOSED
}

func (e *socketEndedError) Error() string {
	if e.closed != nil {
		return fmt.Sprintf("%v: socket %d, and the client is closed; nothing was sent", ErrSocketEnded, e.attempt)
	}
	return fmt.Sprintf("%v: socket %d ended; nothing was sent", ErrSocketEnded, e.attempt)
}

func (e *socketEndedError) Unwrap() []error {
	if e.closed != nil {
		return []error{ErrSocketEnded, e.closed}
	}
	return []error{ErrSocketEnded}
}

// Done is closed when the client lets go of this socket: its verdict is
// decided (a close frame, a drop, a cut, a Reconnect) or the client
// closed, before the next attempt starts. For a nil Session, or one the
// client did not make, it is already closed.
//
// The verdict needs the socket's reads, and a WithOnMessage handler runs
// on the goroutine that reads: inside the handler, a drop is not seen
// until the handler returns, so do not wait on Done there.
func (s *Session) Done() <-chan struct{} {
	if _, sock, ok := s.live(); ok {
		return sock.end.done
	}
	return closedChan
}

var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()
