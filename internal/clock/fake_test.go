package clock_test

import (
	"slices"
	"testing"
	"time"

	"github.com/resocket/resocket/internal/clock"
)

func TestFakeFiresInOrderAtEachDeadline(t *testing.T) {
	f := clock.NewFake()
	start := f.Now()
	a, b := f.NewTimer(2*time.Second), f.NewTimer(time.Second)
	mid := f.NewTimer(1500 * time.Millisecond)
	if got := f.Pending(); !slices.Equal(got, []time.Duration{time.Second, 1500 * time.Millisecond, 2 * time.Second}) {
		t.Fatalf("Pending %v", got)
	}
	f.Advance(time.Second - time.Nanosecond)
	select {
	case <-b.C():
		t.Fatal("fired a nanosecond early")
	default:
	}
	f.Advance(3 * time.Second)
	if at := <-b.C(); !at.Equal(start.Add(time.Second)) {
		t.Fatalf("b fired at %v, want its deadline", at.Sub(start))
	}
	if at := <-a.C(); !at.Equal(start.Add(2 * time.Second)) {
		t.Fatalf("a fired at %v, want its deadline", at.Sub(start))
	}
	if at := <-mid.C(); !at.Equal(start.Add(1500 * time.Millisecond)) {
		t.Fatalf("mid fired at %v, want its deadline", at.Sub(start))
	}
	if len(f.Pending()) != 0 || !f.Now().Equal(start.Add(4*time.Second-time.Nanosecond)) {
		t.Fatalf("after: pending %v, now +%v", f.Pending(), f.Now().Sub(start))
	}
}

func TestFakeStopAndResetDropAStaleValue(t *testing.T) {
	f := clock.NewFake()
	tm := f.NewTimer(time.Second)
	f.Advance(time.Second) // fired, not received
	if tm.Stop() {
		t.Fatal("Stop of a fired timer reported true")
	}
	select {
	case <-tm.C():
		t.Fatal("a stale value after Stop")
	default:
	}
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a stopped timer reported it armed")
	}
	if !tm.Reset(0) { // fires at once, as a real timer does
		t.Fatal("Reset of an armed timer reported it unarmed")
	}
	select {
	case <-tm.C():
	default:
		t.Fatal("Reset(0) did not fire")
	}
}

func TestFakeWaitForGivesUp(t *testing.T) {
	f := clock.NewFake()
	if err := f.WaitForTimers(1, 20*time.Millisecond); err == nil {
		t.Fatal("WaitForTimers returned nil with no timer")
	}
	go f.NewTimer(time.Minute)
	if err := f.WaitForTimers(1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if f.Arms() != 1 {
		t.Fatalf("Arms %d, want 1", f.Arms())
	}
}
