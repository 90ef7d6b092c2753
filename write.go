package resocket

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Write sends one message on the live socket, whichever it is. While
// CONNECTING it waits for OPEN or for ctx. A reply to a message belongs to
// the message's socket: send it with Message.Session.Write, which never
// reaches a later socket. Called from the WithOnMessage handler when the
// socket has ended, Write cannot wait (the next socket waits for the
// handler) and returns an error wrapping ErrSocketEnded at once. nil means the message was handed to a live socket; an
// error means it was not, and says why. There is no hidden buffering: a
// message is never held for a later socket.
//
// Writes go out one at a time. A ctx that ends before the frame starts
// (while the Write waits for OPEN or for the write before it) sends
// nothing and leaves the socket up. A failed write ends that socket, as
// does a ctx that ends while the frame is being written (half a frame
// cannot be taken back): that disconnect is a 1006 retry whose Err wraps
// ctx's error. Later writes wait for the next socket. A ctx that ends
// after the frame went out whole, even one whose deadline passed while
// the process was stopped in the middle of the write, leaves the socket
// up.
// A write that fails because the peer closed does not decide the
// disconnect: the close frame the peer sent first, if any, is still read,
// and its code is the verdict.
func (c *Client) Write(ctx context.Context, typ websocket.MessageType, p []byte) error {
	if err := checkMessageType("Write", typ); err != nil {
		return err
	}
	if err := c.waitWriteLimiter(ctx, nil); err != nil {
		return err
	}
	for {
		if s := c.open.Load(); s != nil && !s.retired.Load() {
			if done, err := s.writeMessage(ctx, typ, p); done {
				return err
			}
			continue // s was retired while this write waited its turn
		}
		c.mu.Lock()
		st, changed := c.State(), c.stateChanged
		c.mu.Unlock()
		if st == StateClosing || st == StateClosed {
			return c.closedErr()
		}
		if s := c.open.Load(); s != nil && !s.retired.Load() {
			continue
		}
		if c.inHandler() { // the next socket waits for this very call to return
			return fmt.Errorf("resocket: write: %w", errHandlerHoldsNextSocket)
		}
		select {
		case <-changed:
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("resocket: write: waiting for an open socket: %w", ctx.Err())
		}
	}
}

func checkMessageType(method string, typ websocket.MessageType) error {
	if typ != websocket.MessageText && typ != websocket.MessageBinary {
		return fmt.Errorf("resocket: %s: message type must be MessageText or MessageBinary, got %v", method, typ)
	}
	return nil
}

// errHandlerHoldsNextSocket is Write's error when it is called from the
// WithOnMessage handler with no open socket: waiting would wait for itself.
var errHandlerHoldsNextSocket = fmt.Errorf("%w: called from the WithOnMessage handler, whose return the next socket waits for (reply with Message.Session.Write)",
	ErrSocketEnded)

// writeMessage writes one message on s, or reports (false) that s was retired
// while the write waited for its turn. Writes take turns on the socket's
// gate, so a Write whose ctx ends while it waits has written nothing and
// leaves the socket up. A write that fails on the socket finishes it:
// coder/websocket cannot take back half a frame.
func (s *socket) writeMessage(ctx context.Context, typ websocket.MessageType, p []byte) (bool, error) {
	c := s.c
	select {
	case s.writing <- struct{}{}:
	case <-ctx.Done():
		return true, fmt.Errorf("resocket: write: waiting for the write before it: %w", ctx.Err())
	}
	defer func() { <-s.writing }()
	if s.retired.Load() {
		return false, nil
	}
	// coder/websocket cuts the socket of a write whose ctx ends, even one
	// that had ended before the write began (a Write that waited for OPEN
	// until its deadline): such a write sends nothing instead.
	if err := ctx.Err(); err != nil {
		return true, fmt.Errorf("resocket: write: %w", err)
	}
	cut, err := s.write(ctx, typ, p)
	switch {
	case err == nil:
		c.stats.sent(len(p))
		return true, nil
	case cut:
		o := writeCut(ctx)
		s.cut(o)
		return true, fmt.Errorf("resocket: write: %w", o.d.Err)
	default:
		s.writeFailed(err)
		return true, fmt.Errorf("resocket: write: %w", c.redact.err(err))
	}
}

// waitWriteLimiter waits on WithWriteLimiter's Limiter, if any, bounded
// by ctx and cut by Close. For a Session.Write, s is its socket, whose end
// cuts the wait too: the write could not go out on the next one.
func (c *Client) waitWriteLimiter(ctx context.Context, s *socket) error {
	if c.cfg.writeLimiter == nil {
		return nil
	}
	if st := c.State(); st == StateClosing || st == StateClosed {
		return c.closedErr()
	}
	var cuts []context.Context
	if s != nil {
		cuts = []context.Context{s.ctx, s.cutCtx}
	}
	waited, err := c.waitLimiter(ctx, c.cfg.writeLimiter, cuts...)
	c.stats.writeLimiterWaited.Add(int64(waited))
	switch {
	case err == nil:
		return nil
	case s != nil && (s.ctx.Err() != nil || s.wasCut()):
		return s.endedError()
	case ctx.Err() == nil && c.life.Err() != nil:
		return c.closedErr()
	}
	return fmt.Errorf("resocket: write: waiting for the write limiter: %w", err)
}

// waitLimiter waits for a turn of lim, bounded by ctx and cut by Close and
// by the end of any of cuts, and says how long it waited on the client's
// clock.
func (c *Client) waitLimiter(ctx context.Context, lim Limiter, cuts ...context.Context) (time.Duration, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.life, cancel)()
	for _, cut := range cuts {
		defer context.AfterFunc(cut, cancel)()
	}
	start := c.cfg.clock.Now()
	err := lim.Wait(wctx)
	return c.cfg.clock.Now().Sub(start), err
}

// writeFailed retires the socket after a Write failed on it, so that
// later writes wait for the next socket. When the connection itself broke
// (a reset, a hang-up, a closed socket), the pump is left to end the
// socket: the peer's close frame may still wait to be read, and its code,
// not the failed write, is the verdict; the read fails next by itself.
// Any other failure (coder/websocket's own, with no I/O error in it) cuts
// the socket now. A write its ctx cut is not here: writeMessage names it.
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
		w.s.cut(writeCut(w.ctx))
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
