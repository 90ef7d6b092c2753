package resocket_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resocket/resocket"
)

// waitAll runs k Waits at once and returns when each returned, sorted.
func waitAll(t *testing.T, l resocket.Limiter, k int) []time.Time {
	t.Helper()
	var mu sync.Mutex
	var at []time.Time
	var wg sync.WaitGroup
	for i := 0; i < k; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if err := l.Wait(ctx); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	return at
}

// checkCumulative fails when more actions returned by some moment than the
// rule allows since start: at most n in each window of length per, so at
// most n×(k+1) by start+k×per+x (x < per). A waiter that wakes late only
// makes this easier to meet, so it holds however loaded the machine is,
// and a token bucket of burst n (2n in the first period) fails it.
func checkCumulative(t *testing.T, start time.Time, at []time.Time, n int, per time.Duration) {
	t.Helper()
	for i, a := range at {
		windows := int(a.Sub(start)/per) + 1
		if i+1 > n*windows {
			t.Fatalf("%d actions by %v after the start, want at most %d (%d per %v)", i+1, a.Sub(start), n*windows, n, per)
		}
	}
}

// At most n in any window: not 2n in the first period, as a token bucket
// of burst n would allow.
func TestLimiterSlidingWindow(t *testing.T) {
	t.Parallel()
	const n, per = 5, 300 * time.Millisecond
	l := resocket.NewLimiter(n, per)
	start := time.Now()
	at := waitAll(t, l, 3*n)
	checkCumulative(t, start, at, n, per)
	if took := at[len(at)-1].Sub(start); took < 2*per*9/10 {
		t.Fatalf("%d actions took %v, want at least 2 windows", 3*n, took)
	}
	if first := at[n-1].Sub(start); first > per/2 {
		t.Fatalf("the first %d actions took %v: they should go at once", n, first)
	}
}

// Thousands of waiters sharing one limiter keep the rule.
func TestLimiterManyWaiters(t *testing.T) {
	t.Parallel()
	const n, per = 500, 100 * time.Millisecond
	start := time.Now()
	at := waitAll(t, resocket.NewLimiter(n, per), 2000)
	checkCumulative(t, start, at, n, per)
}

// A waiter whose ctx ends leaves at once and takes no slot.
func TestLimiterCancelledWaiterTakesNoSlot(t *testing.T) {
	t.Parallel()
	const per = 400 * time.Millisecond
	l := resocket.NewLimiter(1, per)
	start := time.Now()
	if err := l.Wait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want the ctx's deadline", err)
	}
	if left := time.Since(start); left > per/2 {
		t.Fatalf("the cancelled waiter left after %v, not at once", left)
	}
	if err := l.Wait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	// The second action goes one window after the first; had the
	// cancelled waiter kept its slot, it would be two.
	if took := time.Since(start); took < per*9/10 || took > 10*per {
		t.Fatalf("second action after %v, want about %v", took, per)
	}
	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if err := l.Wait(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait on an ended ctx = %v", err)
	}
}

// The measured case: 1 per 200 ms, six waiters that give up 15 ms after
// they come (and come straight back) beside one patient waiter. Each that
// gives up lets those behind it move up, so the patient one is head at
// nearly every slot and takes about 10 times in 2 s; when waiters kept the
// time they reserved at arrival, it took 2. On the real clock, so the
// bound is loose; counts, not durations, and every loop is bounded.
func TestLimiterPatientWaiterMovesUp(t *testing.T) {
	t.Parallel()
	const per, giveUp, run = 200 * time.Millisecond, 15 * time.Millisecond, 2 * time.Second
	l := resocket.NewLimiter(1, per)
	start := time.Now()
	stop := start.Add(run)
	var mu sync.Mutex
	var at []time.Time // every take, in order
	took := func() {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000 && time.Now().Before(stop); j++ {
				ctx, cancel := context.WithTimeout(context.Background(), giveUp)
				if l.Wait(ctx) == nil {
					took()
				}
				cancel()
			}
		}()
	}
	ctx, cancel := context.WithDeadline(context.Background(), stop)
	defer cancel()
	patient := 0
	for ; patient < 100 && l.Wait(ctx) == nil; patient++ {
		took()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	checkCumulative(t, start, at, 1, per)
	if patient < 5 {
		t.Fatalf("the patient waiter took %d times in %v at 1 per %v, want about %d", patient, run, per, run/per)
	}
}

func TestLimiterBadInput(t *testing.T) {
	t.Parallel()
	for _, row := range []struct {
		n    int
		per  time.Duration
		want string
	}{
		{0, time.Second, "n must be at least 1, got 0"},
		{-3, time.Second, "n must be at least 1, got -3"},
		{1, 0, "per must be positive, got 0s"},
		{1, -time.Second, "per must be positive"},
	} {
		l := resocket.NewLimiter(row.n, row.per)
		if err := l.Wait(bounded(t)); err == nil || !strings.Contains(err.Error(), row.want) {
			t.Fatalf("NewLimiter(%d, %v).Wait = %v, want %q", row.n, row.per, err, row.want)
		}
		for name, opt := range map[string]resocket.Option{
			"WithIdentifyLimiter": resocket.WithIdentifyLimiter(l),
			"WithWriteLimiter":    resocket.WithWriteLimiter(l),
		} {
			_, err := resocket.New("ws://127.0.0.1:9/", opt)
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), row.want) ||
				strings.Count(err.Error(), "resocket: ") != 1 {
				t.Fatalf("New with %s(a bad limiter) = %v, want one resocket: prefix, the option and the reason", name, err)
			}
		}
	}
	for name, opt := range map[string]resocket.Option{
		"WithIdentifyLimiter": resocket.WithIdentifyLimiter(nil),
		"WithWriteLimiter":    resocket.WithWriteLimiter(nil),
	} {
		if _, err := resocket.New("ws://127.0.0.1:9/", opt); err == nil || !strings.Contains(err.Error(), name+": limiter is nil") {
			t.Fatalf("New with %s(nil) = %v", name, err)
		}
	}
}
