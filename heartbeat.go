package resocket

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
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
func (s *socket) startPing() (stop func()) {
	c := s.c
	if c.cfg.heartbeatInterval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go s.ping(ctx, done)
	return func() { cancel(); <-done }
}

// ping pings every interval and cuts the socket when a pong does not come
// within the timeout, unless the pump was waiting for the consumer
// meanwhile.
func (s *socket) ping(ctx context.Context, done chan<- struct{}) {
	c := s.c
	defer close(done)
	t := c.cfg.clock.NewTimer(c.cfg.heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		t.Reset(c.cfg.heartbeatInterval)
		if s.stalled.Load() {
			continue
		}
		if !s.pingOnce(ctx) {
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
func (s *socket) pingOnce(ctx context.Context) bool {
	c := s.c
	var mark stallMark
	s.stalledSince(&mark, false)
	clk := c.cfg.clock
	start := clk.Now()
	pong := make(chan error, 1)
	go func() { pong <- s.conn.Ping(ctx) }()
	t := clk.NewTimer(c.cfg.heartbeatTimeout)
	defer t.Stop()
	for {
		select {
		case err := <-pong:
			if err != nil {
				// The socket closed under the ping (a close frame, a reset,
				// the client's own cut): the pump reports why.
				return false
			}
			s.roundTrip(clk.Now().Sub(start))
			s.idle.arrived()
			return true
		case <-t.C():
		}
		if ctx.Err() != nil { // the socket is being let go
			<-pong
			return false
		}
		if s.stalledSince(&mark, false) {
			// The pong may be queued behind a message the consumer has not
			// taken yet: a slow consumer is not a dead peer. Wait for the
			// same pong a while longer.
			t.Reset(c.cfg.heartbeatTimeout)
			continue
		}
		if s.cut(outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
			Err: fmt.Errorf("%w within %v", ErrHeartbeatTimeout, c.cfg.heartbeatTimeout)}}) {
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
// the socket is not a zombie then, nor at the next beat when the stall
// ended during its interval. Stats().RTT is the last beat-to-ACK time.
//
// Call it from the handshake, once per socket; it stops when the socket
// ends. Acknowledge through the same Session (s.AckHeartbeat, or
// Message.Session.AckHeartbeat for an ACK read after the handshake), so
// that an ACK read from this socket never counts for the next one. A beat that returns an error or panics cuts the socket as a drop
// (1006). An interval that is not positive, or a nil beat, is a bug in the
// caller: the socket is cut and the client stops with an error that says
// so. A second call on the same socket is ignored.
func (s *Session) Heartbeat(interval time.Duration, beat func(ctx context.Context) error) {
	_, sock, ok := s.live()
	if !ok {
		return // a nil Session, or one the client did not make
	}
	if err := checkHeartbeat(interval, beat); err != nil {
		fatal := ActionFatal
		sock.cut(outcome{d: Disconnect{Err: err}, forced: &fatal})
		return
	}
	sock.app.mu.Lock()
	defer sock.app.mu.Unlock()
	if sock.app.started {
		return
	}
	sock.app.started = sock.spawn(func() { sock.beatLoop(interval, beat) })
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
func (s *socket) beatLoop(interval time.Duration, beat func(context.Context) error) {
	c := s.c
	s.beatG.Store(goid()) // a Close from the beat must not wait for it
	t := c.cfg.clock.NewTimer(time.Duration(rand.Int64N(int64(interval))))
	defer t.Stop()
	var mark stallMark
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
		}
		t.Reset(interval)
		if s.zombie(&mark) {
			if s.cut(outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
				Err: fmt.Errorf("%w within %v", ErrZombie, interval)}}) {
				c.stats.heartbeatTimeouts.Add(1)
			}
			return
		}
		if err := s.sendBeat(interval, beat); err != nil {
			s.cut(outcome{d: Disconnect{Code: websocket.StatusAbnormalClosure,
				Err: fmt.Errorf("heartbeat beat failed: %w", c.redact.err(err))}})
			return
		}
	}
}

// zombie reports whether the previous beat is still unacknowledged with
// no stall of the consumer since the last check. The consumer is stalled
// while the pump waits for it or runs its handler, while any message
// waits in the read queue (the ACK may be among them, or behind messages
// of an older socket that the consumer has yet to take), and while the
// handshake waits for its identify turn.
func (s *socket) zombie(mark *stallMark) bool {
	busy := s.consumerBehind() || s.identifying.Load()
	s.app.mu.Lock()
	defer s.app.mu.Unlock()
	return !s.stalledSince(mark, busy) && s.app.outstanding
}

// consumerBehind reports whether the consumer holds up what arrives now:
// the pump waits for it or runs its handler, or messages it has not taken
// wait in the read queue.
func (s *socket) consumerBehind() bool { return s.stalled.Load() || len(s.c.queue) > 0 }

// stallMark is what a heartbeat saw of the consumer at its last check.
type stallMark struct {
	waits   int64 // socket.stalls then
	stalled bool  // stalled then, busy included
}

// stalledSince reports whether the consumer stalled at any time since
// mark was taken, and moves mark to now. A stall going on at the last
// check counts too: a reply it held up may come just after it ends, late
// in this window (a consumer that catches up on a backlog near the next
// beat is not a zombie). busy is what else counts as stalled now.
func (s *socket) stalledSince(mark *stallMark, busy bool) bool {
	now := stallMark{waits: s.stalls.Load()}
	now.stalled = s.stalled.Load() || busy
	stalled := mark.stalled || now.stalled || now.waits != mark.waits
	*mark = now
	return stalled
}

// sendBeat sends one beat, turning a panic into an error.
func (s *socket) sendBeat(interval time.Duration, beat func(context.Context) error) (err error) {
	s.app.mu.Lock()
	s.app.outstanding, s.app.sentAt = true, s.c.cfg.clock.Now()
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
func (s *socket) ack() {
	s.app.mu.Lock()
	if !s.app.outstanding {
		s.app.mu.Unlock()
		return
	}
	s.app.outstanding = false
	rtt := s.c.cfg.clock.Now().Sub(s.app.sentAt)
	s.app.mu.Unlock()
	s.roundTrip(rtt) // publishes: not under the heartbeat's lock
}

// AckHeartbeat tells the client that the protocol's heartbeat ACK arrived
// (Discord's op 11) for the current socket's Session.Heartbeat. An ACK
// with no beat outstanding is ignored.
//
// Deprecated: an ACK read from one socket and acknowledged after the next
// one opened would count for the wrong socket and could hide a zombie
// there. Use the Session.AckHeartbeat of the message that carried the
// ACK (Message.Session), or of the handshake.
func (c *Client) AckHeartbeat() {
	if s := c.current.Load(); s != nil {
		s.session.AckHeartbeat()
	}
}

// AckHeartbeat tells the client that the protocol's heartbeat ACK for this
// socket's Heartbeat arrived (Discord's op 11). An ACK with no beat
// outstanding, or made after the socket ended, is ignored.
func (s *Session) AckHeartbeat() {
	_, sock, ok := s.live()
	if !ok || sock.ended() {
		return
	}
	sock.ack()
}

// roundTrip records a heartbeat round trip of s.
func (s *socket) roundTrip(rtt time.Duration) {
	c := s.c
	c.stats.rtt.Store(int64(rtt))
	publish(&c.events, HeartbeatRTT{Attempt: s.attempt, RTT: rtt})
}
