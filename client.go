package resocket

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
)

// Client keeps one logical WebSocket connection alive over many sockets.
//
// All methods may be called concurrently, from any goroutine, including
// from inside the handshake and from an event consumer. Be sure to call
// Close: it is what ends the client's goroutines.
type Client struct {
	url     string // as given, used only to dial
	safeURL string // redacted, for logs and errors
	cfg     config
	redact  redactor
	log     *slog.Logger
	backoff backoff.BackOff
	dialOpt websocket.DialOptions
	// transport is the client's own HTTP transport, so that the TCP conn
	// of each socket is known (Close can cut a silent peer) and no idle
	// connection outlives the client. nil with a caller's RoundTripper.
	transport *http.Transport

	life context.Context // cancelled by Close and by a fatal disconnect
	stop context.CancelFunc

	queue    chan message  // received messages waiting for Read
	kick     chan struct{} // wakes the connection loop for Reconnect
	openConn atomic.Pointer[websocket.Conn]

	events   hub
	eventsCh <-chan Event
	stats    stats

	mu           sync.Mutex // guards what follows, and every state change
	state        atomic.Int32
	stateChanged chan struct{} // closed and replaced on every transition
	done         chan struct{} // closed on CLOSED
	firstOpen    chan struct{} // closed on the first OPEN
	started      bool
	opened       bool
	err          error // why it closed; set once
	lastErr      error // the last disconnect's cause
	reconnect    *reconnectRequest
}

type message struct {
	typ  websocket.MessageType
	data []byte
}

type reconnectRequest struct {
	code   websocket.StatusCode
	reason string
	action Action
}

// Stats are counters over the client's life.
type Stats struct {
	Attempts           int64  // sockets dialed, successful or not
	Opens              int64  // sockets that finished their handshake
	Reconnects         int64  // opens after the first
	Disconnects        int64  // sockets and attempts that ended, classified
	Reidentifies       int64  // disconnects that started a fresh session
	HeartbeatTimeouts  int64  // sockets declared dead for a missing pong
	EventsDropped      uint64 // events dropped from full subscriber buffers
	IllegalTransitions int64  // state changes refused by the table; always 0 unless there is a bug
}

type stats struct {
	attempts, opens, disconnects, reidentifies, heartbeatTimeouts, illegalTransitions atomic.Int64
}

// New validates url and the options and returns a client in CONNECTING
// that has not dialed yet: take Events or Subscribe, then call Connect.
// The URL's scheme must be ws or wss (http and https are taken as ws and
// wss). Nothing is dialed when New fails.
func New(rawURL string, opts ...Option) (*Client, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	cfg := defaultConfig()
	for i, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("resocket: option %d is nil", i)
		}
		if err := o.apply(&cfg); err != nil {
			return nil, fmt.Errorf("resocket: %w", err)
		}
	}
	c := &Client{
		url:          rawURL,
		safeURL:      RedactURL(rawURL),
		cfg:          cfg,
		redact:       newRedactor(u, cfg.dialOptions.HTTPHeader),
		queue:        make(chan message, cfg.readQueue),
		kick:         make(chan struct{}, 1),
		stateChanged: make(chan struct{}),
		done:         make(chan struct{}),
		firstOpen:    make(chan struct{}),
		dialOpt:      cfg.dialOptions,
	}
	if cfg.newBackoff != nil {
		if c.backoff = cfg.newBackoff(); c.backoff == nil {
			return nil, errors.New("resocket: WithBackoff: function returned a nil BackOff")
		}
	} else {
		c.backoff = DefaultBackoff()
	}
	c.log = cfg.logger
	if _, silent := cfg.logger.Handler().(discardHandler); !silent {
		c.log = cfg.logger.With("url", c.safeURL)
	}
	c.dialOpt.HTTPClient, c.transport = newHTTPClient(cfg.dialOptions.HTTPClient)
	c.life, c.stop = context.WithCancel(context.Background())
	c.eventsCh, _ = c.events.subscribe(cfg.eventBuffer)
	return c, nil
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text would repeat the URL, and any token in it
		}
		return nil, fmt.Errorf("resocket: invalid URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "wss", "http", "https":
	case "":
		return nil, fmt.Errorf("resocket: invalid URL %q: no scheme, want ws:// or wss://", RedactURL(raw))
	default:
		return nil, fmt.Errorf("resocket: invalid URL %q: scheme %q is not ws or wss", RedactURL(raw), u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("resocket: invalid URL %q: no host", RedactURL(raw))
	}
	return u, nil
}

