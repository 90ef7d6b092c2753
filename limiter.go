package resocket

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Limiter paces an action: Wait returns nil when the action may go, or an
// error (ctx's, when ctx ended first) when it may not. *rate.Limiter from
// golang.org/x/time/rate satisfies it, and so can a limiter shared through
// a store across processes.
type Limiter interface {
	Wait(ctx context.Context) error
}

// NewLimiter returns an in-process Limiter that lets at most n actions go
// in any window of length per: the sliding-window rule gateways state
// their limits in ("120 per 60 s", "1 identify per 5 s"). It is not a
// token bucket: a bucket of burst n refilling n per period allows 2n in
// the first period (a full bucket, then its refill), which is exactly the
// burst that gets a gateway connection closed with 4008.
//
// It is safe for concurrent use by any number of clients. Waiters go in
// the order they arrived; a waiter whose ctx ends leaves at once and takes
// no slot. n must be at least 1 and per positive; otherwise every Wait
// returns an error that says so, and the options that take a Limiter
// refuse it in New.
func NewLimiter(n int, per time.Duration) Limiter {
	l := &windowLimiter{n: n, per: per, now: time.Now}
	switch {
	case n < 1:
		l.err = fmt.Errorf("resocket: NewLimiter: n must be at least 1, got %d", n)
	case per <= 0:
		l.err = fmt.Errorf("resocket: NewLimiter: per must be positive, got %v", per)
	}
	return l
}

// windowLimiter keeps the times of the actions that may still count in a
// window: those that went less than per ago, and those reserved by waiters.
// The list is sorted, and any n+1 consecutive entries span at least per,
// which is the limit itself: adding a time at least per after the n-th
// last entry keeps it, and removing an entry (a waiter that gave up) or
// the expired head cannot break it.
type windowLimiter struct {
	n   int
	per time.Duration
	err error // a bad n or per, reported by every Wait
	now func() time.Time

	mu    sync.Mutex
	times []time.Time
}

// Wait reserves the earliest time the window allows, then sleeps until it.
func (l *windowLimiter) Wait(ctx context.Context) error {
	if l.err != nil {
		return l.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	at := l.reserve()
	d := at.Sub(l.now())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		l.cancel(at)
		return ctx.Err()
	}
}

func (l *windowLimiter) reserve() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	expired := 0
	for expired < len(l.times) && !l.times[expired].After(now.Add(-l.per)) {
		expired++
	}
	l.times = append(l.times[:0], l.times[expired:]...)
	at := now
	if k := len(l.times); k > 0 {
		at = latest(at, l.times[k-1]) // keep the list sorted
		if k >= l.n {
			at = latest(at, l.times[k-l.n].Add(l.per))
		}
	}
	l.times = append(l.times, at)
	return at
}

// cancel gives back a reservation that was not used.
func (l *windowLimiter) cancel(at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.times) - 1; i >= 0; i-- {
		if l.times[i].Equal(at) {
			l.times = append(l.times[:i], l.times[i+1:]...)
			return
		}
	}
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// limiterError reports a Limiter made by NewLimiter with bad arguments, so
// that an option can refuse it.
func limiterError(l Limiter) error {
	if w, ok := l.(*windowLimiter); ok {
		return w.err
	}
	return nil
}
