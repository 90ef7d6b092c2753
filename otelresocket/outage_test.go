package otelresocket_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
	"go.opentelemetry.io/otel/attribute"
)

// outage is one client taken through a scripted life:
//
//	#1 identify: OPEN, a message each way, then a reset (1006, retry)
//	#2 resume:   429 with Retry-After: 1 (retry), no mode recorded
//	#3 resume:   upgraded, closed with 4009 in the handshake (re-identify)
//	#4 identify: OPEN, then 1001 (retry)
//	#5 resume:   OPEN, then 4004 (fatal): CLOSED
type outage struct {
	tel   *telemetry
	c     *resocket.Client
	log   *eventLog
	stats resocket.Stats
}

var shard = attribute.Int("shard", 7)

func runOutage(t *testing.T) *outage {
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: steps(resockettest.EchoN(1), resockettest.Read(1), resockettest.Reset())},
		resockettest.Script{Status: http.StatusTooManyRequests, Header: http.Header{"Retry-After": {"1"}}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.ReadMode(), resockettest.Close(4009, "session timed out")}},
		resockettest.Script{Steps: steps(resockettest.Close(websocket.StatusGoingAway, "restarting"))},
		resockettest.Script{Steps: steps(resockettest.Close(4004, "authentication failed"))},
	)
	o := &outage{tel: newTelemetry(t)}
	c, err := resocket.New(srv.URL,
		resocket.WithHandshake(handshake),
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) }),
		resocket.WithHeartbeat(20*time.Millisecond, waitFor),
		resocket.WithConnectTimeout(waitFor),
		resocket.WithIdentifyLimiter(resocket.NewLimiter(1, 10*time.Millisecond)),
		resocket.WithWriteLimiter(resocket.NewLimiter(1, 300*time.Millisecond)),
		resocket.WithEventBuffer(1), // Events() is never read: all but its last event are dropped
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	o.c, o.log = c, record(c)
	stop := o.tel.instrumentation(t).Instrument(c, shard)
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	o.log.awaitRTT(t)
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != "ping" {
		t.Fatalf("Read: %q, %v", b, err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("done")); err != nil { // waits on the write limiter
		t.Fatalf("Write: %v", err)
	}
	closedOn(t, c)
	stop() // waits for the instrumentation to let go of c
	o.log.wait(t)
	o.stats = c.Stats()
	if got, want := srv.Modes(), []string{"identify", "", "resume", "identify", "resume"}; !slices.Equal(got[:min(len(got), 5)], want) {
		t.Fatalf("server saw modes %q, want %q", got, want)
	}
	return o
}

func TestScriptedOutage(t *testing.T) {
	o := runOutage(t)
	t.Run("metrics", func(t *testing.T) { checkOutageMetrics(t, o) })
	t.Run("spans", func(t *testing.T) { checkOutageSpans(t, o) })
}

func checkOutageMetrics(t *testing.T, o *outage) {
	if o.stats.Attempts != 5 || o.stats.Disconnects != 5 {
		t.Fatalf("Stats: %+v, want 5 attempts, 5 disconnects", o.stats)
	}
	ms := o.tel.metrics(t)

	attempts, mono := sums[int64](t, ms, "resocket.client.attempts")
	equal(t, "attempts", attempts, map[string]int64{
		set(shard, mode("identify"), outcome("open")): 2,
		set(shard, mode("resume"), outcome("failed")): 2,
		set(shard, mode("resume"), outcome("open")):   1,
	})
	if !mono {
		t.Error("attempts: not monotonic")
	}
	disconnects, _ := sums[int64](t, ms, "resocket.client.disconnects")
	equal(t, "disconnects", disconnects, map[string]int64{
		disconnect(1006, 0, "retry", true):       1,
		disconnect(0, 429, "retry", false):       1,
		disconnect(4009, 0, "reidentify", false): 1,
		disconnect(1001, 0, "retry", true):       1,
		disconnect(4004, 0, "fatal", true):       1,
	})
	checkOutageHistograms(t, o, ms)
	checkOutageObservables(t, o, ms)
}