// Dial is New followed by Connect. On error the client is already closed
// and nil is returned.
func Dial(ctx context.Context, url string, opts ...Option) (*Client, error) {
	c, err := New(url, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Connect starts the client and waits for its first socket to be OPEN.
// ctx bounds only that first connection: if it ends first, the client goes
// to CLOSED and Connect returns an error wrapping ctx's error and the last
// attempt's cause. A fatal first attempt returns the fatal error. Once
// OPEN, the client lives until Close or a fatal disconnect, reconnecting as
// needed. Connect may be called once.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.err != nil:
		c.mu.Unlock()
		<-c.done
		return c.Err()
	case c.started:
		c.mu.Unlock()
		return errors.New("resocket: Connect called twice")
	}
	c.started = true
	go c.run()
	c.mu.Unlock()

	select {
	case <-c.firstOpen:
		return nil
	case <-c.done:
		return c.Err()
	case <-ctx.Done():
	}
	c.mu.Lock()
	if c.opened {
		c.mu.Unlock()
		return nil
	}
	cause := fmt.Errorf("resocket: connect: %w", ctx.Err())
	if c.lastErr != nil {
		cause = fmt.Errorf("resocket: connect: %w (last failure: %w)", ctx.Err(), c.lastErr)
	}
	c.shutdownLocked(&closedError{cause: cause})
	c.mu.Unlock()
	<-c.done
	return c.Err()
}

// Read returns the next message, in the order the server sent it, across
// reconnects. When ctx ends Read returns ctx's error and the socket stays
// up. After CLOSED it returns an error wrapping ErrClosed; messages that
// arrived before a fatal disconnect are returned first, messages not yet
// read when Close was called are discarded.
func (c *Client) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	select {
	case m := <-c.queue:
		return m.typ, m.data, nil
	default:
	}
	if done := ctx.Done(); done == nil { // a ctx that never ends: one case fewer to wait on
		select {
		case m := <-c.queue:
			return m.typ, m.data, nil
		case <-c.done:
		}
	} else {
		select {
		case m := <-c.queue:
			return m.typ, m.data, nil
		case <-done:
			return 0, nil, ctx.Err()
		case <-c.done:
		}
	}
	// CLOSED: what arrived before a fatal end is still delivered first.
	select {
	case m := <-c.queue:
		return m.typ, m.data, nil
	default:
	}
	return 0, nil, c.Err()
}

// Write sends one message on the live socket. While CONNECTING it waits for
// OPEN or for ctx. nil means the message was handed to a live socket; an
// error means it was not, and says why. There is no hidden buffering: a
// message is never held for a later socket.
//
// A failed write ends that socket, as does a ctx that ends while the frame
// is being written (coder/websocket cannot take back half a frame); the
// client then reconnects and later writes wait for the new socket.
func (c *Client) Write(ctx context.Context, typ websocket.MessageType, p []byte) error {
	if typ != websocket.MessageText && typ != websocket.MessageBinary {
		return fmt.Errorf("resocket: Write: message type must be MessageText or MessageBinary, got %v", typ)
	}
	for {
		if conn := c.openConn.Load(); conn != nil {
			err := conn.Write(ctx, typ, p)
			if err == nil {
				return nil
			}
			// A socket that failed a write is finished (coder/websocket
			// cannot take back half a frame). Retire it now, so that later
			// writes wait for the next socket instead of failing on this
			// one until the read pump notices.
			if c.openConn.CompareAndSwap(conn, nil) {
				conn.CloseNow()
			}
			return fmt.Errorf("resocket: write: %w", c.redact.err(err))
		}
		c.mu.Lock()
		st, changed := State(c.state.Load()), c.stateChanged
		c.mu.Unlock()
		if st == StateClosing || st == StateClosed {
			return c.closedErr()
		}
		if c.openConn.Load() != nil {
			continue
		}
		select {
		case <-changed:
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("resocket: write: waiting for an open socket: %w", ctx.Err())
		}
	}
}

