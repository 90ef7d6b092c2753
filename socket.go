package resocket

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// socket is one upgraded WebSocket, the TCP connection under it, and the
// read pump that drains it while it is open.
type socket struct {
	conn *websocket.Conn
	tcp  *tcpSlot
	// retired is set when the socket is known to be finished (a failed
	// write, a heartbeat timeout, a Reconnect): Write then waits for the
	// next socket instead of failing on this one.
	retired atomic.Bool
	// stalled is set while the pump waits for the consumer; stalls counts
	// those waits. Pongs cannot be read meanwhile, so a late pong is not
	// a dead peer.
	stalled atomic.Bool
	stalls  atomic.Int64

	readErr  chan error    // the pump's last error
	pumpDone chan struct{} // closed when the pump returns; nil before it starts
}

// retire marks the socket finished and cuts it.
func (s *socket) retire() {
	s.retired.Store(true)
	s.conn.CloseNow()
}

// waitPump waits for the read pump, if it was started, to return.
func (s *socket) waitPump() {
	if s.pumpDone != nil {
		<-s.pumpDone
	}
}

// connect dials and runs the handshake, bounded together by the connect
// timeout; Reconnect cuts both. It returns the open socket, or how the
// attempt ended. When the client is stopping or Reconnect cut the
// handshake, the socket it made (if any) is returned unclosed for the
// caller to close.
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
	ctx, cancel := context.WithTimeout(actx, c.cfg.connectTimeout)
	defer cancel()

	s, resp, o := l.dial(ctx)
	if s == nil {
		return nil, l.cutBy(actx, nil, o)
	}
	if c.cfg.handshake == nil {
		return s, nil
	}
	err := c.handshake(ctx, &Session{Mode: l.mode, Attempt: l.attempt, Conn: s.conn, Response: resp})
	if err == nil {
		return s, nil
	}
	if c.life.Err() != nil || context.Cause(actx) == errCut {
		return s, l.cutBy(actx, s, o)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("handshake did not finish within the connect timeout of %v: %w", c.cfg.connectTimeout, err)
	}
	o = &outcome{d: c.redact.disconnect(handshakeDisconnect(l.mode, c.redact.err(err), c.cfg.readLimit))}
	if a, ok := forcedAction(err); ok {
		o.forced = &a
	}
	code := websocket.StatusInternalError // keep a resumable session resumable
	if o.forced != nil && *o.forced != ActionRetry {
		code = websocket.StatusNormalClosure // the session is over anyway
	}
	c.closeSocket(s, code, "handshake failed")
	return nil, o
}

// cutBy returns the Reconnect's outcome when one cut the attempt, closing
// the handshake's socket with its code; otherwise o.
func (l *loop) cutBy(actx context.Context, s *socket, o *outcome) *outcome {
	if l.c.life.Err() != nil || context.Cause(actx) != errCut {
		return o
	}
	select {
	case r := <-l.c.reconnects:
		if s != nil {
			l.c.closeSocket(s, r.code, r.reason)
		}
		ro := r.outcome()
		return &ro
	default: // taken already; cannot happen, as only the loop receives
		return o
	}
}

// dial makes the WebSocket. On failure it returns how the attempt ended.
// The upgrade response is returned for the handshake, not kept: an idle
// socket should not hold it.
func (l *loop) dial(ctx context.Context) (*socket, *http.Response, *outcome) {
	c := l.c
	slot := &tcpSlot{}
	c.log.Debug("resocket: dialing", "attempt", l.attempt, "mode", l.mode)
	conn, resp, err := websocket.Dial(context.WithValue(ctx, tcpSlotKey{}, slot), c.url, &c.dialOpt)
	if err != nil {
		slot.close()
		d := dialDisconnect(resp, c.redact.err(err))
		if resp == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			d.Err = fmt.Errorf("no upgrade within the connect timeout of %v: %w", c.cfg.connectTimeout, d.Err)
		}
		return nil, nil, &outcome{d: c.redact.disconnect(d)}
	}
	conn.SetReadLimit(c.cfg.readLimit)
	return &socket{conn: conn, tcp: slot}, resp, nil
}

