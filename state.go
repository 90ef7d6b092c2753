package resocket

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// State is where a Client is in its lifecycle. There are exactly four.
type State int32

const (
	// StateConnecting covers dialing, the upgrade, the handshake and the
	// wait between attempts. A new Client starts here.
	StateConnecting State = iota
	// StateOpen means the handshake returned nil: Read and Write work.
	StateOpen
	// StateClosing means Close was called, or a fatal disconnect is being
	// wound down.
	StateClosing
	// StateClosed is terminal: Read and Write return an error wrapping
	// ErrClosed, and Err tells why.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "CONNECTING"
	case StateOpen:
		return "OPEN"
	case StateClosing:
		return "CLOSING"
	case StateClosed:
		return "CLOSED"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// transitions lists every allowed state change. Anything else is refused.
// CONNECTING→CONNECTING is not a transition: a new attempt bumps the attempt
// counter instead. OPEN→CLOSED must pass through CLOSING so that the close
// handshake has a state of its own.
var transitions = map[[2]State]bool{
	{StateConnecting, StateOpen}:    true, // handshake done
	{StateOpen, StateConnecting}:    true, // socket dropped, will retry or re-identify
	{StateConnecting, StateClosing}: true, // Close while dialing or waiting
	{StateOpen, StateClosing}:       true, // Close or a fatal disconnect
	{StateConnecting, StateClosed}:  true, // fatal before the socket opened
	{StateClosing, StateClosed}:     true, // wound down
}

// transitionAllowed reports whether the state machine permits moving from
// one state to another.
func transitionAllowed(from, to State) bool {
	return transitions[[2]State{from, to}]
}

// lifecycle is the client's state machine and what moves with it: the
// state, the open socket, the terminal error, the channels that wake
// waiters, and the requests that steer the loop. mu guards it all; the
// atomics are written under mu and read without it.
type lifecycle struct {
	mu           sync.Mutex
	state        atomic.Int32
	open         atomic.Pointer[socket] // the OPEN socket; written by transition only
	err          error                  // why it closed; written by transition only
	stateChanged chan struct{}          // closed and replaced on every transition
	done         chan struct{}          // closed on CLOSED, by transition only
	firstOpen    chan struct{}          // closed on the first OPEN
	started      bool
	opened       bool
	stopReq      *stopRequest            // the first request to stop
	cut          context.CancelCauseFunc // cuts the attempt in progress, for Reconnect
	resumeURL    string                  // where resume-mode attempts dial; "" is New's URL
	// current is the socket being handshaken or served, for Reconnect
	// and AckHeartbeat; nil between sockets.
	current atomic.Pointer[socket]

	hub    *hub         // where transitions are published
	logger *slog.Logger // the client's
	// refused counts moves the table refused: always 0 unless there is a
	// bug (the tests read it).
	refused atomic.Int64
}

func newLifecycle(h *hub, logger *slog.Logger) lifecycle {
	return lifecycle{
		stateChanged: make(chan struct{}),
		done:         make(chan struct{}),
		firstOpen:    make(chan struct{}),
		hub:          h,
		logger:       logger,
	}
}

// transition is the only code that writes the client's state, its open
// socket, its terminal error and done, as grpc-go's updateState is for a
// connection. The caller holds mu. It refuses (and logs) any move the
// table does not allow, wakes every goroutine waiting for a state change,
// and publishes StateChanged; on CLOSED it also closes done and ends every
// event channel.
//
// sock is the socket that becomes open (with StateOpen; leaving OPEN
// forgets it). cause is why the client ends (with StateClosing or
// StateClosed); the first one given is kept.
func (l *lifecycle) transition(to State, sock *socket, cause error) bool {
	from := State(l.state.Load())
	if !transitionAllowed(from, to) {
		l.refused.Add(1)
		l.logger.Error("resocket: refused state transition", "from", from, "to", to)
		return false
	}
	if to == StateOpen {
		l.open.Store(sock)
	} else {
		l.open.Store(nil)
	}
	if (to == StateClosing || to == StateClosed) && l.err == nil {
		l.err = cause
	}
	l.state.Store(int32(to))
	close(l.stateChanged)
	l.stateChanged = make(chan struct{})
	if to == StateClosed { // the terminal event first: whoever sees Done finds it on every channel
		l.hub.finish(stateChanged(from, to))
		close(l.done)
		return true
	}
	publish(l.hub, stateChanged(from, to))
	return true
}

// stateEvents holds every StateChanged already boxed as an Event, so that
// publishing a transition allocates nothing.
var stateEvents = func() (t [4][4]Event) {
	for from := range t {
		for to := range t[from] {
			t[from][to] = StateChanged{From: State(from), To: State(to)}
		}
	}
	return t
}()

func stateChanged(from, to State) Event { return stateEvents[from][to] }