// Reconnect closes the current socket with code and reason and acts as if
// the server had asked for action a: ActionRetry resumes, ActionReidentify
// starts a fresh session, ActionFatal closes the client with
// ErrReconnectRequested. Use it for a protocol's own signals, such as a
// gateway's "reconnect" or "invalid session" messages. While CONNECTING it
// cuts the wait before the next attempt short. It returns at once; the
// events tell what followed.
func (c *Client) Reconnect(code websocket.StatusCode, reason string, a Action) error {
	if !a.valid() {
		return fmt.Errorf("resocket: Reconnect: invalid action %v", a)
	}
	if !sendableCode(code) {
		return fmt.Errorf("resocket: Reconnect: close code %d cannot be sent (use 1000–1003, 1007–1014 or 3000–4999)", int(code))
	}
	if len(reason) > 123 {
		return fmt.Errorf("resocket: Reconnect: reason is %d bytes, a close frame holds at most 123", len(reason))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return c.closedErrLocked()
	case !c.started:
		return errors.New("resocket: Reconnect: not connected yet; call Connect first")
	}
	c.reconnect = &reconnectRequest{code: code, reason: reason, action: a}
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

func sendableCode(code websocket.StatusCode) bool {
	switch {
	case code >= 3000 && code <= 4999:
		return true
	case code < websocket.StatusNormalClosure || code > websocket.StatusBadGateway:
		return false
	}
	return code != 1004 && code != websocket.StatusNoStatusRcvd && code != websocket.StatusAbnormalClosure
}

// disconnect describes the socket end a Reconnect asked for.
func (r *reconnectRequest) disconnect() Disconnect {
	return Disconnect{Code: r.code, Reason: r.reason,
		Err: fmt.Errorf("%w: %w", ErrReconnectRequested, websocket.CloseError{Code: r.code, Reason: r.reason})}
}

// takeReconnect returns and clears the pending Reconnect, if any.
func (c *Client) takeReconnect() *reconnectRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reconnect
	c.reconnect = nil
	return r
}

// Close ends the client from any state: it cancels a dial, a handshake or
// a wait at once, sends 1000 on an open socket and waits up to the close
// timeout for the peer's answer. It returns once the client is CLOSED and
// its goroutines have ended (from inside the handshake it returns as soon
// as the client is CLOSED). Close may be called any number of times; after
// it Err is ErrClosed. It always returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	c.shutdownLocked(ErrClosed)
	if !c.started && State(c.state.Load()) == StateClosing {
		c.setState(StateClosed)
	}
	c.mu.Unlock()
	<-c.done
	return nil
}

// shutdownLocked records why the client ends (the first cause wins),
// stops the connection loop and moves an OPEN or CONNECTING client to
// CLOSING. The caller holds c.mu.
func (c *Client) shutdownLocked(cause error) {
	if c.err != nil {
		return
	}
	c.err = cause
	c.stop()
	c.openConn.Store(nil)
	if st := State(c.state.Load()); st == StateOpen || st == StateConnecting {
		c.setState(StateClosing)
	}
}

// State returns the current state.
func (c *Client) State() State { return State(c.state.Load()) }

// Done is closed once the client is CLOSED.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client closed, nil while it is not CLOSED. Every
// such error satisfies errors.Is(err, ErrClosed). After Close it is
// ErrClosed itself; after a fatal close code errors.As finds the
// websocket.CloseError; after a fatal upgrade status it finds an
// *UpgradeError; after the loop guard or an exhausted schedule errors.Is
// finds ErrReidentifyLoop or ErrRetriesExhausted.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closedErrLocked()
}

