package resocket_test

import (
	"bytes"
	"log/slog"
	"strings"
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

// A move outside the table is refused: the state stays, nothing is
// published, and the client logs it at Error (what the chaos counts).
func TestTransitionRefusesMovesOutsideTheTable(t *testing.T) {
	var log bytes.Buffer
	c, rec := newRecorded(t, "ws://127.0.0.1:9/", resocket.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	for _, to := range []resocket.State{resocket.StateConnecting, resocket.StateClosed + 1} {
		if ok, _ := resocket.Transition(c, to); ok {
			t.Fatalf("CONNECTING→%v was made", to)
		}
	}
	if _, refused := resocket.Transition(c, resocket.StateConnecting); refused != 3 || c.State() != resocket.StateConnecting {
		t.Fatalf("refused %d, state %v, want 3 and CONNECTING", refused, c.State())
	}
	if !strings.Contains(log.String(), "level=ERROR msg=\"resocket: refused state transition\" url=ws://127.0.0.1:9/ from=CONNECTING to=CONNECTING") {
		t.Fatalf("log: %s", log.String())
	}
	if ok, _ := resocket.Transition(c, resocket.StateClosing); !ok {
		t.Fatal("CONNECTING→CLOSING refused")
	}
	c.Close()
	equal(t, "states published", rec.states(t), []resocket.State{resocket.StateClosing, resocket.StateClosed})
}
