package otelresocket

import (
	"errors"
	"fmt"

	"github.com/resocket/resocket"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the meter and the tracer: the
// package's import path.
const ScopeName = "github.com/resocket/resocket/otelresocket"

// Option configures New and Instrument.
type Option interface {
	apply(*config) error
}

type config struct {
	mp metric.MeterProvider
	tp trace.TracerProvider
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

// WithMeterProvider sets where the metrics go. Defaults to
// otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) error {
		if mp == nil {
			return errors.New("WithMeterProvider: MeterProvider is nil")
		}
		c.mp = mp
		return nil
	})
}

// WithTracerProvider sets where the spans go. Defaults to
// otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) error {
		if tp == nil {
			return errors.New("WithTracerProvider: TracerProvider is nil")
		}
		c.tp = tp
		return nil
	})
}

func newConfig(opts []Option) (config, error) {
	var cfg config
	for i, o := range opts {
		if o == nil {
			return config{}, fmt.Errorf("otelresocket: option %d is nil", i)
		}
		if err := o.apply(&cfg); err != nil {
			return config{}, fmt.Errorf("otelresocket: %w", err)
		}
	}
	if cfg.mp == nil {
		cfg.mp = otel.GetMeterProvider()
	}
	if cfg.tp == nil {
		cfg.tp = otel.GetTracerProvider()
	}
	return cfg, nil
}

// Instrumentation turns the events and Stats of resocket clients into
// metrics and spans. Its instruments and its one observable callback are
// created once, by New; any number of clients share them. It is safe for
// concurrent use.
type Instrumentation struct {
	tracer  trace.Tracer
	inst    instruments
	clients *registry
}

// New creates the instruments on the MeterProvider and registers the
// callback that reads every instrumented client's Stats at collection
// time. The Instrumentation lives as long as its providers: make one per
// pair of providers and instrument every client with it.
func New(opts ...Option) (*Instrumentation, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	in := &Instrumentation{
		tracer:  cfg.tp.Tracer(ScopeName),
		clients: newRegistry(),
	}
	meter := cfg.mp.Meter(ScopeName)
	if in.inst, err = newInstruments(meter); err != nil {
		return nil, fmt.Errorf("otelresocket: %w", err)
	}
	if _, err := meter.RegisterCallback(in.clients.observe(&in.inst), in.inst.observables()...); err != nil {
		return nil, fmt.Errorf("otelresocket: registering the observable callback: %w", err)
	}
	return in, nil
}

// Instrument observes c until stop is called: it subscribes to c's
// events (one goroutine, which ends when c is CLOSED or at stop) and adds
// c to the observable callback, where a CLOSED client is counted as
// closed until stop. Call stop when the program lets go of c. Call it before Connect to
// see every event from the first dial; a client instrumented later is
// measured from then on, and its counters from Stats in full.
//
// attrs are added to every measurement of c: the caller's own labels,
// bounded (a shard id, never a URL, a token or an error text). Clients
// with the same attrs add up into one series. Each distinct set of attrs
// is kept for the Instrumentation's life, so that the counters of a
// client that ended stay in its series' totals. An attribute with the
// key of one of the package's own is overridden by it.
//
// stop ends the subscription, handles every event c had already
// published (so that a collection right after it holds them all), ends
// any span left open, and removes c from the callback before it returns;
// it is safe to call any number of times.
// Instrument a client once per Instrumentation: twice counts it twice. A
// nil Instrumentation or client is reported to otel.Handle and gives a
// stop that does nothing.
func (in *Instrumentation) Instrument(c *resocket.Client, attrs ...attribute.KeyValue) (stop func()) {
	if in == nil {
		otel.Handle(errors.New("otelresocket: Instrument called on a nil *Instrumentation"))
		return func() {}
	}
	if c == nil {
		otel.Handle(errors.New("otelresocket: Instrument: the *resocket.Client is nil"))
		return func() {}
	}
	w := in.watch(c, attrs)
	return w.stop
}
