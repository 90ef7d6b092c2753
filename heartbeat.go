package resocket

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Two heartbeats watch a socket. The WebSocket one (WithHeartbeat) pings
// and waits for the pong; the application one (Session.Heartbeat) sends
// the protocol's own beat and waits for AckHeartbeat. Either cuts a socket
// whose peer stopped answering, as a 1006 that resumes, except while the
// consumer is stalled: the answer may be queued behind unread messages.

// ErrZombie is the Err of a 1006 disconnect found by Session.Heartbeat: a
// beat came due while the previous one was still unacknowledged.
var ErrZombie = errors.New("zombie connection: heartbeat not acknowledged")

// startPing starts the WebSocket heartbeat for an open socket, when it is
// on, and returns the function that stops it.
func (c *Client) startPing(s *socket) (stop func()) {
	if c.cfg.heartbeatInterval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go c.ping(ctx, s, done)
	return func() { cancel(); <-done }
}

// ping pings every interval and cuts the socket when a pong does not come
// within the timeout, unless the pump was waiting for the consumer
// meanwhile.
func (c *Client) ping(ctx context.Context, s *socket, done chan<- struct{}) {
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
		if !c.pingOnce(ctx, s) {
			return
		}
	}
}

// pingOnce sends one ping and waits for its pong; false means the socket
// is finished. The timeout is a timer of its own, not the ping's ctx:
// coder/websocket cuts the socket of a write whose ctx ends before the
// write returns, even when the frame went out whole, and a process
// stopped while it wrote the ping (a laptop's sleep) wakes with that
// deadline long past. The ping's ctx ends only with the socket.
func (c *Client) pingOnce(ctx context.Context, s *socket) bool {
	stalls := s.stalls.Load()
	start := time.Now()
	pong := make(chan error, 1)
	go func() { pong <- s.conn.Ping(ctx) }()
	t := time.NewTimer(c.cfg.heartbeatTimeout)
	defer t.Stop()
	for {
		select {
		case err := <-pong:
			if err != nil {
				// The socket closed under the ping (a close frame, a reset,
				// the client's own cut): the pump reports why.
				return false
			}
			c.stats.rtt.Store(int64(time.Since(start)))
			s.idle.arrived()
			return true
		case <-t.C:
		}
		if ctx.Err() != nil { // the socket is being let go
			<-pong
			return false
		}
		if n := s.stalls.Load(); s.stalled.Load() || n != stalls {
			// The pong may be queued behind a message the consumer has not
			// taken yet: a slow consumer is not a dead peer. Wait for the
			// same pong a while longer.
			stalls = n
			t.Reset(c.cfg.heartbeatTimeout)
			continue
		}
		if s.cut(outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
			Err: fmt.Errorf("%w within %v", ErrHeartbeatTimeout, c.cfg.heartbeatTimeout)}}, false) {
			c.stats.heartbeatTimeouts.Add(1)
		}
		<-pong // the cut ends the ping
		return false
	}
}

// appHeartbeat is the state of one socket's Session.Heartbeat.
type appHeartbeat struct {
	mu          sync.Mutex
	started     bool
	outstanding bool      // a beat was sent and not acknowledged
	sentAt      time.Time // when it was sent
}

// Heartbeat runs the protocol's own heartbeat on this socket (Discord's op
// 1, a trading feed's ping message): it starts at once, sends the first
// beat after interval × a random fraction in [0, 1) (so that many clients
// do not beat together), then one every interval. beat sends one; its ctx
// ends with the socket. Call AckHeartbeat when the protocol acknowledges
// one (Discord's op 11).
//
// A beat that comes due while the previous one is unacknowledged marks the
// socket a zombie: it is cut and reported as a 1006 with ErrZombie, and
// the session resumes; it counts in Stats().HeartbeatTimeouts. While the
// consumer is stalled the ACK may be queued behind unread messages, so
// the socket is not a zombie then. Stats().RTT is the last beat-to-ACK
// time.
//
// Call it from the handshake, once per socket; it stops when the socket
// ends. Acknowledge through the same Session (s.AckHeartbeat, or
// Message.Session.AckHeartbeat for an ACK read after the handshake), so
// that an ACK read from this socket never counts for the next one. A beat that returns an error or panics cuts the socket as a drop
// (1006). An interval that is not positive, or a nil beat, is a bug in the
// caller: the socket is cut and the client stops with an error that says
// so. A second call on the same socket is ignored.
func (s *Session) Heartbeat(interval time.Duration, beat func(ctx context.Context) error) {
	c, sock, ok := s.live()
	if !ok {
		return // a nil Session, or one the client did not make
	}
	if err := checkHeartbeat(interval, beat); err != nil {
		fatal := ActionFatal
		sock.cut(outcome{d: Disconnect{Err: err}, forced: &fatal}, false)
		return
	}
	sock.app.mu.Lock()
	defer sock.app.mu.Unlock()
	if sock.app.started {
		return
	}
	sock.app.started = sock.spawn(func() { c.beatLoop(sock, interval, beat) })
}

func checkHeartbeat(interval time.Duration, beat func(context.Context) error) error {
	switch {
	case interval <= 0:
		return fmt.Errorf("Session.Heartbeat: interval must be positive, got %v", interval)
	case beat == nil:
		return errors.New("Session.Heartbeat: beat is nil")
	}
	return nil
}

