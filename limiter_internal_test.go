package resocket

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resocket/resocket/internal/clock"
)

// limiterWaitLimit bounds every real wait in these tests; nothing should
// come close.
const limiterWaitLimit = 10 * time.Second

// limiterEpoch is where every fake clock starts.
var limiterEpoch = clock.NewFake().Now()

// limiterRig drives a limiter on a fake clock one event at a time: it
// starts a Wait, ends a Wait's ctx or moves the clock, and after each
// waits until the limiter is still (every Wait either returned or queued,
// the head's timer set), so that what happens follows from the events
// alone and take times are exact.
type limiterRig struct {
	t     *testing.T
	l     *windowLimiter
	clock *clock.Fake
	live  atomic.Int64 // Wait calls not returned yet
	calls []*limiterCall
}

type limiterCall struct {
	seq     int // arrival order
	patient bool
	cancel  context.CancelFunc
	done    chan struct{} // closed when Wait returned, after err and at are set
	err     error
	at      time.Time // the clock when Wait returned nil
}

func newLimiterRig(t *testing.T, n int, per time.Duration) *limiterRig {
	l := NewLimiter(n, per).(*windowLimiter)
	c := clock.NewFake()
	l.clock = c
	r := &limiterRig{t: t, l: l, clock: c}
	t.Cleanup(r.close)
	return r
}

// close ends every Wait still running and waits for it to return.
func (r *limiterRig) close() {
	for _, c := range r.calls {
		c.cancel()
	}
	for _, c := range r.calls {
		<-c.done
	}
}

// start begins a Wait and returns once it has taken or is queued.
func (r *limiterRig) start(patient bool) *limiterCall {
	ctx, cancel := context.WithCancel(context.Background())
	c := &limiterCall{seq: len(r.calls), patient: patient, cancel: cancel, done: make(chan struct{})}
	r.calls = append(r.calls, c)
	r.live.Add(1)
	go func() {
		defer r.live.Add(-1)
		defer close(c.done)
		c.err = r.l.Wait(ctx)
		if c.err == nil {
			c.at = r.clock.Now()
		}
	}()
	r.settle()
	return c
}

// giveUp ends c's ctx and returns once c has left and the limiter is still.
func (r *limiterRig) giveUp(c *limiterCall) {
	r.t.Helper()
	c.cancel()
	select {
	case <-c.done:
	case <-time.After(limiterWaitLimit):
		r.t.Fatalf("call %d did not leave within %v of its ctx ending", c.seq, limiterWaitLimit)
	}
	if !errors.Is(c.err, context.Canceled) {
		r.t.Fatalf("call %d: Wait = %v after its ctx ended, want context.Canceled", c.seq, c.err)
	}
	r.settle()
}

// advance moves the clock to at and returns once the limiter is still.
func (r *limiterRig) advance(at time.Time) {
	r.clock.Set(at)
	r.settle()
}

