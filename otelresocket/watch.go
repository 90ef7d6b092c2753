package otelresocket

import (
	"context"

	"github.com/resocket/resocket"
	"go.opentelemetry.io/otel/attribute"
)

// eventBuffer is the buffer of each client's subscription. The events are
// a handful per attempt and one per heartbeat, handled in microseconds,
// so it never fills unless the process stalls; a dropped event is counted
// in Stats().EventsDropped like any other, and the spans it would have
// ended are ended by the next event that implies it.
const eventBuffer = 256

// watcher observes one client: it owns the client's span state and turns
// each event into measurements and spans, on its own goroutine.
type watcher struct {
	in     *Instrumentation
	c      *resocket.Client
	attrs  []attribute.KeyValue
	member *member
	events <-chan resocket.Event
	cancel func()
	done   chan struct{}

	mode  resocket.Mode // the mode of the attempt under way, from Dialing
	spans spans
}

// watch subscribes to c, registers it with the callback and starts the
// goroutine.
func (in *Instrumentation) watch(c *resocket.Client, attrs []attribute.KeyValue) *watcher {
	events, cancel := c.Subscribe(eventBuffer)
	w := &watcher{
		in:     in,
		c:      c,
		attrs:  append([]attribute.KeyValue(nil), attrs...),
		events: events,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	w.spans = spans{tracer: in.tracer, opened: c.Stats().Opens > 0}
	w.member = in.clients.add(c, w.attrs)
	go w.run()
	return w
}

// stop ends the subscription, waits for the goroutine (which handles
// every event already published first) and removes the client from the
// callback.
func (w *watcher) stop() {
	w.cancel() // safe more than once
	<-w.done
	w.in.clients.remove(w.member)
}

// run handles the events until the channel closes: after CLOSED, or when
// stop cancelled the subscription. A CLOSED client stays in the callback,
// counted as closed, until stop: a shard that ended for good shows, it
// does not vanish from the gauge.
func (w *watcher) run() {
	defer close(w.done)
	for e := range w.events {
		w.handle(e)
	}
	w.spans.abandon()
}

func (w *watcher) handle(e resocket.Event) {
	ctx := context.Background()
	inst := &w.in.inst
	switch e := e.(type) {
	case resocket.Dialing:
		w.mode = e.Mode
		w.spans.dialing(e)
	case resocket.Upgraded:
		w.spans.upgraded(e)
	case resocket.IdentifyPaced:
		inst.identifyWait.Record(ctx, e.Waited.Seconds(), with(w.attrs))
		w.spans.identifyPaced(e)
	case resocket.Connected:
		inst.attempts.Add(ctx, 1, with(w.attrs, mode(e.Mode), keyOutcome.String("open")))
		if d, ok := w.spans.connected(e); ok {
			inst.reconnect.Record(ctx, d.Seconds(), with(w.attrs, mode(e.Mode)))
		}
	case resocket.HeartbeatRTT:
		inst.rtt.Record(ctx, e.RTT.Seconds(), with(w.attrs))
	case resocket.Disconnected:
		w.disconnected(ctx, e)
	case resocket.StateChanged:
		if e.To == resocket.StateClosed {
			w.spans.closed(w.c.Err())
		}
	}
}

func (w *watcher) disconnected(ctx context.Context, e resocket.Disconnected) {
	inst := &w.in.inst
	if !e.Opened && e.Attempt != 0 { // Attempt 0: a Reconnect during the wait, no attempt of its own
		m := w.mode // the attempt's, unless its Dialing was dropped
		inst.attempts.Add(ctx, 1, with(w.attrs, mode(m), keyOutcome.String("failed")))
	}
	inst.disconnects.Add(ctx, 1, with(w.attrs,
		keyCloseCode.Int(int(e.Code)),
		keyStatusCode.Int(e.HTTPStatus),
		keyAction.String(e.Action.String()),
		keyOpened.Bool(e.Opened)))
	w.spans.disconnected(e)
}

// mode is the resocket.mode attribute.
func mode(m resocket.Mode) attribute.KeyValue { return keyMode.String(m.String()) }
