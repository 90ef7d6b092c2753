package otelresocket_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/resocket/resocket/otelresocket"
)

// reasonText is the close reason of every close in the scrape test: it
// must never become a label value.
const reasonText = "reason-text-for-the-scrape"

// wantSeries are the families every instrument becomes once it has data.
var wantSeries = []string{
	"resocket_client_state",
	"resocket_client_attempts_total",
	"resocket_client_disconnects_total",
	"resocket_client_reconnect_duration_seconds",
	"resocket_client_heartbeat_rtt_seconds",
	"resocket_client_identify_wait_seconds",
	"resocket_client_messages_total",
	"resocket_client_bytes_total",
	"resocket_client_write_limiter_wait_seconds_total",
	"resocket_client_events_dropped_total",
}

func TestPrometheusScrape(t *testing.T) {
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: steps(resockettest.EchoN(1), resockettest.Close(4000, reasonText))},
		resockettest.Script{Status: http.StatusServiceUnavailable, Body: reasonText},
		resockettest.Script{Steps: steps(resockettest.Close(4004, reasonText))},
	)
	reg, mp := prometheusPipeline(t)
	c := newClient(t, srv.URL+"?token=secret",
		resocket.WithDialOptions(&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer secret"}}}),
		resocket.WithHeartbeat(20*time.Millisecond, waitFor),
		resocket.WithIdentifyLimiter(resocket.NewLimiter(1, 10*time.Millisecond)),
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) }),
	)
	log := record(c)
	in, err := otelresocket.New(otelresocket.WithMeterProvider(mp),
		otelresocket.WithTracerProvider(tracenoop.NewTracerProvider()))
	if err != nil {
		t.Fatal(err)
	}
	stop := in.Instrument(c)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	log.awaitRTT(t)
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	closedOn(t, c) // 4000, a 503, then 4004
	stop()
	log.wait(t)

	body := scrape(t, reg)
	if strings.Contains(body, "secret") {
		t.Errorf("the scrape holds the token:\n%s", body)
	}
	families := parse(t, body)
	for _, name := range wantSeries {
		if _, ok := families[name]; !ok {
			t.Errorf("no %s in the scrape", name)
		}
	}
	checkLabels(t, families, srv)
	checkDisconnectSeries(t, families)
}

// prometheusPipeline is a MeterProvider exporting to a registry of its own.
func prometheusPipeline(t *testing.T) (*prometheus.Registry, *sdkmetric.MeterProvider) {
	t.Helper()
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return reg, mp
}

// scrape serves reg with promhttp on a loopback server and GETs it once.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	web := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer web.Close()
	resp, err := web.Client().Get(web.URL)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d, %v", resp.StatusCode, err)
	}
	return string(b)
}

func parse(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, body)
	}
	return families
}

// checkLabels: no label value of any series holds a URL, the server's
// address, the token or the close reason.
func checkLabels(t *testing.T, families map[string]*dto.MetricFamily, srv *resockettest.Server) {
	t.Helper()
	banned := []string{"://", srv.URL, srv.Addr(), "secret", reasonText}
	n := 0
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				n++
				for _, b := range banned {
					if strings.Contains(l.GetValue(), b) {
						t.Errorf("%s{%s=%q} holds %q", name, l.GetName(), l.GetValue(), b)
					}
				}
			}
		}
	}
	if n == 0 {
		t.Error("no labels at all in the scrape")
	}
}

// checkDisconnectSeries finds the three disconnects with their labels.
func checkDisconnectSeries(t *testing.T, families map[string]*dto.MetricFamily) {
	t.Helper()
	want := map[string]float64{
		"4000/0/retry/true": 1,
		"0/503/retry/false": 1,
		"4004/0/fatal/true": 1,
	}
	got := map[string]float64{}
	for _, m := range families["resocket_client_disconnects_total"].GetMetric() {
		l := map[string]string{}
		for _, p := range m.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		got[strings.Join([]string{l["websocket_close_code"], l["http_response_status_code"],
			l["resocket_action"], l["resocket_opened"]}, "/")] = m.GetCounter().GetValue()
	}
	equal(t, "resocket_client_disconnects_total", got, want)
}
