package resocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// socket is one upgraded WebSocket, the TCP connection under it, and what
// runs beside it: the read pump while it is open, and the application
// heartbeat from the handshake on. Its Session is the handle users hold.
type socket struct {
	conn    *websocket.Conn
	tcp     *tcpSlot
	attempt int
	session *Session
	// ctx ends when the loop lets go of the socket; it bounds the
	// application heartbeat.
	ctx    context.Context
	cancel context.CancelFunc
	// beats counts the goroutines beside the socket (the application
	// heartbeat, the idle watch); spawn starts them, and none starts once
	// the socket is released. beatG is the heartbeat's goroutine id, and
	// closedFromBeat is set when its beat called Close: release cannot
	// wait for the goroutine that is waiting for it.
	beats          sync.WaitGroup
	goMu           sync.Mutex
	released       bool
	beatG          atomic.Uint64
	closedFromBeat atomic.Bool

	// end is what is known of how the socket ended (ending.go); cutCtx
	// ends with the client's first cut, to wake the loop.
	end       ending
	cutCtx    context.Context
	cutCancel context.CancelFunc
	// connectTimer is the handshake's connect timeout; identifying is set
	// while WaitIdentify waits, which pauses it and the zombie judgment;
	// identified once WaitIdentify let an identify go.
	connectTimer connectTimer
	identifying  atomic.Bool
	identified   atomic.Bool
	// idle is the idle limit (Session.SetIdleTimeout; heartbeat.go).
	idle idleWatch
	// retired is set when the socket is known to be finished (a cut, a
	// failed write, a verdict): Client.Write then waits for the next
	// socket, Session.Write fails.
	retired atomic.Bool
	// stalled is set while the pump waits for the consumer or runs the
	// handler; stalls counts those waits. Pongs and ACKs cannot be read
	// meanwhile, so a late one is not a dead peer.
	stalled atomic.Bool
	stalls  atomic.Int64

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
		w.s.setPending(&o)
		w.s.tcp.setWriteDeadline(time.Unix(1, 0))
	}
	w.mu.Unlock()
	if !known {
		w.s.cut(writeCut(w.ctx), false)
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
		w.s.setPending(nil)
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

// release is the loop letting go of the socket: the application heartbeat
// stops, the Session's acts end, and the socket is no longer the current
// one.
func (c *Client) release(s *socket) {
	s.settle()
	s.goMu.Lock()
	s.released = true
	s.goMu.Unlock()
	s.cancel()
	if !s.closedFromBeat.Load() { // else the beat returns right after its Close does
		s.beats.Wait()
	}
	c.mu.Lock()
	c.current.CompareAndSwap(s, nil)
	c.mu.Unlock()
}

// spawn runs f on a goroutine counted in beats, unless the socket was
// released; it reports whether f runs.
func (s *socket) spawn(f func()) bool {
	s.goMu.Lock()
	defer s.goMu.Unlock()
	if s.released {
		return false
	}
	s.beats.Add(1)
	go func() {
		defer s.beats.Done()
		f()
	}()
	return true
}

// waitPump waits for the read pump, if it was started, to return: with
// WithOnMessage, for the handler's last call.
func (s *socket) waitPump() {
	if s.pumpDone != nil {
		<-s.pumpDone
	}
}

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
	hctx, hcancel := context.WithCancelCause(actx)
	defer hcancel(nil)
	s.connectTimer.start(c.cfg.connectTimeout-time.Since(start), func() { hcancel(errConnectTimeout) })
	defer s.connectTimer.stop()
	var err error
	if c.cfg.handshake != nil {
		err = c.handshake(hctx, s, resp)
	}
	if c.life.Err() != nil {
		return s, nil
	}
	if context.Cause(actx) == errCut { // a Reconnect made before the socket was current
		select {
		case r := <-c.reconnects:
			c.reconnectSocket(s, r)
		default: // cannot happen: Reconnect sends before it cuts
		}
	}
	if err == nil && !s.wasCut() { // a write that failed meanwhile is for the pump to explain
		if o := c.identifySkipped(s); o != nil {
			s.cut(*o, false)
			return nil, l.handshakeFailed(s, nil)
		}
		return s, nil
	}
	if err != nil && context.Cause(hctx) == errConnectTimeout {
		err = fmt.Errorf("handshake did not finish within the connect timeout of %v (%w): %w", c.cfg.connectTimeout, context.DeadlineExceeded, err)
	}
	return nil, l.handshakeFailed(s, err)
}

