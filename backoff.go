package resocket

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
)

// The default reconnect schedule. The numbers and why:
//
//   - The first retry after a socket that had been stable waits a uniformly
//     random delay in [0, DefaultInitialDelay). When a server restarts, every
//     client drops at once; spreading the first attempts over a whole second
//     keeps them from arriving together (partysocket randomises its first
//     delay for the same reason), while a lone client is back almost at once.
//   - Further consecutive failures grow ×1.6 with ±20% jitter, starting at
//     1 s: gRPC's connection-backoff spec, a well-argued middle between
//     nats.go's fixed 2 s and backoff/v4's ×1.5 ±50%.
//   - The delay is capped at 60 s: a bot that has been down for an hour is
//     back within a minute of its server returning. gRPC caps at 120 s,
//     partysocket at 10 s, discord.js retries within seconds; a minute is
//     kind both to the user and to a recovering server.
//   - There is no limit on attempts or elapsed time. backoff/v4's default
//     MaxElapsedTime of 15 minutes would silently end a bot that must live
//     for months; bound the schedule yourself with WithBackoff if you want
//     one (backoff.WithMaxRetries, or ExponentialBackOff.MaxElapsedTime).
//   - A socket counts as stable after WithStableAfter (default 5 s, as
//     partysocket's minUptime); only then is the schedule reset, so a server
//     that accepts and drops at once cannot make the client spin.
const (
	DefaultInitialDelay = time.Second
	DefaultMaxDelay     = 60 * time.Second
	defaultMultiplier   = 1.6
	defaultJitter       = 0.2

	// tryAgainFloor is the least delay after 1013 "try again later": the
	// server asked for less load.
	tryAgainFloor = 5 * time.Second
	// slowRetryFloor is the least delay after 525, 526 or 530: the origin is
	// misconfigured and only its owner can fix it.
	slowRetryFloor = 30 * time.Second
	// maxRetryAfter caps what a Retry-After header can ask for.
	maxRetryAfter = 10 * time.Minute
)

// DefaultBackoff returns the default schedule, a new value each call: the
// first delay after a Reset is uniform in [0, 1 s), then 1 s ×1.6 with ±20%
// jitter, capped at 60 s, with no elapsed-time limit. It is the schedule a
// client uses without WithBackoff, and WithBackoff(DefaultBackoff) is
// exactly the same.
func DefaultBackoff() backoff.BackOff {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(DefaultInitialDelay),
		backoff.WithMultiplier(defaultMultiplier),
		backoff.WithRandomizationFactor(defaultJitter),
		backoff.WithMaxInterval(DefaultMaxDelay),
		backoff.WithMaxElapsedTime(0),
	)
	return &jitteredFirst{exp: b, fresh: true}
}

// jitteredFirst is the default schedule: a uniformly random first delay
// after each Reset, then the exponential schedule.
type jitteredFirst struct {
	exp   *backoff.ExponentialBackOff
	fresh bool
}

func (j *jitteredFirst) NextBackOff() time.Duration {
	if j.fresh {
		j.fresh = false
		return rand.N(DefaultInitialDelay)
	}
	return j.exp.NextBackOff()
}

func (j *jitteredFirst) Reset() {
	j.exp.Reset()
	j.fresh = true
}

// schedule is the client's reconnect schedule: the BackOff, with the
// floors a disconnect itself asks for. Only the connection goroutine uses
// it: backoff.BackOff is not safe for concurrent use.
type schedule struct {
	b   backoff.BackOff
	now func() time.Time
}

func newSchedule(b backoff.BackOff, now func() time.Time) *schedule {
	b.Reset()
	return &schedule{b: b, now: now}
}

// reset starts the schedule again, after a stable socket.
func (s *schedule) reset() { s.b.Reset() }

// next returns the delay before the next attempt after d, or backoff.Stop
// when the schedule gave up. Retry-After and slow rows raise the floor.
func (s *schedule) next(d Disconnect) time.Duration {
	delay := s.b.NextBackOff()
	if delay == backoff.Stop {
		return backoff.Stop
	}
	return max(delay, retryFloor(d, s.now()))
}

// retryFloor is the least delay the disconnect itself asks for.
func retryFloor(d Disconnect, now time.Time) time.Duration {
	var floor time.Duration
	if d.Header != nil {
		if ra, ok := parseRetryAfter(d.Header.Get("Retry-After"), now); ok {
			floor = min(ra, maxRetryAfter)
		}
	}
	switch {
	case d.HTTPStatus == 0 && d.Code == websocket.StatusTryAgainLater:
		floor = max(floor, tryAgainFloor)
	case d.HTTPStatus == 525, d.HTTPStatus == 526, d.HTTPStatus == 530:
		floor = max(floor, slowRetryFloor)
	}
	return floor
}

// parseRetryAfter parses a Retry-After header value, either delay-seconds
// or an HTTP-date, relative to now. It reports false for an empty or
// malformed value; a date in the past is a zero delay.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 63)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
				return maxRetryAfter, true
			}
			return 0, false
		}
		if secs > uint64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}
