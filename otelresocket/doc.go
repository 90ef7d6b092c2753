// Package otelresocket records OpenTelemetry metrics and traces of
// resocket clients, named like otelhttp and otelgrpc.
//
// It observes a client only through its public API: its events
// (Client.Subscribe) and its counters (Client.Stats, Client.State). Nothing
// runs per message: message and byte counts are observable instruments,
// read from Stats when the metrics are collected. One goroutine per
// instrumented client handles its events; it ends when the client is
// CLOSED or when stop is called. A CLOSED client is counted as closed in
// resocket.client.state until stop.
//
//	in, err := otelresocket.New() // the global providers, or WithMeterProvider, WithTracerProvider
//	if err != nil {
//		return err
//	}
//	c, err := resocket.New(url, resocket.WithHandshake(handshake))
//	...
//	defer in.Instrument(c, attribute.Int("shard", id))() // before Connect: every event from the first dial
//	err = c.Connect(ctx)
//
// # Metrics
//
// Every attribute value is bounded: no URL, token, close reason or error
// text ever becomes one. The attributes given to
// Instrumentation.Instrument are added to every measurement of that
// client.
//
//	name                                 kind                        unit          attributes                                       meaning
//	resocket.client.state                observable UpDownCounter    {client}      resocket.state                                   clients in each state: connecting, open, closing, closed
//	resocket.client.attempts             Counter                     {attempt}     resocket.mode, resocket.outcome                  attempts that ended: open (Connected) or failed (a Disconnected before OPEN); mode identify or resume
//	resocket.client.disconnects          Counter                     {disconnect}  websocket.close_code, http.response.status_code,  sockets and attempts that ended, with the verdict: close code and upgrade status (0 when none),
//	                                                                               resocket.action, resocket.opened                 action retry, reidentify or fatal, and whether the socket had been OPEN
//	resocket.client.reconnect.duration   Histogram                   s             resocket.mode                                    from a socket's end to the next OPEN, by the mode of that OPEN
//	resocket.client.heartbeat.rtt        Histogram                   s                                                              heartbeat round trips: a ping to its pong, or a beat to its ACK
//	resocket.client.identify.wait        Histogram                   s                                                              how long each identify waited on the identify limiter
//	resocket.client.messages             observable Counter          {message}     resocket.direction                               messages received and delivered (in), handed to a socket by Write (out)
//	resocket.client.bytes                observable Counter          By            resocket.direction                               their payload bytes
//	resocket.client.write_limiter.wait   observable Counter          s                                                              the time Writes waited on the write limiter, all together
//	resocket.client.events.dropped       observable Counter          {event}                                                        events dropped from any of the client's event channels, Events() included
//
// The histograms have explicit buckets from 1 ms to 10 min: 0.001, 0.0025,
// 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
// 300, 600 s. The observable instruments sum the clients that share the
// same attributes; a client that is no longer instrumented leaves its
// counts in those sums, so a counter never goes down.
//
// # Traces
//
// Every connection attempt is a span, resocket.attempt (kind client), from
// its Dialing to its Connected (resocket.outcome=open) or to its
// Disconnected (resocket.outcome=failed, status Error with the
// Disconnect's error text, which the client has redacted; the verdict as
// websocket.close_code, http.response.status_code, resocket.action and
// resocket.repeats). It carries resocket.attempt and resocket.mode, the
// span events upgraded and identify.paced (resocket.identify.wait, in
// seconds), and a link to the previous attempt's span.
//
// The attempts hang under one span per outage, each the root of its own
// trace. resocket.connect runs from the first Dialing to the first OPEN
// (resocket.outcome=open) or to CLOSED. resocket.reconnect opens when an
// OPEN socket ends (a Disconnected that had Opened; its verdict as
// attributes), and ends at the next OPEN with resocket.outcome resumed or
// reidentified; after a fatal verdict, at the CLOSED that follows. Both
// carry resocket.attempts, the attempts they hold. CLOSED ends any of
// them with resocket.outcome=closed and status Error with Client.Err's
// text, unless the program closed the client (Err is ErrClosed); stop
// ends them without an outcome.
package otelresocket
