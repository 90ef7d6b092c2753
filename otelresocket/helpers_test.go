package otelresocket_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"

	"github.com/resocket/resocket/otelresocket"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every wait in these tests: generous, for a loaded machine.
const waitFor = 30 * time.Second

// telemetry is an SDK pipeline read by hand: a ManualReader and a
// SpanRecorder.
type telemetry struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	mp     *sdkmetric.MeterProvider
	tp     *sdktrace.TracerProvider
}

func newTelemetry(t *testing.T) *telemetry {
	t.Helper()
	tel := &telemetry{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	tel.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tel.reader))
	tel.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tel.spans))
	t.Cleanup(func() {
		tel.mp.Shutdown(context.Background())
		tel.tp.Shutdown(context.Background())
	})
	return tel
}

func (tel *telemetry) options() []otelresocket.Option {
	return []otelresocket.Option{otelresocket.WithMeterProvider(tel.mp), otelresocket.WithTracerProvider(tel.tp)}
}

func (tel *telemetry) instrumentation(t *testing.T) *otelresocket.Instrumentation {
	t.Helper()
	in, err := otelresocket.New(tel.options()...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return in
}

// metrics collects once and returns the instruments by name.
func (tel *telemetry) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := tel.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelresocket.ScopeName {
			t.Errorf("scope %q, want %q", sm.Scope.Name, otelresocket.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// key encodes a point's attributes, sorted: "k=v,k=v".
func key(s attribute.Set) string { return s.Encoded(attribute.DefaultEncoder()) }

// collected returns the data of the instrument name, which must be a D.
func collected[D metricdata.Aggregation](t *testing.T, ms map[string]metricdata.Metrics, name string) D {
	t.Helper()
	m, ok := ms[name]
	if !ok {
		t.Fatalf("no %s in the collection", name)
	}
	d, ok := m.Data.(D)
	if !ok {
		var want D
		t.Fatalf("%s is a %T, want a %T", name, m.Data, want)
	}
	return d
}

// sums returns the points of a Sum instrument by their attributes, and
// whether it is monotonic.
func sums[N int64 | float64](t *testing.T, ms map[string]metricdata.Metrics, name string) (map[string]N, bool) {
	t.Helper()
	s := collected[metricdata.Sum[N]](t, ms, name)
	if s.Temporality != metricdata.CumulativeTemporality {
		t.Errorf("%s: temporality %v", name, s.Temporality)
	}
	out := map[string]N{}
	for _, p := range s.DataPoints {
		out[key(p.Attributes)] = p.Value
	}
	return out, s.IsMonotonic
}

// histograms returns the points of a Histogram by their attributes.
func histograms(t *testing.T, ms map[string]metricdata.Metrics, name string) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	h := collected[metricdata.Histogram[float64]](t, ms, name)
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	for _, p := range h.DataPoints {
		out[key(p.Attributes)] = p
	}
	return out
}

// handshake plays the test protocol: the client says its mode (the
// server's ReadMode records it), after a WaitIdentify when it identifies,
// and waits for the server's "ready".
func handshake(ctx context.Context, s *resocket.Session) error {
	if s.Mode == resocket.ModeIdentify {
		if err := s.WaitIdentify(ctx); err != nil {
			return err
		}
	}
	if err := s.Conn.Write(ctx, websocket.MessageText, []byte(s.Mode.String())); err != nil {
		return err
	}
	_, b, err := s.Conn.Read(ctx)
	if err == nil && string(b) != "ready" {
		err = errors.New("want ready, got " + string(b))
	}
	return err
}

// ready is the server side of handshake.
func ready() []resockettest.Step {
	return []resockettest.Step{resockettest.ReadMode(), resockettest.Send("ready")}
}

// steps is ready followed by more.
func steps(more ...resockettest.Step) []resockettest.Step { return append(ready(), more...) }

// await reads events from ch until one satisfies ok, within waitFor.
func await(t *testing.T, ch <-chan resocket.Event, what string, ok func(resocket.Event) bool) resocket.Event {
	t.Helper()
	timeout := time.NewTimer(waitFor)
	defer timeout.Stop()
	for {
		select {
		case e, open := <-ch:
			if !open {
				t.Fatalf("the events ended before %s", what)
			}
			if ok(e) {
				return e
			}
		case <-timeout.C:
			t.Fatalf("no %s within %v", what, waitFor)
		}
	}
}

// eventually polls cond every 10 ms, at most for waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for i := 0; i < int(waitFor/(10*time.Millisecond)); i++ {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, waitFor)
}

// closedOn waits for c to be CLOSED.
func closedOn(t *testing.T, c *resocket.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(waitFor):
		t.Fatalf("client not CLOSED within %v (state %v)", waitFor, c.State())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

type (
	metricsByName  = map[string]metricdata.Metrics
	histogramPoint = metricdata.HistogramDataPoint[float64]
)

// wantBuckets are the documented bucket boundaries, in seconds.
var wantBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// set is the key of a point with kvs.
func set(kvs ...attribute.KeyValue) string { return key(attribute.NewSet(kvs...)) }

func mode(m string) attribute.KeyValue      { return attribute.String("resocket.mode", m) }
func outcome(o string) attribute.KeyValue   { return attribute.String("resocket.outcome", o) }
func direction(d string) attribute.KeyValue { return attribute.String("resocket.direction", d) }
func stateKV(s string) attribute.KeyValue   { return attribute.String("resocket.state", s) }

// disconnect is the key of a resocket.client.disconnects point of shard.
func disconnect(code, status int, action string, opened bool) string {
	return set(shard,
		attribute.Int("websocket.close_code", code),
		attribute.Int("http.response.status_code", status),
		attribute.String("resocket.action", action),
		attribute.Bool("resocket.opened", opened))
}

// equal compares an instrument's points with want.
func equal[N int64 | float64](t *testing.T, what string, got, want map[string]N) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d points %v, want %d: %v", what, len(got), got, len(want), want)
		return
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s{%s} = %v (present %v), want %v; all: %v", what, k, g, ok, w, got)
		}
	}
}

// eventLog keeps every event of a client, from a subscription of its own.
type eventLog struct {
	mu     sync.Mutex
	events []resocket.Event
	rtt    chan struct{} // closed at the first HeartbeatRTT
	done   chan struct{} // closed when the channel closed
}

func record(c *resocket.Client) *eventLog {
	ch, _ := c.Subscribe(4096)
	l := &eventLog{rtt: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var once sync.Once
		for e := range ch {
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
			if isRTT(e) {
				once.Do(func() { close(l.rtt) })
			}
		}
	}()
	return l
}

func (l *eventLog) awaitRTT(t *testing.T) {
	t.Helper()
	select {
	case <-l.rtt:
	case <-time.After(waitFor):
		t.Fatalf("no heartbeat round trip within %v", waitFor)
	}
}

// wait waits for the client's CLOSED to close the log's channel.
func (l *eventLog) wait(t *testing.T) {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(waitFor):
		t.Fatalf("the event channel did not close within %v", waitFor)
	}
}

func (l *eventLog) count(match func(resocket.Event) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		if match(e) {
			n++
		}
	}
	return n
}

func isRTT(e resocket.Event) bool {
	_, ok := e.(resocket.HeartbeatRTT)
	return ok
}
