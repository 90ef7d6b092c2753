package resocket

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/resocket/resocket/internal/clock"
)

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
	_, sock, ok := s.live()
	if !ok {
		return
	}
	sock.idle.set(d)
	if sock.idle.serving.Load() {
		sock.startIdle()
	}
}

// idleWatch is one socket's idle limit.
type idleWatch struct {
	limit   atomic.Int64 // ns; 0 is off
	last    atomic.Int64 // when something last arrived, ns since born
	clock   clock.Clock
	born    time.Time
	serving atomic.Bool   // the socket is OPEN: the watch may run
	changed chan struct{} // wakes the watch when the limit changes
	once    sync.Once
}

// arrived records an arrival, when a limit is set (one atomic load else).
func (w *idleWatch) arrived() {
	if w.limit.Load() != 0 {
		w.last.Store(int64(w.since()))
	}
}

func (w *idleWatch) set(d time.Duration) {
	w.last.Store(int64(w.since()))
	w.limit.Store(int64(max(d, 0)))
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// watchIdle starts the idle watch of an OPEN socket, if a limit is set.
func (s *socket) watchIdle() {
	s.idle.last.Store(int64(s.idle.since()))
	s.idle.serving.Store(true)
	if s.idle.limit.Load() != 0 {
		s.startIdle()
	}
}

func (s *socket) startIdle() {
	s.idle.once.Do(func() { s.spawn(func() { s.idleLoop() }) })
}

// idleLoop cuts the socket when nothing arrived within the limit and the
// consumer is not stalled; it ends with the socket.
func (s *socket) idleLoop() {
	c := s.c
	t := s.idle.clock.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := time.Hour // no limit: parked until one is set
		if limit := time.Duration(s.idle.limit.Load()); limit > 0 {
			silent := s.idle.since() - time.Duration(s.idle.last.Load())
			switch {
			case silent < limit:
				wait = limit - silent
			case s.consumerBehind():
				s.idle.last.Store(int64(s.idle.since())) // what waits may have come in time
				wait = limit
			default:
				if s.cut(outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
					Err: fmt.Errorf("%w for %v", ErrIdleTimeout, limit)}}) {
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
		case <-t.C():
		}
	}
}

// since is how long the socket has been watched: the time since it was
// made.
func (w *idleWatch) since() time.Duration { return w.clock.Now().Sub(w.born) }