// settle waits until every Wait not returned is in the queue and the head,
// if any, has its timer set: nothing moves until the next event then.
func (r *limiterRig) settle() {
	r.t.Helper()
	still := func() bool {
		r.l.mu.Lock()
		defer r.l.mu.Unlock()
		queued := len(r.l.queue)
		return r.live.Load() == int64(queued) && (queued == 0 || len(r.clock.Pending()) == 1)
	}
	// The Waits that have to move are runnable: yield to them first, and
	// sleep only if they take longer.
	deadline := time.Now().Add(limiterWaitLimit)
	for i := 0; !still(); i++ {
		if i < 100 {
			runtime.Gosched()
			continue
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the limiter did not settle within %v", limiterWaitLimit)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// waiting returns the calls not returned yet; returned, those that have.
func (r *limiterRig) waiting() []*limiterCall {
	var w []*limiterCall
	for _, c := range r.calls {
		select {
		case <-c.done:
		default:
			w = append(w, c)
		}
	}
	return w
}

// takes returns the times of the Waits that returned nil, in order.
func (r *limiterRig) takes() []time.Time {
	var at []time.Time
	for _, c := range r.calls {
		select {
		case <-c.done:
			if c.err == nil {
				at = append(at, c.at)
			}
		default:
		}
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	return at
}

// checkFIFO fails when a waiter took while one that came before it still
// waits.
func (r *limiterRig) checkFIFO() {
	r.t.Helper()
	w := r.waiting()
	if len(w) == 0 {
		return
	}
	for _, c := range r.calls[w[0].seq:] {
		select {
		case <-c.done:
			if c.err == nil {
				r.t.Fatalf("call %d took while call %d, which came first, still waits", c.seq, w[0].seq)
			}
		default:
		}
	}
}

// Waiters come and give up at random beside patient ones, on a clock the
// test moves (never past a timer's deadline): every take goes the moment
// the window allows it, so that the takes keep exactly n per window's
// pace, no window of length per ever holds more than n, waiters go in the
// order they came, and one that gave up took nothing. With times reserved
// at arrival, a waiter behind one that gave up kept its later time and the
// freed slot went unused.
func TestLimiterGiveUpsKeepWindowAndPace(t *testing.T) {
	for seed := uint64(0); seed < 40; seed++ {
		r := rand.New(rand.NewPCG(seed, 1))
		n, per := 1+r.IntN(4), time.Duration(1+r.IntN(10))*time.Second
		patient := 1 + r.IntN(3)
		rig := newLimiterRig(t, n, per)
		waiting := func(patient bool) []*limiterCall {
			var w []*limiterCall
			for _, c := range rig.waiting() {
				if c.patient == patient {
					w = append(w, c)
				}
			}
			return w
		}
		// Patient waiters are always queued: each that took comes back.
		topUp := func() {
			for len(waiting(true)) < patient {
				rig.start(true)
			}
		}
		for step := 0; step < 300; step++ {
			topUp()
			impatient := waiting(false)
			switch k := r.IntN(10); {
			case k < 3 && len(impatient) < 6:
				rig.start(false)
			case k < 6 && len(impatient) > 0:
				rig.giveUp(impatient[r.IntN(len(impatient))])
			default:
				at := rig.clock.Now().Add(time.Duration(1+r.Int64N(int64(per/time.Millisecond))) * time.Millisecond)
				if next, ok := rig.clock.Next(); ok && next.Before(at) {
					at = next
				}
				rig.advance(at)
			}
			rig.checkFIFO()
		}
		topUp() // for the slots the last step freed
		for _, c := range waiting(false) {
			rig.giveUp(c)
		}
		takes := rig.takes()
		for i, at := range takes {
			if i >= n {
				if span := at.Sub(takes[i-n]); span < per {
					t.Fatalf("seed %d (n=%d per=%v): %d takes within %v", seed, n, per, n+1, span)
				}
			}
			if want := limiterEpoch.Add(time.Duration(i/n) * per); !at.Equal(want) {
				t.Fatalf("seed %d (n=%d per=%v): take %d at %v, want %v, when the window allowed it",
					seed, n, per, i, at.Sub(limiterEpoch), want.Sub(limiterEpoch))
			}
		}
		end := rig.clock.Now().Sub(limiterEpoch)
		if want := n * int(end/per+1); len(takes) != want {
			t.Fatalf("seed %d (n=%d per=%v): %d takes in %v, want %d", seed, n, per, len(takes), end, want)
		}
		rig.close()
	}
}

// The window slides: a take after a window's end still counts until per
// after it. A fixed-window counter would let the third waiter go at
// 10.1 s (n at the end of one window, n at the start of the next).
func TestLimiterNoFixedWindow(t *testing.T) {
	rig := newLimiterRig(t, 2, 10*time.Second)
	came := []time.Duration{9 * time.Second, 9500 * time.Millisecond, 10100 * time.Millisecond, 10200 * time.Millisecond}
	for _, at := range came {
		rig.advance(limiterEpoch.Add(at))
		rig.start(true)
	}
	for next, ok := rig.clock.Next(); ok; next, ok = rig.clock.Next() {
		rig.advance(next)
	}
	want := []time.Duration{9 * time.Second, 9500 * time.Millisecond, 19 * time.Second, 19500 * time.Millisecond}
	for i, c := range rig.calls {
		<-c.done
		if c.err != nil || c.at.Sub(limiterEpoch) != want[i] {
			t.Fatalf("waiter %d came at %v: Wait = %v at %v, want nil at %v", i, came[i], c.err, c.at.Sub(limiterEpoch), want[i])
		}
	}
}