// beatLoop sends the beats and cuts a zombie.
func (c *Client) beatLoop(s *socket, interval time.Duration, beat func(context.Context) error) {
	s.beatG.Store(goid()) // a Close from the beat must not wait for it
	t := time.NewTimer(time.Duration(rand.Int64N(int64(interval))))
	defer t.Stop()
	var stalls int64
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(interval)
		if c.zombie(s, &stalls) {
			if s.cut(outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
				Err: fmt.Errorf("%w within %v", ErrZombie, interval)}}, false) {
				c.stats.heartbeatTimeouts.Add(1)
			}
			return
		}
		if err := sendBeat(s, interval, beat); err != nil {
			s.cut(outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
				Err: fmt.Errorf("heartbeat beat failed: %w", c.redact.err(err))}}, false)
			return
		}
	}
}

// zombie reports whether the previous beat is still unacknowledged with
// no stall of the consumer since it was sent. The consumer is stalled
// while the pump waits for it or runs its handler, and while any message
// waits in the read queue: the ACK may be among them (or behind messages
// of an older socket that the consumer has yet to take).
func (c *Client) zombie(s *socket, stalls *int64) bool {
	s.app.mu.Lock()
	defer s.app.mu.Unlock()
	now := s.stalls.Load()
	stalled := s.stalled.Load() || now != *stalls || len(c.queue) > 0 || s.identifying.Load()
	*stalls = now
	return s.app.outstanding && !stalled
}

// sendBeat sends one beat, turning a panic into an error.
func sendBeat(s *socket, interval time.Duration, beat func(context.Context) error) (err error) {
	s.app.mu.Lock()
	s.app.outstanding, s.app.sentAt = true, time.Now()
	s.app.mu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("beat panicked: %v", p)
		}
	}()
	ctx, cancel := context.WithTimeout(s.ctx, interval)
	defer cancel()
	return beat(ctx)
}

// ack records an acknowledged beat and its round trip.
func (s *socket) ack(c *Client) {
	s.app.mu.Lock()
	defer s.app.mu.Unlock()
	if !s.app.outstanding {
		return
	}
	s.app.outstanding = false
	c.stats.rtt.Store(int64(time.Since(s.app.sentAt)))
}

// ErrIdleTimeout is the Err of a 1006 disconnect found by the idle limit
// (Session.SetIdleTimeout): nothing arrived on the socket in time.
var ErrIdleTimeout = errors.New("idle timeout: nothing arrived from the peer")

// SetIdleTimeout declares this socket dead when nothing arrives on it for
// d: no message and no pong. It is the liveness signal of servers that
// speak on a known interval (Centrifugo's pings, Twitch's keepalives,
// many exchange feeds): set it from what the server announced, in the
// handshake or later. It is watched from OPEN on (the connect timeout
// bounds the handshake) and counted from then, or from the call when made
// later. Every message and pong re-arms it; so does a stalled consumer
// (the pump waiting for it, the handler running, messages unread in the
// queue), since what it has not taken may have arrived in time. A socket
// that stays silent is cut and reported as a 1006 drop (the session
// resumes) whose Err wraps ErrIdleTimeout, counted in
// Stats().IdleTimeouts. d <= 0 turns it off. It costs nothing until set.
func (s *Session) SetIdleTimeout(d time.Duration) {
	c, sock, ok := s.live()
	if !ok {
		return
	}
	sock.idle.set(d)
	if sock.idle.serving.Load() {
		c.startIdle(sock)
	}
}

// idleWatch is one socket's idle limit.
type idleWatch struct {
	limit   atomic.Int64 // ns; 0 is off
	last    atomic.Int64 // when something last arrived, ns since born
	born    time.Time
	serving atomic.Bool   // the socket is OPEN: the watch may run
	changed chan struct{} // wakes the watch when the limit changes
	once    sync.Once
}

// arrived records an arrival, when a limit is set (one atomic load else).
func (w *idleWatch) arrived() {
	if w.limit.Load() != 0 {
		w.last.Store(int64(time.Since(w.born)))
	}
}

func (w *idleWatch) set(d time.Duration) {
	w.last.Store(int64(time.Since(w.born)))
	w.limit.Store(int64(max(d, 0)))
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// watchIdle starts the idle watch of an OPEN socket, if a limit is set.
func (c *Client) watchIdle(s *socket) {
	s.idle.last.Store(int64(time.Since(s.idle.born)))
	s.idle.serving.Store(true)
	if s.idle.limit.Load() != 0 {
		c.startIdle(s)
	}
}

func (c *Client) startIdle(s *socket) {
	s.idle.once.Do(func() { s.spawn(func() { c.idleLoop(s) }) })
}

// idleLoop cuts the socket when nothing arrived within the limit and the
// consumer is not stalled; it ends with the socket.
func (c *Client) idleLoop(s *socket) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := time.Hour // no limit: parked until one is set
		if limit := time.Duration(s.idle.limit.Load()); limit > 0 {
			silent := time.Since(s.idle.born) - time.Duration(s.idle.last.Load())
			switch {
			case silent < limit:
				wait = limit - silent
			case s.stalled.Load() || len(c.queue) > 0:
				s.idle.last.Store(int64(time.Since(s.idle.born))) // what waits may have come in time
				wait = limit
			default:
				if s.cut(outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
					Err: fmt.Errorf("%w for %v", ErrIdleTimeout, limit)}}, false) {
					c.stats.idleTimeouts.Add(1)
				}
				return
			}
		}
		t.Reset(wait)
		select {
		case <-s.ctx.Done():
			return
		case <-s.idle.changed: // a stale expiry after this is harmless: the loop checks the time
		case <-t.C:
		}
	}
}
