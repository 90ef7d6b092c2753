package resocket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// socket is one upgraded WebSocket, the TCP connection under it, and what
// runs beside it: the read pump while it is open, and the application
// heartbeat from the handshake on.
type socket struct {
	conn    *websocket.Conn
	tcp     *tcpSlot
	attempt int
	// ctx ends when the loop lets go of the socket; it bounds the
	// application heartbeat.
	ctx    context.Context
	cancel context.CancelFunc
	beats  sync.WaitGroup // the application heartbeat, if started

	// retired is set when the socket is known to be finished (a failed
	// write, a heartbeat timeout, a Reconnect): Write then waits for the
	// next socket instead of failing on this one.
	retired atomic.Bool
	// failure is how the client itself ended the socket (a heartbeat
	// timeout, a zombie, a beat that failed); the first one wins, and the
	// read error the cut causes is then not what is reported.
	failure atomic.Pointer[outcome]
	// stalled is set while the pump waits for the consumer; stalls counts
	// those waits. Pongs and ACKs cannot be read meanwhile, so a late one
	// is not a dead peer.
	stalled atomic.Bool
	stalls  atomic.Int64
	// cutting is the verdict of a Write whose ctx ended mid-frame, from
	// the moment its TCP write deadline moved to the past: a pong written
	// meanwhile fails the pump with a timeout, and the write, not that
	// timeout, is what ended the socket.
	cutting atomic.Pointer[outcome]

	app appHeartbeat

	writing chan struct{} // Write's turn on the socket: one message at a time

	readErr  chan error    // the pump's last error
	pumpDone chan struct{} // closed when the pump returns; nil before it starts
}

// retire marks the socket finished and cuts it.
func (s *socket) retire() {
	s.retired.Store(true)
	s.conn.CloseNow()
}

// writeFailed retires the socket after a Write failed on it, so that
// later writes wait for the next socket. When the connection itself broke
// (a reset, a hang-up, a closed socket), the pump is left to end the
// socket: the peer's close frame may still wait to be read, and its code,
// not the failed write, is the verdict; the read fails next by itself.
// Any other failure (coder/websocket's own, with no I/O error in it) cuts
// the socket now. A write its ctx cut is not here: writeOn names it.
func (s *socket) writeFailed(err error) {
	if connBroken(err) {
		s.retired.Store(true)
		return
	}
	s.retire()
}

// write writes one message, bounded by ctx. Given ctx, coder/websocket
// cuts the socket whenever ctx ends before the write returns, even when
// the frame had gone out whole: a process stopped mid-write (a laptop's
// sleep) wakes with the deadline long past and loses a healthy socket.
// So coder/websocket gets no deadline, and when ctx ends while the write
// is in progress, the client moves the TCP write deadline to the past,
// which fails the write only if it has not finished. Where the TCP
// connection is out of sight (a caller's own RoundTripper), it cuts the
// socket instead. cut reports a write that failed because ctx ended: it
// ends the socket, and the disconnect says so (errWriteCut).
func (s *socket) write(ctx context.Context, typ websocket.MessageType, p []byte) (cut bool, err error) {
	if ctx.Done() == nil {
		return false, s.conn.Write(ctx, typ, p)
	}
	w := &boundedWrite{s: s, ctx: ctx, writing: true}
	stop := context.AfterFunc(ctx, w.cut)
	err = s.conn.Write(context.Background(), typ, p) // ctx only bounds the write: coder/websocket reads no values from it
	stop()
	return w.finish(err), err
}

// boundedWrite is one write that its ctx can cut.
type boundedWrite struct {
	s       *socket
	ctx     context.Context
	mu      sync.Mutex
	writing bool // the write has not returned
	ended   bool // ctx ended while it had not
}

// cut fails the write if it is still in progress.
func (w *boundedWrite) cut() {
	w.mu.Lock()
	if !w.writing {
		w.mu.Unlock()
		return
	}
	w.ended = true
	known := w.s.tcp.known()
	if known {
		o := writeCut(w.ctx)
		w.s.cutting.Store(&o)
		w.s.tcp.setWriteDeadline(time.Unix(1, 0))
	}
	w.mu.Unlock()
	if !known {
		w.s.fail(writeCut(w.ctx))
	}
}

// finish records that the write returned, and reports whether ctx cut
// it. One that got through whole although ctx ended as it returned
// leaves the socket as it was: the deadline is lifted again.
func (w *boundedWrite) finish(err error) (cut bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writing = false
	if w.ended && err == nil {
		w.s.tcp.setWriteDeadline(time.Time{})
		w.s.cutting.Store(nil)
	}
	return w.ended && err != nil
}

