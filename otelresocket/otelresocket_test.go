package otelresocket_test

import (
	"sync"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/resocket/resocket/otelresocket"
)

func TestBadInput(t *testing.T) {
	tel := newTelemetry(t)
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
