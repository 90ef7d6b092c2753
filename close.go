package resocket

import (
	"fmt"
	"time"

	"github.com/coder/websocket"
)

// Close ends the client from any state: it cancels a dial, a handshake or
// a wait at once, sends 1000 on an open socket and waits up to the close
// timeout for the peer's answer. It returns once the client is CLOSED and
// its goroutines have ended, the WithOnMessage handler included: a Close
// made while the handler runs returns after the handler returned. Two
// calls are exceptions, since they cannot wait for themselves: a Close
// from inside the handler returns once the client is CLOSED, and the
// handler's call ends by itself right after; a Close from inside the
// handshake returns once the client is CLOSED; so does a Close from a
// Session.Heartbeat beat, whose goroutine ends right after. A handshake
// function that ignores its ctx is not waited for: its goroutine ends
// whenever it returns. Close may be called any
// number of times; after it Err is ErrClosed, unless the client had
// already ended by itself (a fatal verdict): Err keeps that cause. It
// always returns nil.
func (c *Client) Close() error {
	c.close(&stopRequest{byClose: true})
	return nil
}

// CloseWith is Close, sending code and reason instead of 1000 on an open
// socket: a deploy that closes with 4000 or 1012 leaves a gateway session
// resumable by the next process (see WithResume). It has Close's
// guarantees. It returns an error, and closes nothing, when code may not
// be sent (1005, 1006, 1015 and codes outside 1000–1014 and 3000–4999)
// or reason is over 123 bytes.
func (c *Client) CloseWith(code websocket.StatusCode, reason string) error {
	if err := checkCloseFrame("CloseWith", code, reason); err != nil {
		return err
	}
	c.close(&stopRequest{byClose: true, code: code, reason: reason})
	return nil
}

func (c *Client) close(r *stopRequest) {
	if c.inHandler() {
		c.handlerClosedOnce.Do(func() { close(c.handlerClosed) })
	}
	if s := c.current.Load(); s != nil && s.beatG.Load() != 0 && s.beatG.Load() == goid() {
		s.beatClosedOnce.Do(func() { close(s.beatClosed) }) // Close from a Session.Heartbeat beat
	}
	c.mu.Lock()
	c.requestStop(r)
	if !c.started { // no loop to ask: Close winds down itself
		c.started = true
		c.transition(StateClosing, nil, ErrClosed)
		c.transition(StateClosed, nil, ErrClosed)
	}
	c.mu.Unlock()
	<-c.done
}

// checkCloseFrame reports a close code or reason that cannot be sent.
func checkCloseFrame(method string, code websocket.StatusCode, reason string) error {
	if !sendableCode(code) {
		return fmt.Errorf("resocket: %s: close code %d cannot be sent (use 1000–1003, 1007–1014 or 3000–4999)", method, int(code))
	}
	if len(reason) > 123 {
		return fmt.Errorf("resocket: %s: reason is %d bytes, a close frame holds at most 123", method, len(reason))
	}
	return nil
}

func sendableCode(code websocket.StatusCode) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code < websocket.StatusNormalClosure || code > websocket.StatusBadGateway:
		return false
	}
	return code != 1004 && code != websocket.StatusNoStatusRcvd && code != websocket.StatusAbnormalClosure
}

// close sends a close frame and waits up to the close timeout for
// the peer's answer, then cuts the TCP connection; the loop lets go of
// the socket.
func (s *socket) close(code websocket.StatusCode, reason string) {
	c := s.c
	s.sendingClose()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.conn.Close(code, reason)
	}()
	t := time.NewTimer(c.cfg.closeTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.tcp.close()
		<-done
	}
	s.release()
}

// stopRequest is a request to end the client: Close, or Connect's ctx
// ending before the first OPEN. The first one wins.
type stopRequest struct {
	byClose bool
	code    websocket.StatusCode // the close frame to send; 0 for 1000
	reason  string
	ctxErr  error // Connect's ctx error
}

// closeCode is the close frame the client sends on a socket it ends.
func closeCode(r *stopRequest) (websocket.StatusCode, string) {
	if r == nil || r.code == 0 {
		return websocket.StatusNormalClosure, ""
	}
	return r.code, r.reason
}
