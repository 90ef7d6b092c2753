package otelresocket_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// newClient makes a client of srv with the test handshake, closed when
// the test ends.
func newClient(t *testing.T, url string, opts ...resocket.Option) *resocket.Client {
	t.Helper()
	opts = append([]resocket.Option{resocket.WithHandshake(handshake), resocket.WithConnectTimeout(waitFor)}, opts...)
	c, err := resocket.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// connectAndEcho connects c and sends one message, read back.
func connectAndEcho(t *testing.T, c *resocket.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatalf("Read: %v", err)
	}
}

// states returns the state gauge of shard s: connecting, open, closing,
// closed.
func states(t *testing.T, tel *telemetry, s int) [4]int64 {
	t.Helper()
	points, _ := sums[int64](t, tel.metrics(t), "resocket.client.state")
	var out [4]int64
	for i, name := range []string{"connecting", "open", "closing", "closed"} {
		out[i] = points[set(attribute.Int("shard", s), stateKV(name))]
	}
	return out
}

func messagesOut(t *testing.T, tel *telemetry, s int) int64 {
	t.Helper()
	points, _ := sums[int64](t, tel.metrics(t), "resocket.client.messages")
	return points[set(attribute.Int("shard", s), direction("out"))]
}

func TestManyClientsOneInstrumentation(t *testing.T) {
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: steps(resockettest.Echo())})
	tel := newTelemetry(t)
	in := tel.instrumentation(t)

	var clients [2][3]*resocket.Client
	var stops [2][3]func()
	for s := range clients {
		for i := range clients[s] {
			clients[s][i] = newClient(t, srv.URL)
			stops[s][i] = in.Instrument(clients[s][i], attribute.Int("shard", s))
			connectAndEcho(t, clients[s][i])
		}
	}
	idle := newClient(t, srv.URL) // never connected: CONNECTING
	stopIdle := in.Instrument(idle, attribute.Int("shard", 1))

	if got := states(t, tel, 0); got != [4]int64{0, 3, 0, 0} {
		t.Errorf("shard 0 states %v, want 3 open", got)
	}
	if got := states(t, tel, 1); got != [4]int64{1, 3, 0, 0} {
		t.Errorf("shard 1 states %v, want 1 connecting, 3 open", got)
	}

	// stop unregisters before it returns; the counts stay in the sums.
	stops[0][0]()
	stops[0][0]()
	if got := states(t, tel, 0); got != [4]int64{0, 2, 0, 0} {
		t.Errorf("after stop: shard 0 states %v, want 2 open", got)
	}
	if got := messagesOut(t, tel, 0); got != 3 {
		t.Errorf("after stop: shard 0 messages out %d, want 3", got)
	}

	// A CLOSED client is counted as closed until stop.
	clients[1][0].Close()
	idle.Close()
	eventually(t, "shard 1 at 2 open clients and 2 closed", func() bool {
		return states(t, tel, 1) == [4]int64{0, 2, 0, 2}
	})
	if got := messagesOut(t, tel, 1); got != 3 {
		t.Errorf("after CLOSED: shard 1 messages out %d, want 3", got)
	}
	stops[1][0]() // after CLOSED: returns at once
	stopIdle()
	if got := states(t, tel, 1); got != [4]int64{0, 2, 0, 0} {
		t.Errorf("after stop: shard 1 states %v, want 2 open", got)
	}
	if got := messagesOut(t, tel, 1); got != 3 {
		t.Errorf("after stop: shard 1 messages out %d, want 3", got)
	}
}

// TestStopEndsOpenSpans: stop in the middle of the first connection
// ends the spans it left open, with no outcome.
func TestStopEndsOpenSpans(t *testing.T) {
	tel := newTelemetry(t)
	// The Disconnected reached the instrumentation's channel too, which
	// stop drains before it returns.
	c, stop, connected := inTheWait[resocket.Disconnected](t, tel)
	stop()
	if started, ended := len(tel.spans.Started()), len(tel.spans.Ended()); started != 2 || ended != 2 {
		t.Errorf("%d spans started, %d ended; want 2 and 2", started, ended)
	}
	for _, s := range tel.spans.Ended() {
		if s.Name() == "resocket.connect" && len(s.Attributes()) != 0 {
			t.Errorf("connect span after stop: attributes %v, want none", s.Attributes())
		}
	}
	c.Close()
	<-connected
}

// TestInstrumentAClosedClient: a client instrumented after it closed is
// measured by nothing but its counters, and lets go at once.
func TestInstrumentAClosedClient(t *testing.T) {
	tel := newTelemetry(t)
	c := newClient(t, "ws://127.0.0.1:1/")
	c.Close()
	stop := tel.instrumentation(t).Instrument(c, shard)
	if points, _ := sums[int64](t, tel.metrics(t), "resocket.client.state"); points[set(shard, stateKV("closed"))] != 1 {
		t.Errorf("a CLOSED client: states %v, want it counted as closed", points)
	}
	stop()
	if points, _ := sums[int64](t, tel.metrics(t), "resocket.client.state"); points[set(shard, stateKV("closed"))] != 0 {
		t.Errorf("after stop: states %v, want the client gone", points)
	}
	if n := len(tel.spans.Started()); n != 0 {
		t.Errorf("%d spans for a closed client, want 0", n)
	}
}

