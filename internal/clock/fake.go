package clock

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// Fake is a Clock that moves only when Advance or Set moves it. Timers
// fire in the order of their deadlines, each at its exact time. It is
// safe for concurrent use.
//
// A test that drives code running on other goroutines waits for that code
// to arm its timers (WaitForTimers) before it moves the clock, instead of
// sleeping.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*fakeTimer  // armed, in no order
	arms    int           // how many times a timer was armed
	changed chan struct{} // closed and replaced when a timer is armed or stopped
}

// NewFake returns a fake clock at a fixed instant.
func NewFake() *Fake {
	return &Fake{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), changed: make(chan struct{})}
}

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the clock reaches now+d.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// Advance moves the clock by d, firing every timer that falls due, in
// order, each with the clock at its deadline. Code on other goroutines
// re-arms its timers when it gets to run, which may be after Advance
// returned: to fire a timer that is re-armed every period, advance one
// period at a time and wait for the re-arm (WaitFor, Arms).
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	end := f.now.Add(d)
	f.mu.Unlock()
	f.Set(end)
}

// Set moves the clock to t (never back), firing what falls due on the way.
func (f *Fake) Set(t time.Time) {
	for {
		f.mu.Lock()
		next := f.earliest()
		if next == nil || next.at.After(t) {
			if t.After(f.now) {
				f.now = t
			}
			f.mu.Unlock()
			return
		}
		if next.at.After(f.now) {
			f.now = next.at
		}
		f.disarm(next)
		next.fire() // under mu: a Stop or Reset that returns later finds no stale value
		f.mu.Unlock()
	}
}

// earliest returns the armed timer with the earliest deadline (of those
// that tie, the first armed), or nil. The caller holds mu.
func (f *Fake) earliest() *fakeTimer {
	var next *fakeTimer
	for _, tm := range f.timers {
		if next == nil || tm.at.Before(next.at) {
			next = tm
		}
	}
	return next
}

// Pending returns how long each armed timer has left, shortest first.
func (f *Fake) Pending() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	left := make([]time.Duration, 0, len(f.timers))
	for _, t := range f.timers {
		left = append(left, t.at.Sub(f.now))
	}
	slices.Sort(left)
	return left
}

// Next returns the earliest deadline of the armed timers.
func (f *Fake) Next() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if next := f.earliest(); next != nil {
		return next.at, true
	}
	return time.Time{}, false
}

// Arms returns how many times a timer was armed (made or Reset with a
// positive duration): a test waits for it to grow to know that code on
// another goroutine got as far as arming its next timer.
func (f *Fake) Arms() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.arms
}

// WaitForTimers waits until at least n timers are armed, or until timeout
// of real time passed, which it reports as an error naming what it saw.
func (f *Fake) WaitForTimers(n int, timeout time.Duration) error {
	return f.WaitFor(func() bool { return len(f.Pending()) >= n }, timeout)
}

// WaitFor waits until ok holds, checking it whenever a timer is armed or
// disarmed, or until timeout of real time passed. ok reads the clock
// (Pending, Arms) and whatever else it needs.
func (f *Fake) WaitFor(ok func() bool, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		if ok() {
			return nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("clock: what was awaited did not happen within %v (timers armed: %v)", timeout, f.Pending())
		}
	}
}

// disarm removes t from the armed timers. The caller holds mu.
func (f *Fake) disarm(t *fakeTimer) bool {
	i := slices.Index(f.timers, t)
	if i < 0 {
		return false
	}
	f.timers = slices.Delete(f.timers, i, i+1)
	f.wake()
	return true
}

// wake tells WaitFor that the armed timers changed. The caller holds mu.
func (f *Fake) wake() {
	close(f.changed)
	f.changed = make(chan struct{})
}

type fakeTimer struct {
	f  *Fake
	at time.Time
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	t.drain()
	return t.f.disarm(t)
}

// Reset arms the timer for now+d. One with d <= 0 fires at once, as a
// real one does.
func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	t.drain()
	armed := t.f.disarm(t)
	t.at = t.f.now.Add(d)
	if d > 0 {
		t.f.arms++
		t.f.timers = append(t.f.timers, t)
		t.f.wake()
	}
	if d <= 0 {
		t.fire()
	}
	t.f.mu.Unlock()
	return armed
}

// drain drops a value fired and not received, as Go 1.23's timers do on
// Stop and Reset. The caller holds mu.
func (t *fakeTimer) drain() {
	select {
	case <-t.c:
	default:
	}
}

// fire sends the time, with mu held.
func (t *fakeTimer) fire() {
	select {
	case t.c <- t.f.now:
	default:
	}
}
