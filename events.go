package resocket

import (
	"sync"
	"sync/atomic"
	"time"
)

// Event is something that happened to a Client. It is sealed: the only
// implementations are this package's types, StateChanged, Dialing,
// Upgraded, IdentifyPaced, Connected, HeartbeatRTT, Disconnected and
// Retrying. Switch on the type to read one.
//
// One attempt publishes, in order: Dialing; Upgraded once the server
// accepted the upgrade; IdentifyPaced if its handshake waited on the
// identify limiter; then Connected when it is OPEN. Each heartbeat round
// trip publishes HeartbeatRTT: the ping heartbeat's while OPEN, a
// Session.Heartbeat's from the handshake on (so one may come before
// Connected). The socket's or the attempt's end publishes one
// Disconnected, then Retrying unless the verdict was fatal.
type Event interface {
	event()
}

// StateChanged reports a transition. The one with To == StateClosed is the
// last event on every channel, always delivered; the channel is closed
// right after it.
type StateChanged struct {
	From, To State
}

// Dialing reports that an attempt begins: the client dials now.
type Dialing struct {
	Attempt int
	Mode    Mode
}

// Upgraded reports that the server accepted attempt Attempt's upgrade:
// the handshake runs next.
type Upgraded struct {
	Attempt int
}

// HeartbeatRTT reports a heartbeat round trip of the socket made by
// attempt Attempt: a ping answered by its pong, or, with
// Session.Heartbeat, a beat answered by AckHeartbeat (from the handshake
// on). Stats().RTT is the last one.
type HeartbeatRTT struct {
	Attempt int
	RTT     time.Duration
}

// Connected reports a socket that finished its handshake and is OPEN.
type Connected struct {
	Attempt int  // the attempt that made this socket, 1 for the client's first
	Mode    Mode // the mode its handshake ran in
}

// Disconnected reports a socket, or an attempt at one, that ended: what
// happened, what the client decided, and how long it waits before the next
// attempt (0 when the action is fatal).
type Disconnected struct {
	Disconnect
	Action Action
	Next   time.Duration
	// Attempt is the attempt that made the socket, or that failed; Opened
	// says whether its socket had reached OPEN. A Reconnect made during
	// the wait before the next attempt ends no socket: its Disconnected
	// has Attempt 0.
	Attempt int
	Opened  bool
}

// Retrying reports the attempt the client is about to make, after Delay.
type Retrying struct {
	Attempt int
	Delay   time.Duration
	Mode    Mode
}

// IdentifyPaced reports that the handshake of attempt Attempt got its
// turn from the identify limiter (WithIdentifyLimiter, taken by
// Session.WaitIdentify) after waiting Waited, right before it sends its
// identify.
type IdentifyPaced struct {
	Attempt int
	Waited  time.Duration
}

func (StateChanged) event()  {}
func (Dialing) event()       {}
func (Upgraded) event()      {}
func (HeartbeatRTT) event()  {}
func (IdentifyPaced) event() {}
func (Connected) event()     {}
func (Disconnected) event()  {}
func (Retrying) event()      {}

// hub fans events out to bounded subscriber channels. Publishing never
// blocks: a full channel loses its oldest event, counted in dropped. All
// sends and closes happen under mu, so a channel is never sent to after it
// was closed and is closed exactly once.
type hub struct {
	mu       sync.Mutex
	subs     []*subscriber
	n        atomic.Int32 // len(subs), read without the lock to skip work
	terminal Event        // set once finish ran; later subscribers get it alone
	dropped  atomic.Uint64
}

type subscriber struct {
	ch     chan Event
	closed bool
}

// publish delivers e to every subscriber. It is generic so that an event
// is boxed into an interface only when somebody subscribed.
func publish[E Event](h *hub, e E) {
	if h.n.Load() == 0 {
		return
	}
	h.mu.Lock()
	if h.terminal == nil {
		ev := Event(e)
		for _, s := range h.subs {
			h.deliver(s, ev)
		}
	}
	h.mu.Unlock()
}

// deliver puts e on s, making room by dropping the oldest event. The
// caller holds h.mu, so no other goroutine sends on s.ch: after one receive
// there is room, whatever the consumer does meanwhile.
func (h *hub) deliver(s *subscriber, e Event) {
	select {
	case s.ch <- e:
		return
	default:
	}
	select {
	case <-s.ch:
		h.dropped.Add(1)
	default: // the consumer just made room itself
	}
	select {
	case s.ch <- e:
	default: // cannot happen: only this goroutine sends
		h.dropped.Add(1)
	}
}

// finish delivers the terminal event to every subscriber and closes their
// channels. Later publishes are ignored.
func (h *hub) finish(e Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.terminal != nil {
		return
	}
	h.terminal = e
	for _, s := range h.subs {
		h.deliver(s, e)
		close(s.ch)
		s.closed = true
	}
	h.subs = nil
	h.n.Store(0)
}

// subscribe adds a subscriber with a buffer of n (at least 1) and returns
// its channel and an idempotent cancel.
func (h *hub) subscribe(n int) (<-chan Event, func()) {
	n = max(n, 1)
	s := &subscriber{ch: make(chan Event, n)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.terminal != nil {
		s.ch <- h.terminal
		close(s.ch)
		s.closed = true
		return s.ch, func() {}
	}
	h.subs = append(h.subs, s)
	h.n.Store(int32(len(h.subs)))
	return s.ch, func() { h.unsubscribe(s) }
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	for i, x := range h.subs {
		if x == s {
			h.subs = append(h.subs[:i:i], h.subs[i+1:]...)
			break
		}
	}
	h.n.Store(int32(len(h.subs)))
	close(s.ch)
	s.closed = true
}