// handshakeFailed judges a socket whose handshake returned err, or that
// was cut while it ran, and closes it.
func (l *loop) handshakeFailed(s *socket, err error) *outcome {
	c := l.c
	o := c.verdict(s, err, true)
	code, reason := o.closeCode, o.closeReason
	switch {
	case code != 0: // Reconnect's
	case o.forced != nil && *o.forced != ActionRetry:
		code, reason = websocket.StatusNormalClosure, "" // the session is over anyway
	default:
		code, reason = websocket.StatusInternalError, "handshake failed" // keep a resumable session resumable
	}
	c.closeSocket(s, code, reason)
	return &o
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
	s := &socket{conn: conn, tcp: slot, attempt: l.attempt, writing: make(chan struct{}, 1)}
	s.cutCtx, s.cutCancel = context.WithCancel(context.Background())
	s.idle.born, s.idle.changed = time.Now(), make(chan struct{}, 1)
	s.end.done = make(chan struct{})
	s.session = &Session{Mode: l.mode, Attempt: l.attempt, Conn: conn, c: c, sock: s}
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
func (c *Client) handshake(ctx context.Context, s *socket, resp *http.Response) error {
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

// serve runs an OPEN socket until it ends: the pump fills the read queue,
// the heartbeats watch for a dead or zombie peer, and a cut (Reconnect,
// a heartbeat) or a stop request may end it. It returns how the socket
// ended, or false when the client is stopping (the socket is then left
// for finish to close).
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
	c.watchIdle(s)

	var err error
	select {
	case err = <-s.readErr:
	case <-s.cutCtx.Done():
		if code, reason := s.closingFrame(); code != 0 { // Reconnect's; other cuts closed the socket already
			c.closeSocket(s, code, reason)
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
	o := c.readFailed(s, err)
	c.release(s)
	o.stable = time.Since(openedAt) >= c.cfg.stableAfter
	return &o, true
}

// readFailed judges an open socket whose reads ended with err.
func (c *Client) readFailed(s *socket, err error) outcome {
	o := c.verdict(s, err, false)
	if errors.Is(o.d.Err, ErrInvalidUTF8) {
		c.closeSocket(s, websocket.StatusInvalidFramePayloadData, "invalid UTF-8 in a text message")
	}
	s.conn.CloseNow()
	return o
}

// closeSocket sends a close frame and waits up to the close timeout for
// the peer's answer, then cuts the TCP connection; the loop lets go of
// the socket.
func (c *Client) closeSocket(s *socket, code websocket.StatusCode, reason string) {
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
			s.readEnded(err)
			s.readErr <- err
			return
		}
		s.idle.arrived()
		m := Message{Type: typ, Data: data, Attempt: s.attempt, Session: s.session}
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
	c.handlerG.Store(goid()) // once per socket: only this goroutine runs the handler now
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
			s.idle.arrived()
			err = c.handle(s, Message{Type: typ, Data: buf, Attempt: s.attempt, Session: s.session})
		}
		if err != nil {
			s.readEnded(err)
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
			s.cut(outcome{d: Disconnect{Err: err}, forced: &fatal}, false)
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

// goid returns the id of the calling goroutine. Go hides it on purpose,
// and the client uses it for one thing only: to tell a Close made from
// inside the WithOnMessage handler (which must not wait for the handler)
// from one made anywhere else (which must). It reads the first line of
// the goroutine's stack, "goroutine 42 [running]:".
func goid() uint64 {
	var buf [32]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	var id uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			break
		}
		id = id*10 + uint64(ch-'0')
	}
	return id
}
