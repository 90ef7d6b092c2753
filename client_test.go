package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

func TestConnectContextAndTwice(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	c, err := resocket.New(srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	cancel() // bounds only the first connection
	if err := c.Connect(bounded(t)); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("second Connect = %v", err)
	}
	if err := c.Write(bounded(t), websocket.MessageText, []byte("after ctx")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); got != "after ctx" {
		t.Fatalf("echo %q", got)
	}
}

// TestConnectIsNilIffASocketOpened: the first socket opens and the server
// closes it with a fatal code at once. Connect must say nil, every time:
// a socket reached OPEN.
func TestConnectIsNilIffASocketOpened(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(websocket.StatusUnsupportedData, "")}})
	for round := 0; round < 200; round++ {
		c, err := resocket.New(srv.URL, fast()...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		err = c.Connect(ctx)
		cancel()
		opened := c.Stats().Opens
		c.Close()
		if (err == nil) != (opened > 0) {
			t.Fatalf("round %d: Connect returned %v with %d sockets opened", round, err, opened)
		}
	}
}

// TestErrIsFinalAtTheClosedEvent: whoever receives StateChanged{To:
// CLOSED} finds Err and State already final, for every way a client ends.
func TestErrIsFinalAtTheClosedEvent(t *testing.T) {
	close4003 := resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4003, "not authenticated")}}
	rows := []struct {
		name   string
		script resockettest.Script
		end    func(c *resocket.Client)           // how the client is ended, once it is connected or failing
		ctx    time.Duration                      // Connect's ctx; 0 for waitLimit
		check  func(t *testing.T, err error) bool // what Err must be
		url    func(t *testing.T, srv *resockettest.Server) string
	}{
		{name: "Close", end: func(c *resocket.Client) { c.Close() },
			check: func(t *testing.T, err error) bool { return err == resocket.ErrClosed }},
		{name: "CloseWith", end: func(c *resocket.Client) { c.CloseWith(4000, "restarting") },
			check: func(t *testing.T, err error) bool { return err == resocket.ErrClosed }},
		{name: "fatal close code", script: resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4004, "authentication failed")}},
			check: func(t *testing.T, err error) bool { return websocket.CloseStatus(err) == 4004 }},
		{name: "fatal upgrade status", script: resockettest.Script{Status: 401},
			check: func(t *testing.T, err error) bool {
				var ue *resocket.UpgradeError
				return errors.As(err, &ue) && ue.Status == 401
			}},
		{name: "Connect's ctx", ctx: 20 * time.Millisecond, url: func(t *testing.T, _ *resockettest.Server) string { return refusedURL(t) },
			check: func(t *testing.T, err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "loop guard", script: close4003,
			check: func(t *testing.T, err error) bool { return errors.Is(err, resocket.ErrReidentifyLoop) }},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			srv := resockettest.NewServer(t)
			srv.SetDefault(row.script)
			url := srv.URL
			if row.url != nil {
				url = row.url(t, srv)
			}
			for round := 0; round < 30; round++ {
				c, err := resocket.New(url, fast()...)
				if err != nil {
					t.Fatal(err)
				}
				atClosed := make(chan error, 1)
				go func() {
					for e := range c.Events() {
						if sc, ok := e.(resocket.StateChanged); ok && sc.To == resocket.StateClosed {
							err := c.Err()
							if err == nil || c.State() != resocket.StateClosed {
								err = fmt.Errorf("Err %v, State %v at the CLOSED event", err, c.State())
							}
							atClosed <- err
						}
					}
				}()
				d := row.ctx
				if d == 0 {
					d = waitLimit
				}
				ctx, cancel := context.WithTimeout(context.Background(), d)
				c.Connect(ctx)
				cancel()
				if row.end != nil {
					row.end(c)
				}
				select {
				case err := <-atClosed:
					if !row.check(t, err) {
						t.Fatalf("round %d: Err at the CLOSED event: %v", round, err)
					}
				case <-time.After(waitLimit):
					t.Fatalf("round %d: no CLOSED event", round)
				}
				c.Close()
			}
		})
	}
}

// Stats counts the messages and bytes each way, on both delivery paths,
// and the time Writes waited on the write limiter.
func TestStatsCountMessagesAndBytes(t *testing.T) {
	t.Parallel()
	for _, handler := range []bool{false, true} {
		t.Run(fmt.Sprintf("handler=%v", handler), func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Echo()}})
			var k collector
			opts := fast(resocket.WithWriteLimiter(resocket.NewLimiter(1, 200*time.Millisecond)))
			if handler {
				opts = append(opts, resocket.WithOnMessage(k.handle))
			}
			c, _ := newRecorded(t, srv.URL, opts...)
			if err := c.Connect(bounded(t)); err != nil {
				t.Fatal(err)
			}
			msgs := []string{"a", "bb", "cccc"}
			for i, m := range msgs {
				if err := c.Write(bounded(t), websocket.MessageText, []byte(m)); err != nil {
					t.Fatal(err)
				}
				if handler {
					k.wait(t, i+1)
				} else if got := readText(t, c); got != m {
					t.Fatalf("echo %q, want %q", got, m)
				}
			}
			s := c.Stats()
			if s.MessagesOut != 3 || s.BytesOut != 7 || s.MessagesIn != 3 || s.BytesIn != 7 {
				t.Fatalf("stats %+v, want 3 messages and 7 bytes each way", s)
			}
			// The second and third writes each waited for the window:
			// about 400 ms in all (a lower bound only; the machine may be slow).
			if s.WriteLimiterWaited < 350*time.Millisecond {
				t.Fatalf("WriteLimiterWaited %v, want about 400ms", s.WriteLimiterWaited)
			}
		})
	}
}
