package shard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/goleak"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/internal/gateway"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitLimit = 10 * time.Second

var testRules = gateway.Config{
	Token:             "token",
	HeartbeatInterval: time.Second,
	MaxConcurrency:    1,
	IdentifyEvery:     5 * time.Millisecond,
	SendLimit:         1000,
	SendWindow:        time.Second,
}

// harness runs one shard against a fake gateway. Its OnDispatch can be
// held (hold), so that messages pile up in the read queue behind it.
type harness struct {
	t   *testing.T
	g   *gateway.Server
	sh  *shard.Shard
	run chan error

	mu        sync.Mutex
	cond      *sync.Cond
	delivered []shard.Payload
	gate      chan struct{} // while non-nil, OnDispatch waits on it
	holding   bool          // OnDispatch is waiting
	opens     []resocket.Connected
}

func newHarness(t *testing.T, opts ...resocket.Option) *harness {
	t.Helper()
	g, err := gateway.Start(testRules)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, g: g, run: make(chan error, 1)}
	h.cond = sync.NewCond(&h.mu)
	sh, err := shard.New(shard.Config{
		URL: g.URL, Token: testRules.Token, Count: 1,
		// Twenty times the gateway's rule: the gateway counts arrivals, and
		// on a loaded machine an identify sent 10 ms after the last one
		// arrived within 5 ms of it and was refused (op 9), a second
		// re-identify the tests did not ask for.
		IdentifyLimiter: resocket.NewLimiter(1, 20*testRules.IdentifyEvery),
		OnDispatch:      h.onDispatch,
		Options: append([]resocket.Option{
			resocket.WithHeartbeat(0, 0),
			resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
			resocket.WithReadQueue(1000),
		}, opts...),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.sh = sh
	events := sh.Client().Events()
	go func() {
		for e := range events {
			if c, ok := e.(resocket.Connected); ok {
				h.mu.Lock()
				h.opens = append(h.opens, c)
				h.mu.Unlock()
				h.cond.Broadcast()
			}
		}
	}()
	go func() { h.run <- sh.Run(context.Background()) }()
	t.Cleanup(func() {
		h.release()
		sh.Close()
		if err := <-h.run; err != nil {
			t.Errorf("Run: %v", err)
		}
		g.Close()
	})
	h.waitFor("the first READY", func() bool { return len(h.opens) == 1 && len(h.delivered) == 1 })
	return h
}

func (h *harness) onDispatch(p shard.Payload) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.gate != nil && p.T != "READY" && p.T != "RESUMED" { // the handshake's own are never held
		h.holding = true
		h.cond.Broadcast()
		gate := h.gate
		h.mu.Unlock()
		<-gate
		h.mu.Lock()
	}
	h.holding = false
	h.delivered = append(h.delivered, p)
	h.cond.Broadcast()
}

// hold makes the next dispatch wait in OnDispatch until release, and
// waits until one does.
func (h *harness) hold(trigger func()) {
	h.mu.Lock()
	h.gate = make(chan struct{})
	h.mu.Unlock()
	trigger()
	h.waitFor("OnDispatch to be held", func() bool { return h.holding })
}

func (h *harness) release() {
	h.mu.Lock()
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
	h.mu.Unlock()
}

// waitFor waits, with h.mu held while it checks, until cond holds.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	stop := time.AfterFunc(waitLimit, h.cond.Broadcast)
	defer stop.Stop()
	deadline := time.Now().Add(waitLimit)
	h.mu.Lock()
	defer h.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("no %s within %v (opens %v, %d dispatches delivered)", what, waitLimit, h.opens, len(h.delivered))
		}
		h.cond.Wait()
	}
}

func (h *harness) deliveredWith(key string) int {
	n := 0
	for _, p := range h.delivered {
		var d map[string]string
		if json.Unmarshal(p.D, &d) == nil && d[key] != "" {
			n++
		}
	}
	return n
}

// TestOldSessionDispatchesDoNotAdvanceTheNewSession: dispatches of a
// session still queued for Run when the gateway ends it (4009) and the
// shard identifies again must not raise the new session's sequence, or
// the new session's dispatches look already seen.
func TestOldSessionDispatchesDoNotAdvanceTheNewSession(t *testing.T) {
	h := newHarness(t)
	h.hold(func() {
		for i := 0; i < 20; i++ {
			h.g.Dispatch(0, "OLD", map[string]string{"old": fmt.Sprint(i)})
		}
	})
	h.g.CloseShard(0, 4009, "session timed out")
	h.waitFor("a new session", func() bool { return len(h.opens) == 2 && h.opens[1].Mode == resocket.ModeIdentify })
	for i := 0; i < 10; i++ {
		h.g.Dispatch(0, "NEW", map[string]string{"new": fmt.Sprint(i)})
	}
	h.release()
	h.waitFor("10 new-session dispatches", func() bool { return h.deliveredWith("new") == 10 })
	h.mu.Lock()
	defer h.mu.Unlock()
	if n := h.deliveredWith("old"); n != 20 {
		t.Fatalf("%d of the old session's 20 dispatches delivered", n)
	}
}

// TestQueuedReconnectDoesNotCutTheResumedSocket: an op 7 still queued when
// its socket drops is handled after the shard resumed on the next socket;
// it must not cut that one.
func TestQueuedReconnectDoesNotCutTheResumedSocket(t *testing.T) {
	h := newHarness(t)
	h.hold(func() {
		h.g.Dispatch(0, "BEFORE", map[string]string{"before": "1"})
		h.g.RequestReconnect(0)
	})
	time.Sleep(20 * time.Millisecond) // let op 7 reach the queue behind the held dispatch
	h.g.Drop(0)
	h.waitFor("the resume", func() bool { return len(h.opens) == 2 && h.opens[1].Mode == resocket.ModeResume })
	h.release()
	h.g.Dispatch(0, "AFTER", map[string]string{"after": "1"}) // handled after the stale op 7
	h.waitFor("the dispatch after op 7", func() bool { return h.deliveredWith("after") == 1 })
	// A Reconnect acts at once, but is carried out by the client's own
	// goroutine: give a wrong one time to show (this can only miss a
	// fault on a slow machine, never invent one).
	time.Sleep(100 * time.Millisecond)
	if st := h.sh.Client().Stats(); st.Opens != 2 || st.Disconnects != 1 {
		t.Fatalf("%d opens, %d disconnects, want 2 and 1: the stale op 7 cut the resumed socket", st.Opens, st.Disconnects)
	}
}

// TestInvalidSessionAndItsCloseAreOneVerdict: op 9 (not resumable) and a
// 4009 close right behind it are one end of one socket: one re-identify,
// never two (two in a row would trip the loop guard).
func TestInvalidSessionAndItsCloseAreOneVerdict(t *testing.T) {
	const rounds = 40
	h := newHarness(t, resocket.WithStableAfter(time.Millisecond))
	for round := 1; round <= rounds; round++ {
		time.Sleep(2 * time.Millisecond) // the socket is stable: the loop guard starts again
		h.g.InvalidateSession(0, false)
		h.g.CloseShard(0, 4009, "session timed out")
		h.waitFor(fmt.Sprintf("identify #%d", round+1), func() bool { return len(h.opens) == round+1 })
	}
	st := h.sh.Client().Stats()
	if st.Disconnects != rounds || h.sh.Client().Err() != nil {
		t.Fatalf("%d disconnects for %d sockets ended, Err %v", st.Disconnects, rounds, h.sh.Client().Err())
	}
}
