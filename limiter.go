package resocket

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/resocket/resocket/internal/clock"
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
// no slot, and those behind it move up. n must be at least 1 and per
// positive; otherwise every Wait returns an error that says so, and the
// options that take a Limiter refuse it in New.
func NewLimiter(n int, per time.Duration) Limiter {
	l := &windowLimiter{n: n, per: per, clock: clock.Real}
	switch {
	case n < 1:
		l.err = fmt.Errorf("resocket: NewLimiter: n must be at least 1, got %d", n)
	case per <= 0:
		l.err = fmt.Errorf("resocket: NewLimiter: per must be positive, got %v", per)
	}
	return l
}

// windowLimiter queues its waiters and lets only the head watch the clock:
// the head goes as soon as fewer than n takes lie within per before now,
// and then the next waiter becomes head. No waiter is promised a time
// before it is head, so when one gives up, those behind it move up at
// once; a time reserved at arrival would keep them at the later slot and
// leave the freed one unused.
//
// Takes only ever happen when the window allows them, and removing a
// waiter never adds a take, so "at most n in any window" holds whatever
// the order of arrivals and give-ups.
type windowLimiter struct {
	n     int
	per   time.Duration
	err   error // a bad n or per, reported by every Wait
	clock clock.Clock

	mu    sync.Mutex
	queue []*waiter   // in arrival order; queue[0] is the head
	takes []time.Time // the takes less than per ago, oldest first: at most n
}

// waiter is one Wait call in the queue.
type waiter struct {
	turn chan struct{} // gets a value when the waiter becomes head
}

// Wait queues the caller and returns once it is head and the window
// allows a take, or when ctx ends first.
func (l *windowLimiter) Wait(ctx context.Context) error {
	if l.err != nil {
		return l.err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &waiter{turn: make(chan struct{}, 1)}
	l.mu.Lock()
	l.queue = append(l.queue, w)
	for {
		if err := ctx.Err(); err != nil {
			l.leave(w)
			l.mu.Unlock()
			return err
		}
		// Only the head waits on a timer; the others wait for their turn.
		var timer clock.Timer
		var fired <-chan time.Time
		if l.queue[0] == w {
			if timer = l.take(); timer == nil {
				l.mu.Unlock()
				return nil
			}
			fired = timer.C()
		}
		l.mu.Unlock()
		var ended bool
		select {
		case <-w.turn:
		case <-fired:
		case <-ctx.Done():
			ended = true
		}
		if timer != nil {
			timer.Stop()
		}
		if ended {
			l.mu.Lock()
			l.leave(w)
			l.mu.Unlock()
			return ctx.Err()
		}
		l.mu.Lock()
	}
}

// take lets the head go when the window allows, with l.mu held, and
// returns nil; otherwise it returns a timer for when the window will.
func (l *windowLimiter) take() clock.Timer {
	now := l.clock.Now()
	at := l.next(now)
	if at.After(now) {
		return l.clock.NewTimer(at.Sub(now))
	}
	l.takes = append(l.takes, now)
	l.queue[0] = nil
	l.queue = l.queue[1:]
	l.wakeHead()
	return nil
}

// next forgets the takes that no longer count at now and returns the
// earliest time the window allows the next take: now, or per after the
// n-th last take.
func (l *windowLimiter) next(now time.Time) time.Time {
	expired := 0
	for expired < len(l.takes) && !l.takes[expired].After(now.Add(-l.per)) {
		expired++
	}
	l.takes = append(l.takes[:0], l.takes[expired:]...)
	if k := len(l.takes); k >= l.n {
		return l.takes[k-l.n].Add(l.per)
	}
	return now
}

// leave takes w out of the queue, with l.mu held; if it was the head, the
// next waiter becomes head and works out its own time.
func (l *windowLimiter) leave(w *waiter) {
	i := slices.Index(l.queue, w)
	l.queue = slices.Delete(l.queue, i, i+1)
	if i == 0 {
		l.wakeHead()
	}
}

// wakeHead tells the head, with l.mu held, that it is head now.
func (l *windowLimiter) wakeHead() {
	if len(l.queue) > 0 {
		select {
		case l.queue[0].turn <- struct{}{}:
		default: // already told
		}
	}
}

// limiterError reports a Limiter made by NewLimiter with bad arguments, so
// that an option can refuse it.
func limiterError(l Limiter) error {
	if w, ok := l.(*windowLimiter); ok {
		return w.err
	}
	return nil
}
