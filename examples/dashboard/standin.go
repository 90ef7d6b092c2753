package main

// TEMPORARY: feeds the page until otelresocket lands; deleted then.

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/resocket/resocket"
)

func newInstrumentation(mp metric.MeterProvider) (func(*resocket.Client) func(), error) {
	m := mp.Meter("standin")
	var mu sync.Mutex
	live := map[*resocket.Client]bool{}
	state, _ := m.Int64ObservableUpDownCounter("resocket.client.state", metric.WithUnit("{client}"))
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		mu.Lock()
		defer mu.Unlock()
		n := map[string]int64{"connecting": 0, "open": 0, "closing": 0, "closed": 0}
		for c := range live {
			n[map[resocket.State]string{resocket.StateConnecting: "connecting", resocket.StateOpen: "open", resocket.StateClosing: "closing", resocket.StateClosed: "closed"}[c.State()]]++
		}
		for s, v := range n {
			o.ObserveInt64(state, v, metric.WithAttributes(attribute.String("resocket.state", s)))
		}
		return nil
	}, state)
	if err != nil {
		return nil, err
	}
	drops, _ := m.Int64Counter("resocket.client.disconnects")
	recon, _ := m.Float64Histogram("resocket.client.reconnect.duration", metric.WithUnit("s"))
	rtt, _ := m.Float64Histogram("resocket.client.heartbeat.rtt", metric.WithUnit("s"))
	return func(c *resocket.Client) func() {
		mu.Lock()
		live[c] = true
		mu.Unlock()
		ev, unsub := c.Subscribe(256)
		go func() {
			var lost time.Time
			for e := range ev {
				switch e := e.(type) {
				case resocket.Disconnected:
					drops.Add(context.Background(), 1, metric.WithAttributes(attribute.Int("websocket.close_code", int(e.Code)), attribute.Int("http.response.status_code", e.HTTPStatus), attribute.String("resocket.action", e.Action.String()), attribute.Bool("resocket.opened", e.Opened)))
					if e.Opened {
						lost = time.Now()
					}
				case resocket.Connected:
					if !lost.IsZero() {
						recon.Record(context.Background(), time.Since(lost).Seconds())
					}
				case resocket.HeartbeatRTT:
					rtt.Record(context.Background(), e.RTT.Seconds())
				}
			}
		}()
		return func() { unsub(); mu.Lock(); delete(live, c); mu.Unlock() }
	}, nil
}
