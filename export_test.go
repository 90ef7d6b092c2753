package resocket

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Schedule is the reconnect schedule, exposed to the tests with a clock
// they control.
type Schedule = schedule

func NewSchedule(b backoff.BackOff, now func() time.Time) *Schedule {
	s := newSchedule(b)
	s.now = now
	return s
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
