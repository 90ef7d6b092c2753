package otelresocket_test

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// wantSpan is what one span of the scripted outage must be.
type wantSpan struct {
	name   string
	parent string // the name of the parent in spansOf, "" for a root
	link   string // the linked span, "" for none
	kind   trace.SpanKind
	attrs  []attribute.KeyValue // all of them, exactly
	events []string
	err    string // the status is Error and its description holds err; "" for Unset
}

func attemptAttrs(n int, m string, more ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{attribute.Int("resocket.attempt", n), mode(m)}, more...)
}

func verdictAttrs(code, status int, action string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.Int("websocket.close_code", code),
		attribute.Int("http.response.status_code", status),
		attribute.String("resocket.action", action),
		attribute.Int("resocket.repeats", 1),
	}
}

func attempts(n int) attribute.KeyValue { return attribute.Int("resocket.attempts", n) }

// outageSpans is every span of runOutage, by a name of the test's own.
var outageSpans = map[string]wantSpan{
	"connect": {name: "resocket.connect", kind: trace.SpanKindInternal,
		attrs: []attribute.KeyValue{outcome("open"), attempts(1)}},
	"#1": {name: "resocket.attempt", parent: "connect", kind: trace.SpanKindClient,
		attrs: attemptAttrs(1, "identify", outcome("open")), events: []string{"upgraded", "identify.paced"}},
	"reconnect 1006": {name: "resocket.reconnect", kind: trace.SpanKindInternal,
		attrs: append(verdictAttrs(1006, 0, "retry"), outcome("reidentified"), attempts(3))},
	"#2": {name: "resocket.attempt", parent: "reconnect 1006", link: "#1", kind: trace.SpanKindClient,
		attrs: attemptAttrs(2, "resume", append(verdictAttrs(0, 429, "retry"), outcome("failed"))...), err: "429"},
	"#3": {name: "resocket.attempt", parent: "reconnect 1006", link: "#2", kind: trace.SpanKindClient,
		attrs:  attemptAttrs(3, "resume", append(verdictAttrs(4009, 0, "reidentify"), outcome("failed"))...),
		events: []string{"upgraded"}, err: "4009"},
	"#4": {name: "resocket.attempt", parent: "reconnect 1006", link: "#3", kind: trace.SpanKindClient,
		attrs: attemptAttrs(4, "identify", outcome("open")), events: []string{"upgraded", "identify.paced"}},
	"reconnect 1001": {name: "resocket.reconnect", kind: trace.SpanKindInternal,
		attrs: append(verdictAttrs(1001, 0, "retry"), outcome("resumed"), attempts(1))},
	"#5": {name: "resocket.attempt", parent: "reconnect 1001", link: "#4", kind: trace.SpanKindClient,
		attrs: attemptAttrs(5, "resume", outcome("open")), events: []string{"upgraded"}},
	// The fatal end of an OPEN socket: a reconnect span that CLOSED ends
	// at once, so that the trace shows how the client ended.
	"reconnect 4004": {name: "resocket.reconnect", kind: trace.SpanKindInternal,
		attrs: append(verdictAttrs(4004, 0, "fatal"), outcome("closed"), attempts(0)), err: "4004"},
}

func checkOutageSpans(t *testing.T, o *outage) {
	if started, ended := len(o.tel.spans.Started()), len(o.tel.spans.Ended()); started != ended {
		t.Errorf("%d spans started, %d ended", started, ended)
	}
	got := spansOf(t, o.tel.spans.Ended())
	if len(got) != len(outageSpans) {
		t.Fatalf("spans %v, want %d", slices.Sorted(maps.Keys(got)), len(outageSpans))
	}
	for id, want := range outageSpans {
		s, ok := got[id]
		if !ok {
			t.Errorf("no span %q", id)
			continue
		}
		checkSpan(t, id, s, want, got)
	}
	// One trace for the first connection, one per outage, one for the end.
	traces := map[trace.TraceID][]string{}
	for id, s := range got {
		traces[s.SpanContext().TraceID()] = append(traces[s.SpanContext().TraceID()], id)
	}
	if len(traces) != 4 {
		t.Errorf("%d traces, want 4: %v", len(traces), traces)
	}
	if r, last := got["reconnect 1006"], got["#4"]; r.EndTime().Before(last.EndTime()) || last.StartTime().Before(r.StartTime()) {
		t.Errorf("reconnect 1006 [%v, %v] does not hold #4 [%v, %v]", r.StartTime(), r.EndTime(), last.StartTime(), last.EndTime())
	}
}

