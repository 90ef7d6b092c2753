package resocket

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// connect dials and runs the handshake, bounded together by the connect
// timeout (but for the handshake's WaitIdentify); Reconnect cuts both. It
// returns the open socket, or how the attempt ended. When the client is
// stopping, the socket it made (if any) is returned unjudged, for finish
// to close.
func (l *loop) connect() (*socket, *outcome) {
	c := l.c
	actx, cut := context.WithCancelCause(c.life)
	defer cut(nil)
	c.mu.Lock()
	c.cut = cut
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cut = nil
		c.mu.Unlock()
	}()
	start := time.Now()
	dctx, cancel := context.WithTimeout(actx, c.cfg.connectTimeout)
	defer cancel()
	s, resp, o := l.dial(dctx)
	if s == nil {
		return nil, l.cutBy(actx, o)
	}
	publish(&c.events, Upgraded{Attempt: l.attempt})
	hctx, hcancel := context.WithCancelCause(actx)
	defer hcancel(nil)
	s.connectTimer.start(c.cfg.connectTimeout-time.Since(start), func() { hcancel(errConnectTimeout) })
	defer s.connectTimer.stop()
	var err error
	if c.cfg.handshake != nil {
		err = s.handshake(hctx, resp)
	}
	if c.life.Err() != nil {
		return s, nil
	}
	if context.Cause(actx) == errCut { // a Reconnect made before the socket was current
		select {
		case r := <-c.reconnects:
			s.reconnect(r)
		default: // cannot happen: Reconnect sends before it cuts
		}
	}
	if err == nil && !s.wasCut() { // a write that failed meanwhile is for the pump to explain
		if o := s.identifySkipped(); o != nil {
			s.cut(*o)
			return nil, l.handshakeFailed(s, nil)
		}
		return s, nil
	}
	if err != nil && context.Cause(hctx) == errConnectTimeout {
		err = fmt.Errorf("handshake did not finish within the connect timeout of %v (%w): %w", c.cfg.connectTimeout, context.DeadlineExceeded, err)
	}
	return nil, l.handshakeFailed(s, err)
}

// cutBy returns the Reconnect's outcome when one cut the attempt before
// it had a socket; otherwise o.
func (l *loop) cutBy(actx context.Context, o *outcome) *outcome {
	if l.c.life.Err() != nil || context.Cause(actx) != errCut {
		return o
	}
	select {
	case r := <-l.c.reconnects:
		ro := r.outcome()
		return &ro
	default: // cannot happen: only the loop receives, and Reconnect sent before it cut
		return o
	}
}

// dial makes the WebSocket, at the resume URL for a resume when one is
// set. On failure it returns how the attempt ended. The upgrade response
// is returned for the handshake, not kept: an idle socket should not hold
// it.
func (l *loop) dial(ctx context.Context) (*socket, *http.Response, *outcome) {
	c := l.c
	slot := &tcpSlot{}
	target := c.url
	if l.mode == ModeResume {
		c.mu.Lock()
		if c.resumeURL != "" {
			target = c.resumeURL
		}
		c.mu.Unlock()
	}
	c.log.Debug("resocket: dialing", "attempt", l.attempt, "mode", l.mode, "to", RedactURL(target))
	conn, resp, err := websocket.Dial(context.WithValue(ctx, tcpSlotKey{}, slot), target, &c.dialOpt)
	if err != nil {
		slot.close()
		d := dialDisconnect(resp, c.redact.err(err))
		if resp == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			d.Err = fmt.Errorf("no upgrade within the connect timeout of %v: %w", c.cfg.connectTimeout, d.Err)
		}
		return nil, nil, &outcome{d: c.redact.disconnect(d)}
	}
	conn.SetReadLimit(c.cfg.readLimit)
	s := &socket{c: c, conn: conn, tcp: slot, attempt: l.attempt, writing: make(chan struct{}, 1),
		beatClosed: make(chan struct{})}
	s.cutCtx, s.cutCancel = context.WithCancel(context.Background())
	s.idle.clock = c.cfg.clock
	s.idle.born, s.idle.changed = s.idle.clock.Now(), make(chan struct{}, 1)
	s.end.done = make(chan struct{})
	s.session = &Session{Mode: l.mode, Attempt: l.attempt, Conn: conn, sock: s}
	s.ctx, s.cancel = context.WithCancel(c.life)
	c.mu.Lock() // under c.mu, so that a Reconnect either sees it or cuts the attempt
	c.current.Store(s)
	c.mu.Unlock()
	return s, resp, nil
}

