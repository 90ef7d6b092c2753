package resocket

import (
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/resocket/resocket/internal/clock"
)

// Schedule is the reconnect schedule, exposed to the tests with a clock
// they control.
type Schedule = schedule

func NewSchedule(b backoff.BackOff, now func() time.Time) *Schedule { return newSchedule(b, now) }

// WithClock makes the client go by clk instead of the wall clock.
func WithClock(clk clock.Clock) Option {
	return optionFunc(func(c *config) error {
		c.clock = clk
		return nil
	})
}

func (s *schedule) Next(d Disconnect) time.Duration { return s.next(d) }
func (s *schedule) Reset()                          { s.reset() }

// ExponentialPart returns the exponential schedule inside DefaultBackoff's
// value, so that a test can give it a clock.
func ExponentialPart(b backoff.BackOff) *backoff.ExponentialBackOff { return b.(*jitteredFirst).exp }

// Seams for unit tests of unexported helpers.
var (
	TransitionAllowed = transitionAllowed
	ParseRetryAfter   = parseRetryAfter
)

// Transition asks c's state machine for a move, as the loop does, and
// returns whether it was made and how many moves it has refused.
func Transition(c *Client, to State) (bool, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ok := c.transition(to, nil, nil)
	return ok, c.refused.Load()
}

// Backlog reports how many messages wait in Read's queue, and whether the
// current socket's pump waits for the consumer: what the heartbeats count
// as a stalled consumer.
func (c *Client) Backlog() (queued int, pumpWaiting bool) {
	if s := c.current.Load(); s != nil {
		pumpWaiting = s.stalled.Load()
	}
	return len(c.queue), pumpWaiting
}
