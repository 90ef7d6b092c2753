package otelresocket

import (
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Attribute keys. Every value is bounded: states, modes, outcomes,
// actions, directions, close codes and HTTP statuses, booleans and counts.
const (
	keyState      = attribute.Key("resocket.state")
	keyMode       = attribute.Key("resocket.mode")
	keyOutcome    = attribute.Key("resocket.outcome")
	keyCloseCode  = attribute.Key("websocket.close_code")
	keyStatusCode = attribute.Key("http.response.status_code")
	keyAction     = attribute.Key("resocket.action")
	keyOpened     = attribute.Key("resocket.opened")
	keyDirection  = attribute.Key("resocket.direction")
	keyAttempt    = attribute.Key("resocket.attempt")
	keyAttempts   = attribute.Key("resocket.attempts")
	keyRepeats    = attribute.Key("resocket.repeats")
	keyWaited     = attribute.Key("resocket.identify.wait")
)

// durationBuckets are the histograms' bucket boundaries, in seconds: from
// a millisecond (a heartbeat on a LAN) to ten minutes (a reconnect through
// a long Retry-After, a deep identify queue).
var durationBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120, 300, 600,
}

// instruments are the Instrumentation's, created once by New.
type instruments struct {
	attempts     metric.Int64Counter
	disconnects  metric.Int64Counter
	reconnect    metric.Float64Histogram
	rtt          metric.Float64Histogram
	identifyWait metric.Float64Histogram

	state         metric.Int64ObservableUpDownCounter
	messages      metric.Int64ObservableCounter
	bytes         metric.Int64ObservableCounter
	limiterWait   metric.Float64ObservableCounter
	eventsDropped metric.Int64ObservableCounter
}

func newInstruments(m metric.Meter) (instruments, error) {
	var i instruments
	var err, e error
	add := func(e error) { err = errors.Join(err, e) }
	buckets := metric.WithExplicitBucketBoundaries(durationBuckets...)

	i.attempts, e = m.Int64Counter("resocket.client.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Connection attempts that ended: opened, or failed with a verdict."))
	add(e)
	i.disconnects, e = m.Int64Counter("resocket.client.disconnects", metric.WithUnit("{disconnect}"),
		metric.WithDescription("Sockets and attempts that ended, by close code, upgrade status and verdict."))
	add(e)
	i.reconnect, e = m.Float64Histogram("resocket.client.reconnect.duration", metric.WithUnit("s"), buckets,
		metric.WithDescription("Time from a socket's end to the next OPEN."))
	add(e)
	i.rtt, e = m.Float64Histogram("resocket.client.heartbeat.rtt", metric.WithUnit("s"), buckets,
		metric.WithDescription("Heartbeat round trips: a ping to its pong, or a beat to its ACK."))
	add(e)
	i.identifyWait, e = m.Float64Histogram("resocket.client.identify.wait", metric.WithUnit("s"), buckets,
		metric.WithDescription("Time an identify waited on the identify limiter."))
	add(e)

	i.state, e = m.Int64ObservableUpDownCounter("resocket.client.state", metric.WithUnit("{client}"),
		metric.WithDescription("Instrumented clients in each state."))
	add(e)
	i.messages, e = m.Int64ObservableCounter("resocket.client.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages received and delivered, and messages written to a socket."))
	add(e)
	i.bytes, e = m.Int64ObservableCounter("resocket.client.bytes", metric.WithUnit("By"),
		metric.WithDescription("Payload bytes of those messages."))
	add(e)
	i.limiterWait, e = m.Float64ObservableCounter("resocket.client.write_limiter.wait", metric.WithUnit("s"),
		metric.WithDescription("Total time Writes waited on the write limiter."))
	add(e)
	i.eventsDropped, e = m.Int64ObservableCounter("resocket.client.events.dropped", metric.WithUnit("{event}"),
		metric.WithDescription("Events dropped from full subscriber buffers."))
	add(e)
	return i, err
}

// observables are the instruments the callback observes.
func (i *instruments) observables() []metric.Observable {
	return []metric.Observable{i.state, i.messages, i.bytes, i.limiterWait, i.eventsDropped}
}

// with returns a measurement option for the caller's attrs followed by
// kvs: on a repeated key the later one wins, so the package's own keys
// override the caller's.
func with(base []attribute.KeyValue, kvs ...attribute.KeyValue) metric.MeasurementOption {
	all := make([]attribute.KeyValue, 0, len(base)+len(kvs))
	all = append(append(all, base...), kvs...)
	return metric.WithAttributeSet(attribute.NewSet(all...))
}
