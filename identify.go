package resocket

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Identify at the send: a gateway counts identifies when they arrive, so
// the identify limiter is taken by the handshake right before it sends
// its identify, not before the dial (a slow dial, upgrade or HELLO would
// otherwise let two identifies arrive closer than the window).

// WaitIdentify waits on WithIdentifyLimiter's Limiter, and returns nil at
// once when there is none. Call it in the handshake right before sending
// the identify, with the protocol's heartbeat already running (Heartbeat):
// the wait may be long (the 1,000th shard of a bucket waits long), and the
// socket must stay alive meanwhile. A resume does not call it.
//
// While it waits, the connect timeout is paused, and so is the zombie
// judgment of Heartbeat: beats keep going out, and nobody reads ACKs
// until the handshake does. So nothing but a failing beat notices a peer
// that dies during a long wait; the handshake finds out when it sends its
// identify (and the slot it took is spent).
//
// It publishes IdentifyPaced when it returns nil. It returns early when
// ctx ends, or with an error wrapping ErrSocketEnded when the client cuts
// the socket (a failing beat, a Reconnect) or is closed; a close frame the peer sends
// meanwhile is read only after it, by the handshake. Any other error is
// the Limiter's (a shared store that is down), said as such: a handshake
// that returns it is a failed attempt, retried with backoff like any
// other handshake failure (a HandshakeError, whatever network error the
// store's client wrapped), never fatal.
//
// With a Limiter configured, a handshake in ModeIdentify that returns nil
// without a successful WaitIdentify is a bug the client will not hide: it
// stops with an error that names WaitIdentify (ErrIdentifySkipped).
func (s *Session) WaitIdentify(ctx context.Context) error {
	c, sock, ok := s.live()
	if !ok {
		return fmt.Errorf("%w: Session.WaitIdentify on a Session the client did not make", ErrSocketEnded)
	}
	lim := c.cfg.identifyLimiter
	if lim == nil {
		sock.identified.Store(true)
		return nil
	}
	if sock.retired.Load() {
		return sock.endedError()
	}
	sock.connectTimer.pause()
	defer sock.connectTimer.resume()
	sock.identifying.Store(true)
	defer func() {
		sock.identifying.Store(false)
		sock.stalls.Add(1) // the beat due next is not judged on the wait's silence
	}()
	c.log.Debug("resocket: waiting for the identify limiter", "attempt", sock.attempt)
	waited, err := c.waitLimiter(ctx, lim, sock.cutCtx)
	switch {
	case err == nil:
	case c.life.Err() != nil || sock.wasCut(): // first: a Reconnect's cut also ends the handshake's ctx
		return sock.endedError()
	case ctx.Err() != nil:
		return fmt.Errorf("resocket: WaitIdentify: %w", ctx.Err())
	default:
		return fmt.Errorf("resocket: WaitIdentify: %w", &identifyLimiterError{c.redact.err(err)})
	}
	sock.identified.Store(true)
	c.log.Debug("resocket: identify paced", "attempt", sock.attempt, "waited", waited)
	publish(&c.events, IdentifyPaced{Attempt: sock.attempt, Waited: waited})
	return nil
}

// ErrIdentifySkipped is the cause when, with WithIdentifyLimiter set, a
// handshake in ModeIdentify returned nil without a successful
// Session.WaitIdentify: the identify went out ungated.
var ErrIdentifySkipped = errors.New("the handshake identified without Session.WaitIdentify, which WithIdentifyLimiter requires")

// identifySkipped is the outcome of a handshake that identified ungated:
// fatal, since every later socket would do the same.
func (s *socket) identifySkipped() *outcome {
	c := s.c
	if c.cfg.identifyLimiter == nil || s.session.Mode != ModeIdentify || s.identified.Load() {
		return nil
	}
	fatal := ActionFatal
	return &outcome{d: Disconnect{Err: ErrIdentifySkipped}, forced: &fatal}
}

// connectTimer is the connect timeout of a handshake, which
// Session.WaitIdentify pauses: a time.Timer that can be stopped and
// started again with what was left.
type connectTimer struct {
	mu     sync.Mutex
	t      *time.Timer
	left   time.Duration
	since  time.Time
	paused int
	fired  bool
}

// start runs fire after d, unless paused meanwhile.
func (t *connectTimer) start(d time.Duration, fire func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.left, t.since = d, time.Now()
	t.t = time.AfterFunc(d, func() {
		t.mu.Lock()
		t.fired = true
		t.mu.Unlock()
		fire()
	})
}

func (t *connectTimer) pause() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return
	}
	if t.paused++; t.paused == 1 && t.t.Stop() {
		t.left -= time.Since(t.since)
	}
}

func (t *connectTimer) resume() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t == nil {
		return
	}
	if t.paused--; t.paused == 0 && !t.fired {
		t.since = time.Now()
		t.t.Reset(max(t.left, 0))
	}
}

// stop ends the timer for good.
func (t *connectTimer) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.t != nil {
		t.t.Stop()
		t.fired = true // nothing resumes it
	}
}

// errConnectTimeout is the cause of a handshake's ctx that the connect
// timeout ended.
var errConnectTimeout = fmt.Errorf("connect timeout: %w", context.DeadlineExceeded)