// TestCloseIsNoError: a Close the program asked for, mid-connect, ends
// the open spans with outcome closed and no error status.
func TestCloseIsNoError(t *testing.T) {
	tel := newTelemetry(t)
	c, stop, connected := inTheWait[resocket.Retrying](t, tel)
	defer stop()
	c.Close()
	<-connected
	stop()
	var found bool
	for _, s := range tel.spans.Ended() {
		if s.Name() != "resocket.connect" {
			continue
		}
		found = true
		if s.Status().Code != codes.Unset || attrsOf(s)["resocket.outcome"].AsString() != "closed" {
			t.Errorf("connect span after Close: status %v, attributes %v; want Unset and outcome closed", s.Status(), s.Attributes())
		}
	}
	if !found {
		t.Error("no resocket.connect span")
	}
}

// inTheWait starts an instrumented client whose first attempt is refused
// with a 503 and whose retry waits an hour, and returns once that attempt
// published its E: the client, the instrumentation's stop, and Connect's
// result.
func inTheWait[E resocket.Event](t *testing.T, tel *telemetry) (*resocket.Client, func(), <-chan error) {
	t.Helper()
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Status: http.StatusServiceUnavailable})
	c := newClient(t, srv.URL,
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(time.Hour) }))
	stop := tel.instrumentation(t).Instrument(c)
	events, _ := c.Subscribe(64)
	connected := make(chan error, 1)
	go func() { connected <- c.Connect(context.Background()) }()
	var e E
	await(t, events, fmt.Sprintf("the first attempt's %T", e), func(e resocket.Event) bool {
		_, ok := e.(E)
		return ok
	})
	return c, stop, connected
}

// TestReconnectInTheWait: a Reconnect made while the client waits to
// retry ends no attempt (its Disconnected has Attempt 0): it counts as a
// disconnect but not as a failed attempt, and the outage's span goes on
// over the attempt it brings forward.
func TestReconnectInTheWait(t *testing.T) {
	tel := newTelemetry(t)
	c, stop, connected := inTheWait[resocket.Retrying](t, tel)
	events, _ := c.Subscribe(64)
	if err := c.Reconnect(4000, "now", resocket.ActionRetry); err != nil {
		t.Fatal(err)
	}
	await(t, events, "attempt 2's Retrying", func(e resocket.Event) bool {
		r, ok := e.(resocket.Retrying)
		return ok && r.Attempt == 3
	})
	stop()
	c.Close()
	<-connected
	ms := tel.metrics(t)
	attempts, _ := sums[int64](t, ms, "resocket.client.attempts")
	equal(t, "attempts", attempts, map[string]int64{set(mode("identify"), outcome("failed")): 2})
	disconnects, _ := sums[int64](t, ms, "resocket.client.disconnects")
	equal(t, "disconnects", disconnects, map[string]int64{
		set(attribute.Int("websocket.close_code", 0), attribute.Int("http.response.status_code", 503),
			attribute.String("resocket.action", "retry"), attribute.Bool("resocket.opened", false)): 2,
		set(attribute.Int("websocket.close_code", 4000), attribute.Int("http.response.status_code", 0),
			attribute.String("resocket.action", "retry"), attribute.Bool("resocket.opened", false)): 1,
	})
	var outages []trace.SpanID
	parents := map[trace.SpanID]int{}
	for _, s := range tel.spans.Ended() {
		switch s.Name() {
		case "resocket.connect", "resocket.reconnect":
			outages = append(outages, s.SpanContext().SpanID())
		case "resocket.attempt":
			parents[s.Parent().SpanID()]++
		}
	}
	if len(outages) != 1 || parents[outages[0]] != 2 {
		t.Errorf("outage spans %v, attempts by parent %v; want one outage over both attempts", outages, parents)
	}
}

// TestOwnKeysOverrideTheCallers: an attribute the caller gives with one
// of the package's keys is overridden by the package's value.
func TestOwnKeysOverrideTheCallers(t *testing.T) {
	tel := newTelemetry(t)
	c := newClient(t, "ws://127.0.0.1:1/")
	c.Close()
	stop := tel.instrumentation(t).Instrument(c, shard, attribute.String("resocket.state", "mine"))
	defer stop()
	points, _ := sums[int64](t, tel.metrics(t), "resocket.client.state")
	equal(t, "states", points, map[string]int64{
		set(shard, stateKV("connecting")): 0, set(shard, stateKV("open")): 0,
		set(shard, stateKV("closing")): 0, set(shard, stateKV("closed")): 1,
	})
}
