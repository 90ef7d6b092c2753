// Package clock is the time the client goes by: the real one, or in tests
// a fake one that moves only when told, in the manner of
// cenkalti/backoff's Clock and Timer.
//
// The client reads through it whatever paces it: the wait before a retry
// and the schedule's Retry-After arithmetic, the WebSocket heartbeat and
// its timeout, the application heartbeat and its zombie judgment, the
// stable period, the idle limit and the in-process limiter. Deadlines that
// bound one I/O operation against a peer (the dial, the close handshake, a
// write) stay on real time: a fake clock cannot move a peer.
package clock

import "time"

// Clock tells the time and makes timers.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that sends the time on C after d.
	NewTimer(d time.Duration) Timer
}

// Timer is a time.Timer behind an interface. Stop and Reset follow Go
// 1.23's rules: after either returns, no stale value is received from C.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// Real is the wall clock.
var Real Clock = realClock{}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time        { return r.t.C }
func (r realTimer) Stop() bool                 { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }
