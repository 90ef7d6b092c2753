// Gateway runs three shards of a Discord-style gateway SDK built on
// resocket's embedding kit, against a local fake gateway that follows the
// real rules, and prints a timeline. The SDK is the package in ./shard: it
// imports nothing from internal/, so it reads, and copies, on its own. The
// fake gateway is internal/gateway, the server's side of the same JSON.
// Run it with
//
//	go run ./examples/gateway
//
// What happens, one step at a time:
//   - the shards identify one at a time, paced by a Limiter per
//     max_concurrency bucket (the gateway refuses an identify that comes
//     too soon), while a resume never waits;
//   - a dropped socket resumes at the session's resume_gateway_url (the
//     only place the gateway accepts op 6);
//   - op 7 resumes, op 9 with d=false identifies again;
//   - a shard whose heartbeats stop being acknowledged is cut as a zombie
//     and resumes;
//   - a burst of sends is paced under the gateway's send limit (4008);
//   - a deploy: a shard closes with 4000 and a new process resumes its
//     session from what it kept;
//   - finally the gateway refuses the intents (4014): that shard stops.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/internal/gateway"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// The demo's rules, scaled down from Discord's (41.25 s heartbeats, one
// identify per 5 s per bucket, 120 sends per 60 s) so that it runs in a
// few seconds.
var rules = gateway.Config{
	Token:             "demo-token",
	HeartbeatInterval: 250 * time.Millisecond,
	MaxConcurrency:    1,
	IdentifyEvery:     250 * time.Millisecond,
	SendLimit:         20,
	SendWindow:        time.Second,
}

const shards = 3

func run() error {
	g, err := gateway.Start(rules)
	if err != nil {
		return err
	}
	defer g.Close()
	t := newTimeline()

	// One identify limiter per max_concurrency bucket, shared by the
	// shards in it, taken by the handshake right before it sends its
	// identify (Session.WaitIdentify): the gateway counts arrivals, and a
	// slow dial or HELLO no longer shifts them. The 10 ms spare is for the
	// microseconds between the send and the arrival.
	buckets := make([]resocket.Limiter, rules.MaxConcurrency)
	for i := range buckets {
		buckets[i] = resocket.NewLimiter(1, rules.IdentifyEvery+10*time.Millisecond)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(id int, resume *shard.Resumable) (*shard.Shard, error) {
		s, err := shard.New(shard.Config{
			URL: g.URL, Token: rules.Token, ID: id, Count: shards, Intents: 513,
			IdentifyLimiter: buckets[id%rules.MaxConcurrency],
			// Keep room under the send limit for the heartbeats (up to 5
			// in a second here, as a beat may come early), the resume, and
			// the skew between sending and arrival: the gateway counts
			// arrivals, and a loaded machine can bunch a few sends up.
			WriteLimiter: resocket.NewLimiter(rules.SendLimit/2, rules.SendWindow),
			Resume:       resume,
			OnDispatch:   func(p shard.Payload) { t.logf(id, "dispatch %s (seq %d)", p.T, p.S) },
			Options: []resocket.Option{
				resocket.WithHeartbeat(0, 0), // the gateway's own heartbeat watches the socket
				resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(50 * time.Millisecond) }),
			},
		})
		if err != nil {
			return nil, err
		}
		t.follow(id, s.Client(), &wg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Run(context.Background()); err != nil {
				t.logf(id, "stopped for good: %v", err)
			}
		}()
		return s, nil
	}
	return scenario(g, t, start)
}

// startFunc starts shard id, resuming the session kept in resume if set.
type startFunc func(id int, resume *shard.Resumable) (*shard.Shard, error)

// scenario plays the gateway's faults against the shards, one at a time.
func scenario(g *gateway.Server, t *timeline, start startFunc) error {
	var s [shards]*shard.Shard
	for id := range s {
		var err error
		if s[id], err = start(id, nil); err != nil {
			return err
		}
	}
	for _, step := range faults(g, t, &s, start) {
		t.logf(-1, "── %s", step.say)
		if err := step.do(); err != nil {
			return fmt.Errorf("%s: %w", step.say, err)
		}
	}
	for _, sh := range s {
		sh.Close()
	}
	return t.summary(g)
}

// step is one fault of the scenario, and the wait for what the shards do
// about it.
type step struct {
	say string
	do  func() error
}

