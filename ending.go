package resocket

import (
	"errors"
	"sync"

	"github.com/coder/websocket"
)

// How a socket ends has one owner. A socket has many reporters: the read
// pump (or the handshake) with the error that ended its reads, the two
// heartbeats, a beat that failed, a Write cut mid-frame, a handler that
// panicked, Reconnect. Each reports here, and verdict alone picks how the
// socket ended, once, from one precedence table, the same during the
// handshake as when OPEN:
//
//  1. the peer's close frame: the peer said why (a frame read after the
//     client sent its own close frame is only the peer's answer to it);
//  2. the client's own cut: the first of heartbeat timeout, zombie,
//     failed beat, Write cut, handler panic, Reconnect;
//  3. the error itself: an I/O error is a drop (1006), a protocol
//     violation 1002, a handshake's own error a HandshakeError.
//
// A Write whose ctx ended mid-frame moves the TCP write deadline to the
// past before it knows whether the frame got through; a read that times
// out meanwhile is that cut, even if the write is then taken back.

// ending is what is known of how a socket ended.
type ending struct {
	mu        sync.Mutex
	cut       *outcome // the client's own cut; the first one stands
	pending   *outcome // a Write's cut in progress
	closeSent bool     // the client sent its close frame: a frame read after it is an answer
	answer    bool     // the pump's close frame came after closeSent
	decided   bool
	done      chan struct{} // Session.Done: closed once decided or let go
}

// cut ends s with the client's own verdict material, unless the socket
// already has a cut or a verdict. It reports whether this cut is the one
// that stands. The socket is closed at once, without a close frame, unless
// the cut is a Reconnect's: its close frame is the loop's to send.
func (s *socket) cut(o outcome) bool {
	s.end.mu.Lock()
	first := s.end.cut == nil && !s.end.decided
	if first {
		s.end.cut = &o
	}
	s.end.mu.Unlock()
	if !first {
		return false
	}
	s.retired.Store(true)
	s.cutCancel()
	if !o.byRequest {
		s.conn.CloseNow()
	}
	return true
}

// closingFrame is the close frame the cut asks the client to send (a
// Reconnect's), or 0 when the cut closed the socket without one.
func (s *socket) closingFrame() (websocket.StatusCode, string) {
	s.end.mu.Lock()
	defer s.end.mu.Unlock()
	if s.end.cut == nil || !s.end.cut.byRequest {
		return 0, ""
	}
	return s.end.cut.d.Code, s.end.cut.d.Reason
}

// setPending records (o non-nil) or withdraws a Write's cut in progress.
func (s *socket) setPending(o *outcome) {
	s.end.mu.Lock()
	s.end.pending = o
	s.end.mu.Unlock()
}

// sendingClose records that the client is about to send its close frame.
func (s *socket) sendingClose() {
	s.end.mu.Lock()
	s.end.closeSent = true
	s.end.mu.Unlock()
}

// readEnded records how the pump's reads ended, at the moment they did:
// whether a close frame it read came after the client's own close frame.
func (s *socket) readEnded(err error) {
	var ce websocket.CloseError
	s.end.mu.Lock()
	s.end.answer = s.end.closeSent && errors.As(err, &ce)
	s.end.mu.Unlock()
}

// verdict decides, once, how s ended, given the error that ended its
// reads (the pump's, or the handshake's own return). Nothing said about
// the socket after it counts.
func (s *socket) verdict(err error, inHandshake bool) outcome {
	c := s.c
	cut, pending, answer := s.settle()
	var o outcome
	var ce websocket.CloseError
	switch {
	case err != nil && errors.As(err, &ce) && !answer:
		o.d = socketDisconnect(err, c.cfg.readLimit)
	case cut != nil:
		return *cut
	case pending != nil && isTimeout(err):
		return *pending
	case inHandshake:
		o.d = handshakeDisconnect(s.session.Mode, c.redact.err(err), c.cfg.readLimit)
	default:
		o.d = socketDisconnect(err, c.cfg.readLimit)
	}
	o.d = c.redact.disconnect(o.d)
	if a, ok := forcedAction(err); ok && inHandshake { // Fatal or Reidentify
		o.forced = &a
	}
	return o
}

// settle marks s finished: its verdict is decided, or the client let go
// of it. From then on the Session's acts fail or do nothing, and
// Session.Done is closed. It returns what the verdict rests on, read in
// the same hold, so that nothing reported after it counts.
func (s *socket) settle() (cut, pending *outcome, answer bool) {
	s.retired.Store(true)
	s.end.mu.Lock()
	defer s.end.mu.Unlock()
	if !s.end.decided {
		s.end.decided = true
		close(s.end.done)
	}
	return s.end.cut, s.end.pending, s.end.answer
}

// wasCut reports whether the client cut s.
func (s *socket) wasCut() bool {
	select {
	case <-s.cutCtx.Done():
		return true
	default:
		return false
	}
}

// ended reports whether s is settled.
func (s *socket) ended() bool {
	s.end.mu.Lock()
	defer s.end.mu.Unlock()
	return s.end.decided
}