func (c *Client) closedErrLocked() error {
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// Events returns the client's own event channel, buffered by
// WithEventBuffer. It is the same channel on every call, made by New, so
// it sees every event from the first. See Subscribe for the delivery rules.
func (c *Client) Events() <-chan Event { return c.eventsCh }

// Subscribe returns a new event channel with a buffer of n (at least 1)
// and a function that ends the subscription. Delivery never blocks the
// client: a full buffer loses its oldest event, counted in
// Stats().EventsDropped. The last event on every channel is
// StateChanged{To: StateClosed}, always delivered; the channel is then
// closed. Cancelling is safe at any time, more than once, and after Close;
// it closes the channel. Subscribing after CLOSED gives a channel holding
// only the terminal event.
func (c *Client) Subscribe(n int) (<-chan Event, func()) { return c.events.subscribe(n) }

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	opens := c.stats.opens.Load()
	return Stats{
		Attempts:           c.stats.attempts.Load(),
		Opens:              opens,
		Reconnects:         max(opens-1, 0),
		Disconnects:        c.stats.disconnects.Load(),
		Reidentifies:       c.stats.reidentifies.Load(),
		HeartbeatTimeouts:  c.stats.heartbeatTimeouts.Load(),
		EventsDropped:      c.events.dropped.Load(),
		IllegalTransitions: c.stats.illegalTransitions.Load(),
	}
}

// closedError is the cause of a client that ended without Close.
type closedError struct{ cause error }

func (e *closedError) Error() string {
	if e.cause == nil {
		return ErrClosed.Error()
	}
	return "resocket: closed: " + e.cause.Error()
}
func (e *closedError) Unwrap() error { return e.cause }

func (e *closedError) Is(target error) bool { return target == ErrClosed }

// run is the connection loop: one goroutine per client, the only user of
// the schedule.
func (c *Client) run() {
	defer c.finish()
	var (
		sched        = newSchedule(c.backoff, c.cfg.newBackoff == nil)
		mode         = ModeIdentify
		hasSession   bool
		reidentifies int
	)
	for attempt := 1; ; attempt++ {
		c.stats.attempts.Add(1)
		s, d, forced := c.connect(attempt, mode)
		if s != nil {
			if !c.markOpen(s.conn, attempt, mode) {
				s.conn.CloseNow()
				return
			}
			hasSession = true
			openedAt := time.Now()
			d, forced = c.serve(s)
			if time.Since(openedAt) >= c.cfg.stableAfter {
				sched.reset()
				reidentifies = 0
			}
		}
		if c.life.Err() != nil {
			return // Close or an ended Connect ctx: no verdict to report
		}
		c.stats.disconnects.Add(1)
		action, cause := c.decide(d, forced)
		action, cause = c.guard(action, cause, &reidentifies, d.Err)
		var delay time.Duration
		if action != ActionFatal {
			if delay = sched.next(d); delay == backoff.Stop {
				action, delay = ActionFatal, 0
				cause = fmt.Errorf("%w after %d attempts; last cause: %w", ErrRetriesExhausted, attempt, d.Err)
			}
		}
		c.log.Debug("resocket: disconnected", "code", int(d.Code), "reason", d.Reason,
			"status", d.HTTPStatus, "err", d.Err, "action", action, "next", delay)
		publish(&c.events, Disconnected{Disconnect: d, Action: action, Next: delay})
		if action == ActionFatal {
			c.fail(cause)
			return
		}
		if action == ActionReidentify {
			hasSession = false
		}
		mode = ModeIdentify
		if hasSession {
			mode = ModeResume
		}
		if !c.leaveOpen() {
			return
		}
		publish(&c.events, Retrying{Attempt: attempt + 1, Delay: delay, Mode: mode})
		req, ok := c.wait(delay)
		if !ok {
			return
		}
		if req != nil { // Reconnect while waiting: its verdict, then an attempt at once
			d := req.disconnect()
			action, cause := c.guard(req.action, d.Err, &reidentifies, d.Err)
			publish(&c.events, Disconnected{Disconnect: d, Action: action})
			switch action {
			case ActionFatal:
				c.fail(cause)
				return
			case ActionReidentify:
				hasSession, mode = false, ModeIdentify
			}
		}
	}
}