// faults are the scenario's steps, in order; a deploy replaces a shard in s.
func faults(g *gateway.Server, t *timeline, s *[shards]*shard.Shard, start startFunc) []step {
	return []step{
		{"all shards ready", func() error { return t.wait(3, "identify", 0) }},
		{"gateway drops shard 0 without a close frame", func() error { g.Drop(0); return t.wait(1, "resume", 0) }},
		{"gateway sends op 7 to shard 1", func() error { g.RequestReconnect(1); return t.wait(1, "resume", 1) }},
		{"gateway sends op 9 (not resumable) to shard 2", func() error { g.InvalidateSession(2, false); return t.wait(2, "identify", 2) }},
		{"gateway stops acknowledging shard 0's heartbeats", func() error {
			g.SetAck(0, false)
			err := t.wait(1, "zombie", 0)
			g.SetAck(0, true)
			if err == nil {
				err = t.wait(2, "resume", 0)
			}
			return err
		}},
		{"shard 1 sends 40 messages at once", func() error { return burst(s[1], 40) }},
		{"deploy: shard 2 closes with 4000, a new process resumes it", func() error {
			kept := s[2].Suspend()
			g.Dispatch(-1, "MESSAGE_CREATE", map[string]string{"content": "sent during the deploy"})
			var err error
			if s[2], err = start(2, &kept); err != nil {
				return err
			}
			return t.wait(1, "resume", 2)
		}},
		{"gateway refuses shard 1's intents with 4014", func() error {
			g.CloseShard(1, gateway.CloseDisallowedIntents, "disallowed intents")
			return t.wait(1, "closed", 1)
		}},
	}
}

// burst sends n messages as fast as Send allows.
func burst(s *shard.Shard, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := 0; i < n; i++ {
		if err := s.Send(ctx, 3, map[string]int{"i": i}); err != nil {
			return err
		}
	}
	return nil
}

// timeline prints what happens, and lets the scenario wait for it.
type timeline struct {
	start time.Time
	mu    sync.Mutex
	seen  map[string]int // "kind/shard" → count
	cond  *sync.Cond
}

func newTimeline() *timeline {
	t := &timeline{start: time.Now(), seen: map[string]int{}}
	t.cond = sync.NewCond(&t.mu)
	return t
}

func (t *timeline) logf(id int, format string, args ...any) {
	who := "       "
	if id >= 0 {
		who = fmt.Sprintf("shard %d", id)
	}
	fmt.Printf("%6dms  %s  %s\n", time.Since(t.start).Milliseconds(), who, fmt.Sprintf(format, args...))
}

func (t *timeline) count(kind string, id int) {
	t.mu.Lock()
	t.seen[fmt.Sprintf("%s/%d", kind, id)]++
	t.mu.Unlock()
	t.cond.Broadcast()
}

// wait waits until n events of kind were seen on shard id (on all shards
// together for "identify" with id 0 and n = 3), with a deadline.
func (t *timeline) wait(n int, kind string, id int) error {
	deadline := time.Now().Add(10 * time.Second)
	stop := time.AfterFunc(10*time.Second, t.cond.Broadcast)
	defer stop.Stop()
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		got := t.seen[fmt.Sprintf("%s/%d", kind, id)]
		if kind == "identify" && n == shards {
			got = t.seen["identify/0"] + t.seen["identify/1"] + t.seen["identify/2"]
		}
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %d× %s on shard %d within 10s", n, kind, id)
		}
		t.cond.Wait()
	}
}

// follow prints a client's events and counts the ones the scenario waits
// for.
func (t *timeline) follow(id int, c *resocket.Client, wg *sync.WaitGroup) {
	events := c.Events()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for e := range events {
			switch e := e.(type) {
			case resocket.IdentifyPaced:
				t.logf(id, "identify slot after %v", e.Waited.Round(time.Millisecond))
			case resocket.Connected:
				t.logf(id, "open (%v, socket %d)", e.Mode, e.Attempt)
				t.count(map[resocket.Mode]string{resocket.ModeIdentify: "identify", resocket.ModeResume: "resume"}[e.Mode], id)
			case resocket.Disconnected:
				t.logf(id, "closed %d %q: %v (%v)", e.Code, e.Reason, e.Action, e.Err)
				if errors.Is(e.Err, resocket.ErrZombie) {
					t.count("zombie", id)
				}
			case resocket.StateChanged:
				if e.To == resocket.StateClosed {
					t.logf(id, "CLOSED: %v", c.Err())
					t.count("closed", id)
				}
			}
		}
	}()
}

// summary prints what the gateway saw and checks the rules held.
func (t *timeline) summary(g *gateway.Server) error {
	tooSoon, rateLimited := len(g.Records("identify-too-soon")), 0
	for _, r := range g.Records("closed") {
		if r.Detail == fmt.Sprint(int(websocket.StatusCode(gateway.CloseRateLimited))) {
			rateLimited++
		}
	}
	fmt.Printf("\ngateway saw: %d identifies (%d too soon), %d resumes (%d refused), %d heartbeats, %d messages, %d sockets closed for the send limit\n",
		len(g.Records("identify")), tooSoon, len(g.Records("resume")), len(g.Records("resume-refused")),
		len(g.Records("heartbeat")), len(g.Records("message")), rateLimited)
	if tooSoon > 0 || rateLimited > 0 || len(g.Records("resume-refused")) > 0 {
		return errors.New("a gateway rule was broken")
	}
	return nil
}
