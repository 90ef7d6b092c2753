package otelresocket

import (
	"context"
	"sync"
	"time"

	"github.com/resocket/resocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// registry holds the clients the observable callback reads, grouped by
// the caller's attrs: the clients of one group add up into one series per
// instrument and attribute value.
type registry struct {
	mu     sync.Mutex
	groups map[attribute.Distinct]*group
	order  []*group // in creation order, for a stable callback
}

// group is one set of the caller's attrs and the clients measured with it.
// retired holds the final counters of the clients that left, so that the
// group's counters never go down.
type group struct {
	clients map[*member]struct{}
	retired totals
	// The attribute sets of its observations, made once.
	states  [4]metric.ObserveOption
	in, out metric.ObserveOption
	attrs   metric.ObserveOption
}

// member is one instrumented client in its group.
type member struct {
	c *resocket.Client
	g *group
}

// totals are the counters of Stats the callback reports.
type totals struct {
	messagesIn, messagesOut, bytesIn, bytesOut int64
	limiterWait                                time.Duration
	dropped                                    int64
}

func (t *totals) add(s resocket.Stats) {
	t.messagesIn += s.MessagesIn
	t.messagesOut += s.MessagesOut
	t.bytesIn += s.BytesIn
	t.bytesOut += s.BytesOut
	t.limiterWait += s.WriteLimiterWaited
	t.dropped += int64(s.EventsDropped)
}

func newRegistry() *registry {
	return &registry{groups: map[attribute.Distinct]*group{}}
}

// states are the values of resocket.state, indexed by resocket.State.
var states = [4]string{
	resocket.StateConnecting: "connecting",
	resocket.StateOpen:       "open",
	resocket.StateClosing:    "closing",
	resocket.StateClosed:     "closed",
}

// add registers c with attrs and returns its membership.
func (r *registry) add(c *resocket.Client, attrs []attribute.KeyValue) *member {
	set := attribute.NewSet(attrs...)
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.groups[set.Equivalent()]
	if g == nil {
		g = newGroup(attrs)
		r.groups[set.Equivalent()] = g
		r.order = append(r.order, g)
	}
	m := &member{c: c, g: g}
	g.clients[m] = struct{}{}
	return m
}

func newGroup(attrs []attribute.KeyValue) *group {
	g := &group{clients: map[*member]struct{}{}}
	for s, name := range states {
		g.states[s] = with(attrs, keyState.String(name))
	}
	g.in = with(attrs, keyDirection.String("in"))
	g.out = with(attrs, keyDirection.String("out"))
	g.attrs = with(attrs)
	return g
}

// remove unregisters m, keeping its client's counters in the group's
// totals. Removing twice does nothing.
func (r *registry) remove(m *member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := m.g.clients[m]; !ok {
		return
	}
	delete(m.g.clients, m)
	m.g.retired.add(m.c.Stats())
}

// observe returns the callback: per group, the clients in each state and
// the sums of their counters, read from State and Stats now.
func (r *registry) observe(i *instruments) metric.Callback {
	return func(_ context.Context, o metric.Observer) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, g := range r.order {
			var n [4]int64
			t := g.retired
			for m := range g.clients {
				if s := m.c.State(); s >= 0 && int(s) < len(n) {
					n[s]++
				}
				t.add(m.c.Stats())
			}
			for s := range n {
				o.ObserveInt64(i.state, n[s], g.states[s])
			}
			o.ObserveInt64(i.messages, t.messagesIn, g.in)
			o.ObserveInt64(i.messages, t.messagesOut, g.out)
			o.ObserveInt64(i.bytes, t.bytesIn, g.in)
			o.ObserveInt64(i.bytes, t.bytesOut, g.out)
			o.ObserveFloat64(i.limiterWait, t.limiterWait.Seconds(), g.attrs)
			o.ObserveInt64(i.eventsDropped, t.dropped, g.attrs)
		}
		return nil
	}
}