// spansOf names each span as outageSpans does: the attempts by number,
// the reconnects by the close code that began them.
func spansOf(t *testing.T, ended []sdktrace.ReadOnlySpan) map[string]sdktrace.ReadOnlySpan {
	out := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		a := attrsOf(s)
		id := s.Name()
		switch s.Name() {
		case "resocket.connect":
			id = "connect"
		case "resocket.attempt":
			id = "#" + a["resocket.attempt"].String()
		case "resocket.reconnect":
			id = "reconnect " + a["websocket.close_code"].String()
		}
		if _, dup := out[id]; dup {
			t.Errorf("two spans %q", id)
		}
		out[id] = s
	}
	return out
}

func checkSpan(t *testing.T, id string, s sdktrace.ReadOnlySpan, want wantSpan, all map[string]sdktrace.ReadOnlySpan) {
	t.Helper()
	if s.Name() != want.name || s.SpanKind() != want.kind {
		t.Errorf("%s: %s kind %v, want %s kind %v", id, s.Name(), s.SpanKind(), want.name, want.kind)
	}
	wantParent := trace.SpanContext{}
	if want.parent != "" {
		wantParent = all[want.parent].SpanContext()
	}
	if got := s.Parent(); got.SpanID() != wantParent.SpanID() || (want.parent != "" && got.TraceID() != wantParent.TraceID()) {
		t.Errorf("%s: parent %v, want %s %v", id, got.SpanID(), want.parent, wantParent.SpanID())
	}
	var links []trace.SpanID
	for _, l := range s.Links() {
		links = append(links, l.SpanContext.SpanID())
	}
	if want.link == "" && len(links) != 0 || want.link != "" && (len(links) != 1 || links[0] != all[want.link].SpanContext().SpanID()) {
		t.Errorf("%s: links %v, want %q", id, links, want.link)
	}
	if got, w := attribute.NewSet(s.Attributes()...), attribute.NewSet(want.attrs...); !got.Equals(&w) {
		t.Errorf("%s: attributes\n %s\nwant\n %s", id, key(got), key(w))
	}
	checkEvents(t, id, s, want.events)
	st := s.Status()
	if want.err == "" && st.Code != codes.Unset || want.err != "" && (st.Code != codes.Error || !strings.Contains(st.Description, want.err)) {
		t.Errorf("%s: status %v %q, want error %q", id, st.Code, st.Description, want.err)
	}
}

func checkEvents(t *testing.T, id string, s sdktrace.ReadOnlySpan, want []string) {
	t.Helper()
	var names []string
	for _, e := range s.Events() {
		names = append(names, e.Name)
		if e.Name != "identify.paced" {
			continue
		}
		if len(e.Attributes) != 1 || e.Attributes[0].Key != "resocket.identify.wait" || e.Attributes[0].Value.AsFloat64() < 0 {
			t.Errorf("%s: identify.paced attributes %v, want resocket.identify.wait in seconds", id, e.Attributes)
		}
	}
	if !slices.Equal(names, want) {
		t.Errorf("%s: events %q, want %q", id, names, want)
	}
}

func attrsOf(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// TestSpansCarryNoSecrets: the error texts on the spans' statuses come
// from the client, redacted: a token in the URL and in the Authorization
// header shows nowhere on a span, through a reset upgrade (retried) and a
// 401 (fatal).
func TestSpansCarryNoSecrets(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{ResetUpgrade: true}, resockettest.Script{Status: http.StatusUnauthorized})
	tel := newTelemetry(t)
	c := newClient(t, srv.URL+"?token=secret",
		resocket.WithDialOptions(&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer secret"}}}),
		resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }))
	stop := tel.instrumentation(t).Instrument(c)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Connect(ctx); err == nil {
		t.Fatal("Connect succeeded against a 401")
	}
	stop()
	var statuses []string
	for _, s := range tel.spans.Ended() {
		texts := []string{s.Status().Description}
		for _, kv := range s.Attributes() {
			texts = append(texts, kv.Value.String())
		}
		for _, e := range s.Events() {
			texts = append(texts, e.Name)
			for _, kv := range e.Attributes {
				texts = append(texts, kv.Value.String())
			}
		}
		for _, text := range texts {
			if strings.Contains(text, "secret") {
				t.Errorf("span %s carries a secret: %q", s.Name(), text)
			}
		}
		if s.Status().Code == codes.Error {
			statuses = append(statuses, s.Status().Description)
		}
	}
	if len(statuses) < 3 { // the reset attempt, the 401 attempt, the connect span of the fatal end
		t.Fatalf("%d error statuses, want 3: %q", len(statuses), statuses)
	}
}
