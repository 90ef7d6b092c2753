package resocket

import (
	"time"

	"github.com/cenkalti/backoff/v4"
)

// Schedule is the reconnect schedule, exposed to the tests with a clock
// they control.
type Schedule = schedule

func NewSchedule(b backoff.BackOff, jitterFirst bool, now func() time.Time) *Schedule {
	s := newSchedule(b, jitterFirst)
	s.now = now
	return s
}

func (s *schedule) Next(d Disconnect) time.Duration { return s.next(d) }
func (s *schedule) Reset()                          { s.reset() }