// handshake runs the caller's handshake on its own goroutine, so that a
// Close called from inside it does not wait for itself, and a handshake
// that ignores its ctx cannot hold the client past the connect timeout.
func (c *Client) handshake(ctx context.Context, s *Session) error {
	errc := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				errc <- Fatal(fmt.Errorf("handshake panicked: %v", p))
			}
		}()
		errc <- c.cfg.handshake(ctx, s)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serve runs an OPEN socket until it ends: the pump fills the read queue,
// the heartbeat watches for a silent peer, and Reconnect or a stop request
// may end it. It returns how the socket ended, or false when the client
// is stopping (the socket is then left for finish to close).
func (l *loop) serve(s *socket) (*outcome, bool) {
	c := l.c
	openedAt := time.Now()
	s.readErr, s.pumpDone = make(chan error, 1), make(chan struct{})
	go c.pump(s)
	hctx, stopHeartbeat := context.WithCancel(c.life)
	dead := make(chan struct{}, 1)
	hbDone := make(chan struct{})
	if c.cfg.heartbeatInterval > 0 {
		go c.heartbeat(hctx, s, dead, hbDone)
	} else {
		close(hbDone)
	}
	defer func() { stopHeartbeat(); <-hbDone }()

	var o outcome
	select {
	case err := <-s.readErr:
		if c.life.Err() != nil { // the pump let go of a full queue for Close
			l.sock = s
			return nil, false
		}
		if errors.Is(err, ErrInvalidUTF8) {
			c.closeSocket(s, websocket.StatusInvalidFramePayloadData, "invalid UTF-8 in a text message")
		}
		s.retire()
		o.d = c.redact.disconnect(socketDisconnect(err, c.cfg.readLimit))
	case <-dead:
		c.stats.heartbeatTimeouts.Add(1)
		s.retire()
		o.d = Disconnect{Code: websocket.StatusAbnormalClosure,
			Err: fmt.Errorf("%w within %v", ErrHeartbeatTimeout, c.cfg.heartbeatTimeout)}
	case r := <-c.reconnects:
		s.retired.Store(true) // writes wait for the next socket
		c.closeSocket(s, r.code, r.reason)
		o = r.outcome()
	case <-c.life.Done():
		l.sock = s
		return nil, false
	}
	s.waitPump()
	o.stable = time.Since(openedAt) >= c.cfg.stableAfter
	return &o, true
}

// closeSocket sends a close frame and waits up to the close timeout for
// the peer's answer, then cuts the TCP connection.
func (c *Client) closeSocket(s *socket, code websocket.StatusCode, reason string) {
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
}

// pump reads the socket continuously into the queue, so that pongs and
// close frames are seen. It never gives a read a deadline: coder/websocket
// closes a socket whose read context ends. When the queue is full it waits
// for the consumer (the pressure reaches the peer through TCP) or for the
// client to stop.
func (c *Client) pump(s *socket) {
	defer close(s.pumpDone)
	for {
		typ, data, err := s.conn.Read(context.Background())
		if err == nil && typ == websocket.MessageText && !utf8.Valid(data) {
			err = ErrInvalidUTF8 // RFC 6455 §8.1: fail the connection, with 1007
		}
		if err != nil {
			s.readErr <- err
			return
		}
		m := message{typ: typ, data: data}
		select {
		case c.queue <- m:
			continue
		default:
		}
		s.stalls.Add(1)
		s.stalled.Store(true)
		select {
		case c.queue <- m:
			s.stalled.Store(false)
		case <-c.life.Done():
			s.readErr <- c.life.Err()
			return
		}
	}
}

// heartbeat pings every interval and reports the socket dead when a pong
// does not come within the timeout, unless the pump was waiting for the
// consumer meanwhile.
func (c *Client) heartbeat(ctx context.Context, s *socket, dead chan<- struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(c.cfg.heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.stalled.Load() {
			continue
		}
		stalls := s.stalls.Load()
		pctx, cancel := context.WithTimeout(ctx, c.cfg.heartbeatTimeout)
		err := s.conn.Ping(pctx)
		cancel()
		switch {
		case err == nil, ctx.Err() != nil:
		case s.stalled.Load() || s.stalls.Load() != stalls:
			// The pong may be queued behind a message the consumer has not
			// taken yet: a slow consumer is not a dead peer.
		default:
			dead <- struct{}{}
			return
		}
	}
}
