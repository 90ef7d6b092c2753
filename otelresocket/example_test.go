package otelresocket_test

import (
	"context"
	"fmt"
	"log"
	"sort"
	"time"

	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/resocket/resocket/otelresocket"
)

// One Instrumentation for every client of the process; each client is
// instrumented before Connect, with its shard as a label.
func Example() {
	srv, err := resockettest.Start("") // a local echo server
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	reader := sdkmetric.NewManualReader() // in production: a Prometheus or OTLP exporter
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())

	in, err := otelresocket.New(otelresocket.WithMeterProvider(mp))
	if err != nil {
		log.Fatal(err)
	}
	c, err := resocket.New(srv.URL)
	if err != nil {
		log.Fatal(err)
	}
	stop := in.Instrument(c, attribute.Int("shard", 0))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		log.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		log.Fatal(err)
	}
	c.Close()
	stop() // the client's counters stay in the sums

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		log.Fatal(err)
	}
	printSums(rm)
	// Output:
	// resocket.client.attempts{resocket.mode=identify,resocket.outcome=open,shard=0} 1
	// resocket.client.bytes{resocket.direction=in,shard=0} 5
	// resocket.client.bytes{resocket.direction=out,shard=0} 5
	// resocket.client.events.dropped{shard=0} 0
	// resocket.client.messages{resocket.direction=in,shard=0} 1
	// resocket.client.messages{resocket.direction=out,shard=0} 1
}

// printSums prints the points of the integer counters, sorted.
func printSums(rm metricdata.ResourceMetrics) {
	var lines []string
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name != "resocket.client.state" {
			for _, p := range sum.DataPoints {
				lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value))
			}
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}