// handshake runs the caller's handshake on its own goroutine, so that a
// Close called from inside it does not wait for itself, and a handshake
// that ignores its ctx cannot hold the client past the connect timeout
// (its goroutine then ends whenever the function returns). Its ctx also
// ends when a Reconnect cuts the socket; other cuts close the socket,
// which ends the handshake's reads.
func (s *socket) handshake(ctx context.Context, resp *http.Response) error {
	c := s.c
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.session.Response = resp
	errc := make(chan error, 1)
	returned := func(err error) error {
		s.session.Response = nil // the handshake is over: an idle socket does not keep it
		return err
	}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				errc <- Fatal(fmt.Errorf("handshake panicked: %v", p))
			}
		}()
		errc <- c.cfg.handshake(ctx, s.session)
	}()
	select {
	case err := <-errc:
		return returned(err)
	case <-ctx.Done():
		return ctx.Err()
	case <-s.cutCtx.Done():
	}
	// A cut that closed the socket ends the handshake's reads by itself,
	// and the handshake's ctx is left alone: coder/websocket reports a
	// read whose ctx ended as ctx's error, even one that had just read
	// the peer's close frame, which is the verdict's first evidence. A
	// Reconnect's cut leaves the socket open for its close frame, so it
	// ends the ctx instead.
	if code, _ := s.closingFrame(); code != 0 {
		cancel()
		select { // its own error may hold a close frame it read first
		case err := <-errc:
			return returned(err)
		case <-time.After(c.cfg.closeTimeout):
			return context.Canceled
		}
	}
	select {
	case err := <-errc:
		return returned(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handshakeFailed judges a socket whose handshake returned err, or that
// was cut while it ran, and closes it.
func (l *loop) handshakeFailed(s *socket, err error) *outcome {
	o := s.verdict(err, true)
	var code websocket.StatusCode
	var reason string
	switch {
	case o.byRequest: // Reconnect's
		code, reason = o.d.Code, o.d.Reason
	case o.forced != nil && *o.forced != ActionRetry:
		code, reason = websocket.StatusNormalClosure, "" // the session is over anyway
	default:
		code, reason = websocket.StatusInternalError, "handshake failed" // keep a resumable session resumable
	}
	s.close(code, reason)
	return &o
}

// serve runs an OPEN socket until it ends: the pump fills the read queue,
// the heartbeats watch for a dead or zombie peer, and a cut (Reconnect,
// a heartbeat) or a stop request may end it. It returns how the socket
// ended, or false when the client is stopping (the socket is then left
// for finish to close).
func (l *loop) serve(s *socket) (*outcome, bool) {
	c := l.c
	s.readErr, s.pumpDone = make(chan error, 1), make(chan struct{})
	if c.cfg.onMessage != nil {
		go s.pumpToHandler()
	} else {
		go s.pump()
	}
	stopPing := s.startPing()
	defer stopPing()
	s.watchIdle()

	var err error
	var ended time.Time // the socket's end, before any close handshake: the stable period stops here
	select {
	case err = <-s.readErr:
		ended = c.cfg.clock.Now()
	case <-s.cutCtx.Done():
		ended = c.cfg.clock.Now()
		if code, reason := s.closingFrame(); code != 0 { // Reconnect's; other cuts closed the socket already
			s.close(code, reason)
		}
		select { // with WithOnMessage, after the handler's call in progress
		case err = <-s.readErr:
		case <-c.life.Done(): // a Close, maybe from that very call
			l.sock = s
			return nil, false
		}
	case <-c.life.Done():
		l.sock = s
		return nil, false
	}
	if c.life.Err() != nil { // the pump let go of a full queue for Close
		l.sock = s
		return nil, false
	}
	s.waitPump()
	o := s.readFailed(err)
	s.release()
	o.stable = ended.Sub(s.openedAt) >= c.cfg.stableAfter
	o.opened = true
	return &o, true
}

// readFailed judges an open socket whose reads ended with err.
func (s *socket) readFailed(err error) outcome {
	o := s.verdict(err, false)
	if errors.Is(o.d.Err, ErrInvalidUTF8) {
		s.close(websocket.StatusInvalidFramePayloadData, "invalid UTF-8 in a text message")
	}
	s.conn.CloseNow()
	return o
}
