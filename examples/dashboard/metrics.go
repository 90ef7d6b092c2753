package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// newMetrics returns a MeterProvider whose readings a Prometheus scrape of
// the returned handler collects, on a registry of its own.
func newMetrics() (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), rttBuckets())
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// rttBuckets gives the heartbeat's round trips finer buckets than
// otelresocket's, which start at 1 ms: a round trip on loopback takes a
// fraction of one, and all of them would share the first bucket.
func rttBuckets() sdkmetric.Option {
	bounds := []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	return sdkmetric.WithView(sdkmetric.NewView(
		sdkmetric.Instrument{Name: "resocket.client.heartbeat.rtt"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: bounds}},
	))
}
