package resockettest_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/coder/websocket"

	"github.com/resocket/resocket/resockettest"
)

// echoOnce dials, says mode and then msg, and reads the echo of msg.
func echoOnce(t *testing.T, url, mode, msg string) {
	t.Helper()
	c, _, err := dial(t, url)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(context.Background(), websocket.MessageText, []byte(mode))
	c.Write(context.Background(), websocket.MessageText, []byte(msg))
	if m, err := read(t, c); m != msg {
		t.Fatalf("echo: %q, %v", m, err)
	}
}

// Recording off keeps nothing but the count; it applies to connections
// that arrive afterwards.
func TestRecordingOff(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	srv.SetDefault(steps(resockettest.ReadMode(), resockettest.Echo()))
	srv.SetRecording(false)
	echoOnce(t, srv.URL, "identify", "x")
	if len(srv.Conns()) != 0 || len(srv.Modes()) != 0 || srv.Accepted() != 1 {
		t.Fatalf("recording off: Conns %d, Modes %q, Accepted %d", len(srv.Conns()), srv.Modes(), srv.Accepted())
	}
	srv.SetRecording(true)
	echoOnce(t, srv.URL, "resume", "y")
	conns := srv.Conns()
	if len(conns) != 1 || conns[0].Index != 2 || !slices.Equal(conns[0].Received(), []string{"resume", "y"}) ||
		!slices.Equal(srv.Modes(), []string{"resume"}) {
		t.Fatalf("recording on: %d conns, Modes %q", len(conns), srv.Modes())
	}
}

// A planner's connections are recorded like any other, and the planner
// may call the server.
func TestPlannerIsRecordedAndMayCallTheServer(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	srv.SetPlanner(func(r *http.Request, index int) resockettest.Script {
		if srv.Accepted() != index {
			return resockettest.Script{Status: http.StatusConflict}
		}
		return steps(resockettest.ReadMode(), resockettest.Echo())
	})
	echoOnce(t, srv.URL, "identify", "a")
	echoOnce(t, srv.URL, "resume", "b")
	if !slices.Equal(srv.Modes(), []string{"identify", "resume"}) || !slices.Equal(srv.Conns()[1].Received(), []string{"resume", "b"}) {
		t.Fatalf("Modes %q", srv.Modes())
	}
}
