package resocket

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// The reservations themselves, on a clock the test moves: whatever the
// order of arrivals and give-ups, any n+1 kept reservations span at least
// per. A fixed-window counter fails this (n at the end of one window, n at
// the start of the next).
func TestLimiterReservationsKeepTheWindow(t *testing.T) {
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for seed := uint64(0); seed < 200; seed++ {
		r := rand.New(rand.NewPCG(seed, 1))
		n, per := 1+r.IntN(5), time.Duration(1+r.IntN(10))*time.Second
		now := epoch
		l := NewLimiter(n, per).(*windowLimiter)
		l.now = func() time.Time { return now }
		var kept []time.Time
		for op := 0; op < 300; op++ {
			now = now.Add(time.Duration(r.IntN(int(per/time.Millisecond)/n+1)) * time.Millisecond)
			at := l.reserve()
			if at.Before(now) {
				t.Fatalf("seed %d: reserved %v, before now %v", seed, at, now)
			}
			if r.IntN(4) == 0 && at.After(now) { // the waiter gives up before its turn
				l.cancel(at)
				continue
			}
			kept = append(kept, at)
		}
		sort.Slice(kept, func(i, j int) bool { return kept[i].Before(kept[j]) })
		for i := n; i < len(kept); i++ {
			if span := kept[i].Sub(kept[i-n]); span < per {
				t.Fatalf("seed %d (n=%d per=%v): %d actions within %v", seed, n, per, n+1, span)
			}
		}
	}
}

func TestLimiterNoFixedWindow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLimiter(2, 10*time.Second).(*windowLimiter)
	l.now = func() time.Time { return now }
	for _, step := range []struct {
		at, want time.Duration
	}{
		{9 * time.Second, 9 * time.Second},
		{9500 * time.Millisecond, 9500 * time.Millisecond},
		{10100 * time.Millisecond, 19 * time.Second}, // a fixed window would let it go at 10.1 s
		{10200 * time.Millisecond, 19500 * time.Millisecond},
	} {
		now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(step.at)
		if got := l.reserve().Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); got != step.want {
			t.Fatalf("at %v: reserved %v, want %v", step.at, got, step.want)
		}
	}
}
