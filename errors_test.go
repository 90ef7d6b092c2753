package resocket_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// Every error the client returns has one "resocket: " prefix, once, and
// says what happened in the user's terms.
func TestErrorTextHasOnePrefix(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, err error, want string) {
		t.Helper()
		if err == nil {
			t.Fatal("no error")
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, "resocket: ") || strings.Count(msg, "resocket:") != 1 {
			t.Fatalf("%q: want exactly one resocket: prefix, at the start", msg)
		}
		if !strings.Contains(msg, want) {
			t.Fatalf("%q does not say %q", msg, want)
		}
	}
	t.Run("connect-timeout-after-503", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Status: 503})
		srv.SetDefault(resockettest.Script{Status: 503})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := resocket.Dial(ctx, srv.URL, fast()...)
		check(t, err, "upgrade answered 503")
	})
	t.Run("fatal-close-code", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4014, "disallowed intents")}})
		c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, c)
		check(t, c.Err(), `server closed with 4014 "disallowed intents"`)
		_, _, err = c.Read(bounded(t))
		check(t, err, "4014")
		check(t, c.Write(bounded(t), websocket.MessageText, nil), "4014")
	})
	t.Run("reidentify-loop", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4003, "not authenticated")}})
		c, err := resocket.Dial(bounded(t), srv.URL, fast()...)
		if err == nil {
			waitDone(t, c)
			err = c.Err()
		}
		check(t, err, "re-identify loop")
	})
	t.Run("fatal-upgrade", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Status: 401})
		_, err := resocket.Dial(bounded(t), srv.URL, fast()...)
		check(t, err, "upgrade answered 401")
	})
}