// guard applies the loop guard to a verdict: re-identifies in a row,
// with no stable socket between them, turn fatal at WithMaxReidentify.
func (c *Client) guard(a Action, cause error, reidentifies *int, last error) (Action, error) {
	if a != ActionReidentify {
		return a, cause
	}
	if *reidentifies++; *reidentifies >= c.cfg.maxReidentify {
		return ActionFatal, fmt.Errorf("%w: %d re-identifies in a row with no socket stable for %v; last cause: %w",
			ErrReidentifyLoop, *reidentifies, c.cfg.stableAfter, last)
	}
	c.stats.reidentifies.Add(1)
	return a, cause
}

// decide classifies d, unless the handshake or Reconnect forced an action.
// It returns the action and, for a fatal one, the cause.
func (c *Client) decide(d Disconnect, forced *Action) (a Action, cause error) {
	c.mu.Lock()
	c.lastErr = d.Err
	c.mu.Unlock()
	if forced != nil {
		return *forced, d.Err
	}
	defer func() {
		if p := recover(); p != nil {
			a, cause = ActionFatal, fmt.Errorf("resocket: policy panicked: %v (classifying: %w)", p, d.Err)
		}
	}()
	a = c.cfg.policy.Classify(d)
	if !a.valid() {
		return ActionFatal, fmt.Errorf("resocket: policy returned invalid %v (classifying: %w)", a, d.Err)
	}
	return a, d.Err
}

// markOpen moves the client to OPEN with conn, unless Close got there first.
func (c *Client) markOpen(conn *websocket.Conn, attempt int, mode Mode) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.life.Err() != nil {
		return false
	}
	c.setState(StateOpen)
	c.openConn.Store(conn)
	c.stats.opens.Add(1)
	c.log.Debug("resocket: open", "attempt", attempt, "mode", mode)
	publish(&c.events, Connected{Attempt: attempt, Mode: mode})
	if !c.opened { // after the events, so that Connect returns with them published
		c.opened = true
		close(c.firstOpen)
	}
	return true
}

// leaveOpen moves an OPEN client back to CONNECTING, unless Close got
// there first; it reports whether the loop should go on.
func (c *Client) leaveOpen() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.life.Err() != nil {
		return false
	}
	c.openConn.Store(nil)
	if State(c.state.Load()) == StateOpen {
		c.setState(StateConnecting)
	}
	return true
}

// fail ends the client after a fatal disconnect.
func (c *Client) fail(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = &closedError{cause: cause}
	c.stop()
	c.openConn.Store(nil)
	if State(c.state.Load()) == StateOpen {
		c.setState(StateClosing) // CONNECTING goes straight to CLOSED
	}
}

// finish runs when the loop ends: it moves the client to CLOSED.
func (c *Client) finish() {
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == ErrClosed { // the caller asked: unread messages go with the client
		for len(c.queue) > 0 {
			<-c.queue
		}
	}
	c.openConn.Store(nil)
	c.log.Debug("resocket: closed", "err", c.err)
	c.setState(StateClosed)
}

// wait sleeps before the next attempt. It returns a Reconnect made
// meanwhile, and false when the client is ending.
func (c *Client) wait(d time.Duration) (*reconnectRequest, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil, true
	case <-c.kick:
		return c.takeReconnect(), c.life.Err() == nil
	case <-c.life.Done():
		return nil, false
	}
}

// socket is one upgraded WebSocket and the TCP connection under it.
type socket struct {
	conn *websocket.Conn
	tcp  *tcpSlot
}

