package resocket

import "fmt"

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

// transition is the only code that writes the client's state, its open
// socket, its terminal error and done, as grpc-go's updateState is for a
// connection. The caller holds c.mu. It refuses (and counts) any move the
// table does not allow, wakes every goroutine waiting for a state change,
// and publishes StateChanged; on CLOSED it also closes Done and ends every
// event channel.
//
// sock is the socket that becomes open (with StateOpen; leaving OPEN
// forgets it). cause is why the client ends (with StateClosing or
// StateClosed); the first one given is kept.
func (c *Client) transition(to State, sock *socket, cause error) bool {
	from := State(c.state.Load())
	if !transitionAllowed(from, to) {
		c.stats.illegalTransitions.Add(1)
		c.log.Error("resocket: refused state transition", "from", from, "to", to)
		return false
	}
	if to == StateOpen {
		c.open.Store(sock)
	} else {
		c.open.Store(nil)
	}
	if (to == StateClosing || to == StateClosed) && c.err == nil {
		c.err = cause
	}
	c.state.Store(int32(to))
	close(c.stateChanged)
	c.stateChanged = make(chan struct{})
	if to == StateClosed { // the terminal event first: whoever sees Done finds it on every channel
		c.events.finish(stateChanged(from, to))
		close(c.done)
		return true
	}
	publish(&c.events, stateChanged(from, to))
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