// writeCut is how a socket ends when a Write's ctx ended mid-frame.
func writeCut(ctx context.Context) outcome {
	return outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
		Err: fmt.Errorf("%w: %w", errWriteCut, ctx.Err())}}
}

// errWriteCut is the Err of a 1006 disconnect the client made itself: a
// Write's ctx ended while its message was being written.
var errWriteCut = errors.New("a Write's ctx ended before its message went out whole, so the socket was cut")

// fail ends the socket with the client's own verdict material, unless it
// already failed.
func (s *socket) fail(o outcome) {
	if s.failure.CompareAndSwap(nil, &o) {
		s.retire()
	}
}

// release is the loop letting go of the socket: the application heartbeat
// stops, and the socket is no longer AckHeartbeat's target.
func (c *Client) release(s *socket) {
	s.cancel()
	s.beats.Wait()
	c.current.CompareAndSwap(s, nil)
}

// waitPump waits for the read pump, if it was started, to return.
func (s *socket) waitPump() {
	if s.pumpDone != nil {
		<-s.pumpDone
	}
}

// waitPumpUnlessInHandler waits for the pump, except when it is inside
// the WithOnMessage handler: the handler may be what is closing the
// client, and the pump ends on its own when the handler returns.
func (c *Client) waitPumpUnlessInHandler(s *socket) {
	if c.cfg.onMessage != nil && s.stalled.Load() {
		return
	}
	s.waitPump()
}

// connect paces an identify, then dials and runs the handshake, bounded
// together by the connect timeout; Reconnect cuts all three. It returns
// the open socket, or how the attempt ended. When the client is stopping,
// the socket it made (if any) is returned unclosed, for finish to close.
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
	if o := l.paceIdentify(actx); o != nil || actx.Err() != nil {
		return nil, l.cutBy(actx, nil, o)
	}
	ctx, cancel := context.WithTimeout(actx, c.cfg.connectTimeout)
	defer cancel()
	s, resp, o := l.dial(ctx)
	if s == nil {
		return nil, l.cutBy(actx, nil, o)
	}
	if c.cfg.handshake == nil {
		return s, nil
	}
	err := c.handshake(ctx, &Session{Mode: l.mode, Attempt: l.attempt, Conn: s.conn, Response: resp, c: c, sock: s})
	if err == nil {
		if f := s.failure.Load(); f != nil { // the heartbeat cut it as the handshake returned
			c.release(s)
			return nil, f
		}
		return s, nil
	}
	if c.life.Err() != nil {
		return s, nil
	}
	if context.Cause(actx) == errCut {
		return nil, l.cutBy(actx, s, nil)
	}
	return nil, l.handshakeFailed(ctx, s, err)
}

// paceIdentify waits on the identify limiter before an identify. It
// returns how the attempt ended when the limiter failed.
func (l *loop) paceIdentify(ctx context.Context) *outcome {
	c := l.c
	lim := c.cfg.identifyLimiter
	if lim == nil || l.mode != ModeIdentify {
		return nil
	}
	c.log.Debug("resocket: waiting for the identify limiter", "attempt", l.attempt)
	start := time.Now()
	err := lim.Wait(ctx)
	waited := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Close or Reconnect; the caller tells which
		}
		return &outcome{d: Disconnect{Err: fmt.Errorf("identify limiter: %w", c.redact.err(err))}}
	}
	c.log.Debug("resocket: identify paced", "attempt", l.attempt, "waited", waited)
	publish(&c.events, IdentifyPaced{Attempt: l.attempt, Waited: waited})
	return nil
}

