package otelresocket_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/resocket/resocket/otelresocket"
)

func TestBadInput(t *testing.T) {
	tel := newTelemetry(t)
	c := newClient(t, "ws://127.0.0.1:1/")
	for _, tc := range []struct {
		name string
		err  func() error
		want string
	}{
		{"nil MeterProvider", func() error { _, err := otelresocket.New(otelresocket.WithMeterProvider(nil)); return err },
			"otelresocket: WithMeterProvider: MeterProvider is nil"},
		{"nil TracerProvider", func() error { _, err := otelresocket.New(otelresocket.WithTracerProvider(nil)); return err },
			"otelresocket: WithTracerProvider: TracerProvider is nil"},
		{"nil option", func() error { _, err := otelresocket.New(otelresocket.WithMeterProvider(tel.mp), nil); return err },
			"otelresocket: option 1 is nil"},
		{"Instrument, nil client", func() error { _, err := otelresocket.Instrument(nil, tel.options()...); return err },
			"otelresocket: Instrument: the *resocket.Client is nil"},
		{"Instrument, nil TracerProvider", func() error {
			stop, err := otelresocket.Instrument(c, otelresocket.WithTracerProvider(nil))
			if stop != nil {
				t.Error("Instrument returned a stop with its error")
			}
			return err
		}, "otelresocket: WithTracerProvider: TracerProvider is nil"},
	} {
		if err := tc.err(); err == nil || err.Error() != tc.want {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// errorLog catches what otel.Handle reports while a test runs.
type errorLog struct {
	mu   sync.Mutex
	errs []string
}

func (l *errorLog) Handle(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err.Error())
}

func (l *errorLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

func TestInstrumentNilIsReported(t *testing.T) {
	prev := otel.GetErrorHandler()
	log := &errorLog{}
	otel.SetErrorHandler(log)
	t.Cleanup(func() { otel.SetErrorHandler(prev) })

	tel := newTelemetry(t)
	tel.instrumentation(t).Instrument(nil)() // a stop that does nothing
	var in *otelresocket.Instrumentation
	in.Instrument(newClient(t, "ws://127.0.0.1:1/"))()

	got := log.all()
	for _, want := range []string{
		"otelresocket: Instrument: the *resocket.Client is nil",
		"otelresocket: Instrument called on a nil *Instrumentation",
	} {
		if !contains(got, want) {
			t.Errorf("reported %q, want %q among them", got, want)
		}
	}
}

// countingMeterProvider counts the meters made on it: one per
// Instrumentation.
type countingMeterProvider struct {
	metric.MeterProvider
	meters atomic.Int32
}

func (p *countingMeterProvider) Meter(name string, opts ...metric.MeterOption) metric.Meter {
	p.meters.Add(1)
	return p.MeterProvider.Meter(name, opts...)
}

func TestInstrumentSharesOnePerProviders(t *testing.T) {
	tel := newTelemetry(t)
	mp := &countingMeterProvider{MeterProvider: tel.mp}
	var stops []func()
	for i := 0; i < 3; i++ {
		stop, err := otelresocket.Instrument(newClient(t, "ws://127.0.0.1:1/"),
			otelresocket.WithMeterProvider(mp), otelresocket.WithTracerProvider(tel.tp))
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, stop)
	}
	if n := mp.meters.Load(); n != 1 {
		t.Errorf("%d Instrumentations for one pair of providers, want 1", n)
	}
	points, _ := sums[int64](t, tel.metrics(t), "resocket.client.state")
	if got := points[set(stateKV("connecting"))]; got != 3 {
		t.Errorf("connecting clients %d, want 3 in one series: %v", got, points)
	}
	stop, err := otelresocket.Instrument(newClient(t, "ws://127.0.0.1:1/"),
		otelresocket.WithMeterProvider(mp), otelresocket.WithTracerProvider(newTelemetry(t).tp))
	if err != nil {
		t.Fatal(err)
	}
	if n := mp.meters.Load(); n != 2 {
		t.Errorf("%d Instrumentations after another TracerProvider, want 2", n)
	}
	for _, stop := range append(stops, stop) {
		stop()
	}
	if points, _ := sums[int64](t, tel.metrics(t), "resocket.client.state"); points[set(stateKV("connecting"))] != 0 {
		t.Errorf("after stop: %v, want no client", points)
	}
}
