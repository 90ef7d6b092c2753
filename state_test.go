package resocket_test

import (
	"testing"

	"github.com/resocket/resocket"
)

// Every pair of states, allowed or refused, as DESIGN's table says.
func TestTransitionTable(t *testing.T) {
	states := []resocket.State{resocket.StateConnecting, resocket.StateOpen, resocket.StateClosing, resocket.StateClosed}
	allowed := map[[2]resocket.State]bool{
		{resocket.StateConnecting, resocket.StateOpen}:    true,
		{resocket.StateOpen, resocket.StateConnecting}:    true,
		{resocket.StateConnecting, resocket.StateClosing}: true,
		{resocket.StateOpen, resocket.StateClosing}:       true,
		{resocket.StateConnecting, resocket.StateClosed}:  true,
		{resocket.StateClosing, resocket.StateClosed}:     true,
	}
	for _, from := range states {
		for _, to := range states {
			want := allowed[[2]resocket.State{from, to}]
			if got := resocket.TransitionAllowed(from, to); got != want {
				t.Errorf("%v→%v allowed = %v, want %v", from, to, got, want)
			}
		}
	}
	for _, s := range []resocket.State{-1, 4} {
		for _, o := range states {
			if resocket.TransitionAllowed(s, o) || resocket.TransitionAllowed(o, s) {
				t.Errorf("transition with invalid state %v allowed", s)
			}
		}
	}
}

func TestStateStrings(t *testing.T) {
	for s, want := range map[resocket.State]string{
		resocket.StateConnecting: "CONNECTING", resocket.StateOpen: "OPEN",
		resocket.StateClosing: "CLOSING", resocket.StateClosed: "CLOSED", 7: "State(7)",
	} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), want)
		}
	}
}