func checkOutageHistograms(t *testing.T, o *outage, ms metricsByName) {
	t.Helper()
	reconnect := histograms(t, ms, "resocket.client.reconnect.duration")
	if len(reconnect) != 2 {
		t.Fatalf("reconnect.duration: %d points, want 2: %v", len(reconnect), reconnect)
	}
	// #1's end to #4's OPEN holds #2's Retry-After of 1 s.
	if p := reconnect[set(shard, mode("identify"))]; p.Count != 1 || p.Sum < 1 || p.Sum > waitFor.Seconds() {
		t.Errorf("reconnect.duration, identify: count %d, sum %v s; want 1, at least 1 s", p.Count, p.Sum)
	}
	if p := reconnect[set(shard, mode("resume"))]; p.Count != 1 || p.Sum <= 0 || p.Sum > waitFor.Seconds() {
		t.Errorf("reconnect.duration, resume: count %d, sum %v s; want 1", p.Count, p.Sum)
	}
	rtt := histograms(t, ms, "resocket.client.heartbeat.rtt")
	if p, n := rtt[set(shard)], o.log.count(isRTT); len(rtt) != 1 || n < 1 || p.Count != uint64(n) {
		t.Errorf("heartbeat.rtt: %d points, count %d; want 1 point, count %d (the HeartbeatRTT events, at least 1)", len(rtt), p.Count, n)
	}
	wait := histograms(t, ms, "resocket.client.identify.wait")
	if p := wait[set(shard)]; len(wait) != 1 || p.Count != 2 {
		t.Errorf("identify.wait: %d points, count %d; want 1 point, count 2 (#1 and #4)", len(wait), p.Count)
	}
	for name, h := range map[string]map[string]histogramPoint{"reconnect.duration": reconnect, "heartbeat.rtt": rtt, "identify.wait": wait} {
		for _, p := range h {
			if !slices.Equal(p.Bounds, wantBuckets) {
				t.Errorf("%s: buckets %v, want %v", name, p.Bounds, wantBuckets)
			}
		}
	}
}

func checkOutageObservables(t *testing.T, o *outage, ms metricsByName) {
	t.Helper()
	in, out := set(shard, direction("in")), set(shard, direction("out"))
	messages, mono := sums[int64](t, ms, "resocket.client.messages")
	equal(t, "messages", messages, map[string]int64{in: 1, out: 2})
	if !mono || o.stats.MessagesIn != 1 || o.stats.MessagesOut != 2 {
		t.Errorf("messages: monotonic %v, Stats in %d out %d", mono, o.stats.MessagesIn, o.stats.MessagesOut)
	}
	bytes, _ := sums[int64](t, ms, "resocket.client.bytes")
	equal(t, "bytes", bytes, map[string]int64{in: 4, out: 8})
	waited, mono := sums[float64](t, ms, "resocket.client.write_limiter.wait")
	if w := o.stats.WriteLimiterWaited.Seconds(); !mono || len(waited) != 1 || waited[set(shard)] != w || w <= 0 {
		t.Errorf("write_limiter.wait: %v (monotonic %v), want {shard=7: %v}, more than 0", waited, mono, w)
	}
	// Events(), a buffer of 1 never read, kept only the terminal event.
	all := int64(o.log.count(func(resocket.Event) bool { return true }))
	dropped, _ := sums[int64](t, ms, "resocket.client.events.dropped")
	equal(t, "events.dropped", dropped, map[string]int64{set(shard): all - 1})
	if int64(o.stats.EventsDropped) != all-1 {
		t.Errorf("Stats().EventsDropped = %d, want %d", o.stats.EventsDropped, all-1)
	}
	// The client left the callback when it closed: no client in any state.
	state, mono := sums[int64](t, ms, "resocket.client.state")
	equal(t, "state", state, map[string]int64{
		set(shard, stateKV("connecting")): 0, set(shard, stateKV("open")): 0,
		set(shard, stateKV("closing")): 0, set(shard, stateKV("closed")): 0,
	})
	if mono {
		t.Error("state: monotonic, want an UpDownCounter")
	}
}