// handshakeFailed closes a socket whose handshake returned err, and
// describes how it ended.
func (l *loop) handshakeFailed(ctx context.Context, s *socket, err error) *outcome {
	c := l.c
	if f := s.failure.Load(); f != nil { // cut by the heartbeat
		c.closeSocket(s, websocket.StatusNormalClosure, "")
		return f
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("handshake did not finish within the connect timeout of %v: %w", c.cfg.connectTimeout, err)
	}
	o := &outcome{d: c.redact.disconnect(handshakeDisconnect(l.mode, c.redact.err(err), c.cfg.readLimit))}
	if a, ok := forcedAction(err); ok {
		o.forced = &a
	}
	code := websocket.StatusInternalError // keep a resumable session resumable
	if o.forced != nil && *o.forced != ActionRetry {
		code = websocket.StatusNormalClosure // the session is over anyway
	}
	c.closeSocket(s, code, "handshake failed")
	return o
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
	default: // cannot happen: only the loop receives, and Reconnect sent before it cut
		if s != nil {
			l.c.closeSocket(s, websocket.StatusNormalClosure, "")
		}
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
	s := &socket{conn: conn, tcp: slot, attempt: l.attempt, writing: make(chan struct{}, 1)}
	s.ctx, s.cancel = context.WithCancel(c.life)
	c.current.Store(s)
	return s, resp, nil
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
// the heartbeats watch for a dead or zombie peer, and Reconnect or a stop
// request may end it. It returns how the socket ended, or false when the
// client is stopping (the socket is then left for finish to close).
func (l *loop) serve(s *socket) (*outcome, bool) {
	c := l.c
	openedAt := time.Now()
	s.readErr, s.pumpDone = make(chan error, 1), make(chan struct{})
	if c.cfg.onMessage != nil {
		go c.pumpToHandler(s)
	} else {
		go c.pump(s)
	}
	stopPing := c.startPing(s)
	defer stopPing()

	var o outcome
	select {
	case err := <-s.readErr:
		if c.life.Err() != nil { // the pump let go of a full queue for Close
			l.sock = s
			return nil, false
		}
		o = c.readFailed(s, err)
	case r := <-c.reconnects:
		s.retired.Store(true) // writes wait for the next socket
		c.closeSocket(s, r.code, r.reason)
		o = r.outcome()
	case <-c.life.Done():
		l.sock = s
		return nil, false
	}
	s.waitPump()
	c.release(s)
	o.stable = time.Since(openedAt) >= c.cfg.stableAfter
	return &o, true
}

// readFailed describes an open socket whose read pump stopped with err:
// the client's own cut when it made one (a pong that failed on the
// deadline of a Write's cut counts as that cut), else what err says. A close
// frame the pump read beats the client's cut (a heartbeat, a beat that
// failed): the frame came in before the cut took effect, and the peer
// said why it closed.
func (c *Client) readFailed(s *socket, err error) outcome {
	var ce websocket.CloseError
	if f := s.failure.Load(); f != nil && !errors.As(err, &ce) {
		return *f
	}
	if o := s.cutting.Load(); o != nil && isTimeout(err) {
		s.retire()
		return *o
	}
	if errors.Is(err, ErrInvalidUTF8) {
		c.closeSocket(s, websocket.StatusInvalidFramePayloadData, "invalid UTF-8 in a text message")
	}
	s.retire()
	return outcome{d: c.redact.disconnect(socketDisconnect(err, c.cfg.readLimit))}
}

// closeSocket sends a close frame and waits up to the close timeout for
// the peer's answer, then cuts the TCP connection; the loop lets go of
// the socket.
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
	c.release(s)
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
		m := Message{Type: typ, Data: data, Attempt: s.attempt}
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

// maxKeptBuffer bounds the buffer pumpToHandler keeps between messages:
// one huge message should not pin its size for the socket's life.
const maxKeptBuffer = 1 << 20

// pumpToHandler reads the socket and calls the WithOnMessage handler on
// this goroutine, reusing one buffer. While the handler runs the socket
// counts as stalled, so a long handler is not taken for a dead peer.
func (c *Client) pumpToHandler(s *socket) {
	defer close(s.pumpDone)
	buf := make([]byte, 0, 512)
	for {
		typ, r, err := s.conn.Reader(context.Background())
		if err == nil {
			buf, err = readAll(buf[:0], r)
		}
		if err == nil && typ == websocket.MessageText && !utf8.Valid(buf) {
			err = ErrInvalidUTF8 // RFC 6455 §8.1: fail the connection, with 1007
		}
		if err == nil {
			err = c.handle(s, Message{Type: typ, Data: buf, Attempt: s.attempt})
		}
		if err != nil {
			s.readErr <- err
			return
		}
		if cap(buf) > maxKeptBuffer {
			buf = make([]byte, 0, 512)
		}
	}
}

// handle calls the handler; a panic in it stops the client.
func (c *Client) handle(s *socket, m Message) (err error) {
	s.stalls.Add(1)
	s.stalled.Store(true)
	defer func() {
		s.stalled.Store(false)
		if p := recover(); p != nil {
			err = fmt.Errorf("message handler panicked: %v", p)
			fatal := ActionFatal
			s.fail(outcome{d: Disconnect{Err: err}, forced: &fatal})
		}
	}()
	c.cfg.onMessage(m)
	return nil
}

// readAll appends r's bytes to buf, growing it as needed.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}
