// Package resocket is a reconnecting WebSocket client. It keeps one logical
// connection alive over many sockets: it dials, hands each new socket to
// your handshake (identify or resume), watches it with pings, and when it
// drops decides from the close code or the HTTP upgrade status whether to
// retry (reconnect and resume the session), re-identify (reconnect with a
// fresh session) or stop for good. Everything that happens is reported as
// typed events on channels that can never block the connection.
//
// The lifecycle:
//
//	     New                     handshake ok
//	      │              ┌───────────────────────────┐
//	      ▼              │                           ▼
//	┌────────────┐ ──────┘                      ┌────────┐
//	│ CONNECTING │ ◀─────── drop: retry ─────── │  OPEN  │
//	└────────────┘          or re-identify      └────────┘
//	 │          │                                   │
//	 │ fatal,   │ Close                     Close, fatal
//	 │ Connect  ▼                                   ▼
//	 │ ctx ┌─────────┐ ◀────────────────────────────┘
//	 │     │ CLOSING │
//	 │     └─────────┘
//	 ▼          │
//	┌────────┐  │
//	│ CLOSED │ ◀┘
//	└────────┘
//
// CONNECTING covers dialing, the upgrade, the handshake and the wait
// between attempts; a new attempt is not a state change, Retrying and the
// attempt counter tell it. CLOSED is terminal: Err says why.
//
// How a client ends, one rule: Close passes through CLOSING from any
// state; a client that ends by itself (a fatal verdict, or Connect's ctx
// ending before the first OPEN) passes through CLOSING only from OPEN, and
// goes straight from CONNECTING to CLOSED.
//
// One goroutine, the connection loop, owns the lifecycle: Close,
// Connect's ctx and Reconnect are requests to it, and every way a socket
// or an attempt ends goes through the same verdict (classify, loop guard,
// schedule, log, publish).
//
// A minimal client:
//
//	c, err := resocket.Dial(ctx, "wss://gateway.example/?v=10",
//		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
//			if s.Mode == resocket.ModeResume {
//				return resume(ctx, s.Conn)
//			}
//			return identify(ctx, s.Conn)
//		}),
//	)
//	if err != nil {
//		return err // invalid URL, a fatal first attempt, or ctx
//	}
//	defer c.Close()
//	for {
//		typ, data, err := c.Read(ctx)
//		if err != nil {
//			return err // errors.Is(err, resocket.ErrClosed) once closed for good
//		}
//		handle(typ, data)
//	}
//
// # One socket, one scope
//
// A message belongs to the socket it arrived on, and so does everything
// done in answer to it. Message.Session names that socket: reply with
// its Write, act on a protocol's "reconnect" or "invalid session" with its
// Reconnect, acknowledge a heartbeat with its AckHeartbeat. Once the
// socket has ended they fail (ErrSocketEnded) or do nothing; they never
// reach the next socket. Client.Write and Client.Reconnect act on the
// connection, whichever socket is current.
//
// How a socket ends is decided once, in one place, from one precedence
// table, in the handshake as when OPEN: the peer's close frame, then the
// client's own cut (heartbeat, zombie, failed beat, a Write cut
// mid-frame, a Reconnect), then the error itself. Each socket that ends
// while the client runs gets exactly one Disconnected; one ended by Close
// gets none (Close is not a disconnect to report).
//
// # Classification
//
// DefaultPolicy decides after every disconnect; TablePolicy's With methods
// override a code, a range of codes, an upgrade status, or let a function
// decide first. A socket that died without a close frame (EOF, reset,
// heartbeat timeout) is reported as 1006 and resumed; credentials (401,
// 403, 4004) and configuration errors (4010–4014, 1003, 1007, 1009, TLS)
// stop the client; 1000, 4003, 4005, 4007 and 4009 start a fresh session,
// and WithMaxReidentify bounds how often that may happen in a row before
// the client gives up rather than burn its identify budget.
//
// # Concurrency and resources
//
// All methods are safe for concurrent use. Each connected client runs one
// connection goroutine, plus a read pump and a heartbeat per open socket;
// Close ends them all before it returns, the WithOnMessage handler
// included (a Close from inside the handler, which cannot wait for
// itself, returns once the client is CLOSED). Read must be called for messages
// to flow: when the read queue (WithReadQueue) is full the pump stops
// reading, so the server feels the pressure through TCP. While the pump
// waits for the consumer, and while any message waits unread in the
// queue, the pong deadline and the zombie judgment are paused (the
// answer may be among them), so a slow consumer is never declared a dead
// peer; the consequence is that a peer which dies while the consumer is
// stalled is noticed once the consumer has caught up.
//
// Read costs one goroutine hand-off per message (the pump). Where that
// matters, WithOnMessage delivers each message on the socket's read
// goroutine itself, with a reused buffer and no allocation.
//
// Errors and log lines never contain the URL's credential query parameters
// or the Authorization and Cookie headers: see RedactURL.
package resocket