// connect dials and runs the handshake, bounded together by the connect
// timeout. On failure it returns the disconnect and, when the handshake
// forced one, the action.
func (c *Client) connect(attempt int, mode Mode) (*socket, Disconnect, *Action) {
	ctx, cancel := context.WithTimeout(c.life, c.cfg.connectTimeout)
	defer cancel()
	slot := &tcpSlot{}
	c.log.Debug("resocket: dialing", "attempt", attempt, "mode", mode)
	conn, resp, err := websocket.Dial(context.WithValue(ctx, tcpSlotKey{}, slot), c.url, &c.dialOpt)
	if err != nil {
		slot.close()
		d := dialDisconnect(resp, c.redact.err(err))
		if resp == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && c.life.Err() == nil {
			d.Err = fmt.Errorf("resocket: no upgrade within the connect timeout of %v: %w", c.cfg.connectTimeout, err)
		}
		return nil, c.redact.disconnect(d), nil
	}
	conn.SetReadLimit(c.cfg.readLimit)
	s := &socket{conn: conn, tcp: slot}
	if c.cfg.handshake == nil {
		return s, Disconnect{}, nil
	}
	err = c.handshake(ctx, &Session{Mode: mode, Attempt: attempt, Conn: conn, Response: resp})
	if err == nil {
		return s, Disconnect{}, nil
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && c.life.Err() == nil {
		err = fmt.Errorf("resocket: handshake did not finish within the connect timeout of %v: %w", c.cfg.connectTimeout, err)
	}
	d := c.redact.disconnect(handshakeDisconnect(mode, c.redact.err(err), c.cfg.readLimit))
	var forced *Action
	if a, ok := forcedAction(err); ok {
		forced = &a
	}
	code := websocket.StatusInternalError // keep a resumable session resumable
	if c.life.Err() != nil || (forced != nil && *forced != ActionRetry) {
		code = websocket.StatusNormalClosure // Close, or the session is over anyway
	}
	c.closeSocket(s, code, "handshake failed")
	return nil, d, forced
}

// handshake runs the caller's handshake on its own goroutine, so that a
// Close called from inside it does not wait for itself, and a handshake
// that ignores its ctx cannot hold the client past the connect timeout.
func (c *Client) handshake(ctx context.Context, s *Session) error {
	errc := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				errc <- Fatal(fmt.Errorf("resocket: handshake panicked: %v", p))
			}
		}()
		errc <- c.cfg.handshake(ctx, s)
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// serve runs an OPEN socket until it ends: the read pump fills the queue,
// the heartbeat watches for a silent peer, and Close or Reconnect may end
// it. It returns how the socket ended.
func (c *Client) serve(s *socket) (Disconnect, *Action) {
	sctx, cancel := context.WithCancel(c.life)
	defer cancel()
	p := &pumpState{}
	pumpDone := make(chan error, 1)
	go c.pump(s.conn, p, pumpDone)
	dead := make(chan struct{}, 1)
	hbDone := make(chan struct{})
	if c.cfg.heartbeatInterval > 0 {
		go c.heartbeat(sctx, s.conn, p, dead, hbDone)
	} else {
		close(hbDone)
	}
	defer func() { cancel(); <-hbDone }()

	var (
		d      Disconnect
		forced *Action
	)
	for d.Err == nil {
		select {
		case err := <-pumpDone:
			if c.life.Err() != nil { // the pump let go of a full queue for Close
				c.closeSocket(s, websocket.StatusNormalClosure, "")
				return Disconnect{}, nil
			}
			if errors.Is(err, ErrInvalidUTF8) {
				c.closeSocket(s, websocket.StatusInvalidFramePayloadData, "invalid UTF-8 in a text message")
			}
			s.conn.CloseNow()
			return c.redact.disconnect(socketDisconnect(err, c.cfg.readLimit)), nil
		case <-dead:
			c.stats.heartbeatTimeouts.Add(1)
			c.openConn.Store(nil)
			s.conn.CloseNow()
			d = Disconnect{Code: websocket.StatusAbnormalClosure,
				Err: fmt.Errorf("%w within %v", ErrHeartbeatTimeout, c.cfg.heartbeatTimeout)}
		case <-c.kick:
			req := c.takeReconnect()
			if req == nil { // already taken by an earlier wake-up
				continue
			}
			c.openConn.Store(nil)
			c.closeSocket(s, req.code, req.reason)
			d, forced = req.disconnect(), &req.action
		case <-c.life.Done():
			c.closeSocket(s, websocket.StatusNormalClosure, "")
			<-pumpDone
			return Disconnect{}, nil
		}
	}
	<-pumpDone
	return d, forced
}

// closeSocket sends a close frame and waits up to the close timeout for
// the peer's answer, then cuts the TCP connection.
func (c *Client) closeSocket(s *socket, code websocket.StatusCode, reason string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.conn.Close(code, reason)
	}()
	t := time.NewTimer(c.cfg.closeTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.tcp.close()
		<-done
	}
}

