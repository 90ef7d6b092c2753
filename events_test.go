package resocket_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// One drop, one resume, one Close: the exact events, in order.
func TestEventSequence(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Reset()}})
	c, rec := newRecorded(t, srv.URL, fast()...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	rec.connected(t, 2)
	c.Close()
	rec.states(t) // waits for the channel to close
	var got []string
	for _, e := range rec.all() {
		switch e := e.(type) {
		case resocket.StateChanged:
			got = append(got, fmt.Sprintf("%v→%v", e.From, e.To))
		case resocket.Connected:
			got = append(got, fmt.Sprintf("connected %d %v", e.Attempt, e.Mode))
		case resocket.Disconnected:
			got = append(got, fmt.Sprintf("disconnected %d %v", e.Code, e.Action))
		case resocket.Retrying:
			got = append(got, fmt.Sprintf("retrying %d %v", e.Attempt, e.Mode))
		}
	}
	equal(t, "events", got, []string{
		"CONNECTING→OPEN", "connected 1 identify",
		"disconnected 1006 retry", "OPEN→CONNECTING", "retrying 2 resume",
		"CONNECTING→OPEN", "connected 2 resume",
		"OPEN→CLOSING", "CLOSING→CLOSED",
	})
}

// Nobody reads a buffer of one through dozens of reconnects: the client
// never blocks, drops are counted, and the terminal event still arrives,
// last, before the channel closes.
func TestEventsNeverBlockAndTerminalIsLast(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Close(4000, "again")}})
	c, err := resocket.New(srv.URL, fast(resocket.WithEventBuffer(1))...)
	if err != nil {
		t.Fatal(err)
	}
	stalled, _ := c.Subscribe(1)
	cancelled, cancel := c.Subscribe(1)
	cancel()
	cancel() // twice is fine
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for c.Stats().Opens < 30 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if c.Stats().Opens < 30 {
		t.Fatalf("only %d opens: a full event buffer slowed the client", c.Stats().Opens)
	}
	c.Close()
	for name, ch := range map[string]<-chan resocket.Event{"Events": c.Events(), "Subscribe": stalled} {
		var events []resocket.Event
		for e := range ch {
			events = append(events, e)
		}
		if len(events) != 1 || events[0] != (resocket.StateChanged{From: resocket.StateClosing, To: resocket.StateClosed}) {
			t.Fatalf("%s: %v, want only the terminal event", name, events)
		}
	}
	if _, ok := <-cancelled; ok {
		t.Fatal("cancelled subscription still open")
	}
	cancel() // after Close too
	if c.Stats().EventsDropped == 0 {
		t.Fatal("EventsDropped = 0")
	}
	late, lateCancel := c.Subscribe(0)
	defer lateCancel()
	if e := <-late; e != (resocket.StateChanged{From: resocket.StateClosing, To: resocket.StateClosed}) {
		t.Fatalf("late subscriber got %v", e)
	}
	if _, ok := <-late; ok {
		t.Fatal("late subscription not closed")
	}
}

// Fatal before OPEN: CONNECTING→CLOSED directly, and the verdict event
// comes before it.
func TestFatalBeforeOpenEvents(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Status: 401})
	c, err := resocket.New(srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(bounded(t)); err == nil {
		t.Fatal("Connect succeeded on a 401")
	}
	var got []resocket.Event
	for e := range c.Events() {
		got = append(got, e)
	}
	if len(got) != 3 {
		t.Fatalf("events %v", got)
	}
	if got[0] != (resocket.Dialing{Attempt: 1, Mode: resocket.ModeIdentify}) {
		t.Fatalf("first event %#v", got[0])
	}
	if d, ok := got[1].(resocket.Disconnected); !ok || d.HTTPStatus != 401 || d.Action != resocket.ActionFatal || d.Next != 0 ||
		d.Attempt != 1 || d.Opened {
		t.Fatalf("the verdict %#v", got[1])
	}
	if got[2] != (resocket.StateChanged{From: resocket.StateConnecting, To: resocket.StateClosed}) {
		t.Fatalf("last event %#v", got[2])
	}
}

// One attempt's events in order, for an attempt that fails before OPEN
// and for a socket that opens, beats and drops.
func TestAttemptEventsInOrder(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Status: 503})
	srv.SetDefault(resockettest.Script{}) // held open
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHeartbeat(20*time.Millisecond, waitLimit))...)
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a heartbeat round trip", func() bool { return countEvents[resocket.HeartbeatRTT](rec) > 0 })
	srv.DropAll()
	rec.connected(t, 2)
	var got []string
	for _, e := range rec.all() {
		switch e := e.(type) {
		case resocket.Dialing:
			got = append(got, fmt.Sprintf("dialing %d %v", e.Attempt, e.Mode))
		case resocket.Upgraded:
			got = append(got, fmt.Sprintf("upgraded %d", e.Attempt))
		case resocket.Connected:
			got = append(got, fmt.Sprintf("connected %d", e.Attempt))
		case resocket.HeartbeatRTT:
			if e.RTT <= 0 {
				got = append(got, fmt.Sprintf("rtt %v", e.RTT))
			}
			if e.Attempt == 2 && got[len(got)-1] != "rtt 2" { // one line for a run of them; socket 3's may come or not
				got = append(got, "rtt 2")
			}
		case resocket.Disconnected:
			got = append(got, fmt.Sprintf("disconnected %d opened=%v status=%d", e.Attempt, e.Opened, e.HTTPStatus))
		case resocket.Retrying:
			got = append(got, fmt.Sprintf("retrying %d", e.Attempt))
		}
	}
	equal(t, "events", got, []string{
		"dialing 1 identify", "disconnected 1 opened=false status=503", "retrying 2",
		"dialing 2 identify", "upgraded 2", "connected 2", "rtt 2", "disconnected 2 opened=true status=0", "retrying 3",
		"dialing 3 resume", "upgraded 3", "connected 3",
	})
}
