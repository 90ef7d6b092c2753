package otelresocket

import (
	"context"
	"fmt"
	"time"

	"github.com/resocket/resocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Span names.
const (
	spanConnect   = "resocket.connect"
	spanReconnect = "resocket.reconnect"
	spanAttempt   = "resocket.attempt"
)

// spans is one client's tracing state, touched only by its watcher's
// goroutine. An outage span (resocket.connect until the first OPEN,
// resocket.reconnect from a socket's end to the next OPEN) is the parent
// of the attempts made meanwhile; each attempt links to the one before.
type spans struct {
	tracer trace.Tracer
	opened bool // a socket of this client reached OPEN

	outage      trace.Span // nil between outages
	outageName  string
	outageCtx   context.Context
	outageStart time.Time // when the socket ended; zero when not known
	outageTries int       // attempts made under outage
	attempt     trace.Span
	attemptNo   int
	prevAttempt trace.SpanContext
}

// dialing starts an attempt's span, and the outage's if there is none
// (the first connection, or a client instrumented mid-outage).
func (s *spans) dialing(e resocket.Dialing) {
	if s.outage == nil {
		name := spanConnect
		if s.opened {
			name = spanReconnect
		}
		s.startOutage(name, time.Time{})
	}
	s.endAttempt() // its end was in a dropped event
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(keyAttempt.Int(e.Attempt), mode(e.Mode)),
	}
	if s.prevAttempt.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: s.prevAttempt}))
	}
	_, s.attempt = s.tracer.Start(s.outageCtx, spanAttempt, opts...)
	s.attemptNo = e.Attempt
	s.prevAttempt = s.attempt.SpanContext()
	s.outageTries++
}

func (s *spans) startOutage(name string, start time.Time) {
	s.outageCtx, s.outage = s.tracer.Start(context.Background(), name, trace.WithNewRoot())
	s.outageName, s.outageStart, s.outageTries = name, start, 0
}

func (s *spans) upgraded(e resocket.Upgraded) {
	if s.attempt != nil && s.attemptNo == e.Attempt {
		s.attempt.AddEvent("upgraded")
	}
}

func (s *spans) identifyPaced(e resocket.IdentifyPaced) {
	if s.attempt != nil && s.attemptNo == e.Attempt {
		s.attempt.AddEvent("identify.paced", trace.WithAttributes(keyWaited.Float64(e.Waited.Seconds())))
	}
}

// connected ends the attempt's span and the outage's. It returns how long
// the client was without a socket, when a socket's end began the outage.
func (s *spans) connected(e resocket.Connected) (time.Duration, bool) {
	if s.attempt != nil {
		s.attempt.SetAttributes(keyOutcome.String("open"))
		s.endAttempt()
	}
	s.opened = true
	if s.outage == nil {
		return 0, false
	}
	outcome := "open"
	if s.outageName == spanReconnect {
		outcome = "reidentified"
		if e.Mode == resocket.ModeResume {
			outcome = "resumed"
		}
	}
	s.outage.SetAttributes(keyOutcome.String(outcome), keyAttempts.Int(s.outageTries))
	start := s.outageStart
	s.endOutage()
	if start.IsZero() {
		return 0, false
	}
	return time.Since(start), true
}

// disconnected ends a failed attempt's span with the verdict, or opens a
// reconnect span when an OPEN socket ended. After a fatal verdict the
// CLOSED that follows ends it at once (outcome closed, status Error), so
// that the trace shows how the client ended.
func (s *spans) disconnected(e resocket.Disconnected) {
	if e.Attempt == 0 { // a Reconnect during the wait: the outage goes on
		return
	}
	if !e.Opened {
		if s.attempt != nil {
			s.attempt.SetAttributes(append(verdict(e), keyOutcome.String("failed"))...)
			s.attempt.SetStatus(codes.Error, errText(e.Disconnect))
			s.endAttempt()
		}
		return
	}
	s.endAttempt()
	s.endOutage() // cannot be open while a socket was: a dropped event
	s.startOutage(spanReconnect, time.Now())
	s.outage.SetAttributes(verdict(e)...)
}

// closed ends what is open: the client is CLOSED, err says why. A Close
// the program asked for (Err is ErrClosed itself) is no error.
func (s *spans) closed(err error) {
	asked := err == resocket.ErrClosed
	status := func(sp trace.Span) {
		if !asked && err != nil {
			sp.SetStatus(codes.Error, err.Error())
		}
	}
	if s.attempt != nil {
		s.attempt.SetAttributes(keyOutcome.String("closed"))
		status(s.attempt)
		s.endAttempt()
	}
	if s.outage != nil {
		s.outage.SetAttributes(keyOutcome.String("closed"), keyAttempts.Int(s.outageTries))
		status(s.outage)
		s.endOutage()
	}
}

// abandon ends what is still open without an outcome: the instrumentation
// stopped before the client closed.
func (s *spans) abandon() {
	s.endAttempt()
	s.endOutage()
}

func (s *spans) endAttempt() {
	if s.attempt != nil {
		s.attempt.End()
		s.attempt = nil
	}
}

func (s *spans) endOutage() {
	if s.outage != nil {
		s.outage.End()
		s.outage, s.outageCtx = nil, nil
	}
}

// verdict is a Disconnected's verdict as span attributes.
func verdict(e resocket.Disconnected) []attribute.KeyValue {
	return []attribute.KeyValue{
		keyCloseCode.Int(int(e.Code)),
		keyStatusCode.Int(e.HTTPStatus),
		keyAction.String(e.Action.String()),
		keyRepeats.Int(e.Repeats),
	}
}

// errText is the Disconnect's error text, which the client has already
// redacted of the URL's and the headers' credentials.
func errText(d resocket.Disconnect) string {
	if d.Err != nil {
		return d.Err.Error()
	}
	if d.HTTPStatus != 0 {
		return fmt.Sprintf("upgrade answered %d", d.HTTPStatus)
	}
	return fmt.Sprintf("closed with %d", int(d.Code))
}