// pumpState tells the heartbeat whether the pump is waiting for the
// consumer; pongs cannot be read meanwhile, so a late pong is not death.
type pumpState struct {
	stalled atomic.Bool
	stalls  atomic.Int64
}

// pump reads the socket continuously into the queue, so that pongs and
// close frames are seen. It never gives a read a deadline: coder/websocket
// closes a socket whose read context ends.
func (c *Client) pump(conn *websocket.Conn, p *pumpState, done chan<- error) {
	for {
		typ, data, err := conn.Read(context.Background())
		if err == nil && typ == websocket.MessageText && !utf8.Valid(data) {
			err = ErrInvalidUTF8 // RFC 6455 §8.1: fail the connection, with 1007
		}
		if err != nil {
			done <- err
			return
		}
		m := message{typ: typ, data: data}
		select {
		case c.queue <- m:
			continue
		default:
		}
		p.stalls.Add(1)
		p.stalled.Store(true)
		select {
		case c.queue <- m:
			p.stalled.Store(false)
		case <-c.life.Done():
			done <- c.life.Err()
			return
		}
	}
}

// heartbeat pings every interval and reports the socket dead when a pong
// does not come within the timeout, unless the pump was waiting for the
// consumer meanwhile.
func (c *Client) heartbeat(ctx context.Context, conn *websocket.Conn, p *pumpState, dead chan<- struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(c.cfg.heartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.stalled.Load() {
			continue
		}
		stalls := p.stalls.Load()
		pctx, cancel := context.WithTimeout(ctx, c.cfg.heartbeatTimeout)
		err := conn.Ping(pctx)
		cancel()
		switch {
		case err == nil, ctx.Err() != nil:
		case p.stalled.Load() || p.stalls.Load() != stalls:
			// The pong may be queued behind a message the consumer has not
			// taken yet: a slow consumer is not a dead peer.
		default:
			dead <- struct{}{}
			return
		}
	}
}

// tcpSlot records the TCP connection a dial made, so that Close can cut a
// peer that never answers the close frame.
type tcpSlot struct {
	mu   sync.Mutex
	conn net.Conn
}

type tcpSlotKey struct{}

func (s *tcpSlot) set(conn net.Conn) {
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
}

func (s *tcpSlot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
}

// newHTTPClient returns the HTTP client for the upgrades: a copy of the
// caller's (or the default) whose transport records each TCP connection
// and keeps no idle ones. A caller's RoundTripper that is not an
// *http.Transport is used as it is, and the transport result is nil.
func newHTTPClient(base *http.Client) (*http.Client, *http.Transport) {
	if base == nil {
		return sharedHTTPClient, nil // nothing idle to clean up: keep-alives are off
	}
	hc := *base
	var tr *http.Transport
	switch t := hc.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return &hc, nil
	}
	hc.Transport = recordingTransport(tr)
	return &hc, tr
}

// sharedHTTPClient serves every client that brings no HTTP client of its
// own: one transport for all, instead of one per client.
var sharedHTTPClient = &http.Client{
	Transport: recordingTransport(http.DefaultTransport.(*http.Transport).Clone()),
}

// recordingTransport adapts tr for upgrades: it records each TCP
// connection in the attempt's tcpSlot and keeps no idle connections.
func recordingTransport(tr *http.Transport) *http.Transport {
	tr.DisableKeepAlives = true  // a socket is never reused; an idle one would outlive the client
	tr.ForceAttemptHTTP2 = false // WebSocket upgrades are HTTP/1.1
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if tr.DialContext == nil {
		tr.DialContext = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	tr.DialContext = recordingDial(tr.DialContext)
	if tr.DialTLSContext != nil {
		tr.DialTLSContext = recordingDial(tr.DialTLSContext)
	}
	return tr
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// recordingDial puts each connection dial makes into the attempt's tcpSlot.
func recordingDial(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if slot, ok := ctx.Value(tcpSlotKey{}).(*tcpSlot); ok && err == nil {
			slot.set(conn)
		}
		return conn, err
	}
}
