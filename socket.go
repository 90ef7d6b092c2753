package resocket

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// socket is one upgraded WebSocket, the TCP connection under it, and what
// runs beside it: the read pump while it is open, and the application
// heartbeat from the handshake on. Its Session is the handle users hold.
type socket struct {
	c       *Client
	conn    *websocket.Conn
	tcp     *tcpSlot
	attempt int
	// openedAt is when the socket went OPEN, on the client's clock: the
	// stable period counts from there.
	openedAt time.Time
	session  *Session
	// ctx ends when the loop lets go of the socket; it bounds the
	// application heartbeat.
	ctx    context.Context
	cancel context.CancelFunc
	// beats counts the goroutines beside the socket (the application
	// heartbeat, the idle watch); spawn starts them, and none starts once
	// the socket is released. beatG is the heartbeat's goroutine id, and
	// beatClosed closes when its beat called Close: release cannot wait
	// for the goroutine that is waiting for it.
	beats          sync.WaitGroup
	goMu           sync.Mutex
	released       bool
	beatG          atomic.Uint64
	beatClosed     chan struct{}
	beatClosedOnce sync.Once

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
	// idle is the idle limit (Session.SetIdleTimeout; idle.go).
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

// release is the loop letting go of the socket: the application heartbeat
// stops, the Session's acts end, and the socket is no longer the current
// one.
func (s *socket) release() {
	c := s.c
	s.settle()
	s.goMu.Lock()
	s.released = true
	s.goMu.Unlock()
	s.cancel()
	s.waitBeats()
	c.mu.Lock()
	c.current.CompareAndSwap(s, nil)
	c.mu.Unlock()
}

// waitBeats waits for the goroutines beside the socket, or until its beat
// calls Close, before or during the wait: that beat waits for the loop,
// and returns right after its Close does.
func (s *socket) waitBeats() {
	done := make(chan struct{})
	go func() {
		s.beats.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-s.beatClosed:
	}
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
