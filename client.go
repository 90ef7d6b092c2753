package resocket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	redact  *redactor
	log     *slog.Logger
	backoff backoff.BackOff
	dialOpt websocket.DialOptions
	// transport is the client's own HTTP transport, so that the TCP conn
	// of each socket is known (Close can cut a silent peer) and no idle
	// connection outlives the client. nil with a caller's RoundTripper.
	transport *http.Transport

	// life is cancelled by a stop request (Close, Connect's ctx) and when
	// the loop ends.
	life context.Context
	stop context.CancelFunc
	// reconnects carries Reconnect's requests to the loop. It holds at
	// most one: a second request merges into a pending one.
	reconnects chan reconnectRequest
	queue      chan Message // received messages waiting for Read

	events   hub
	eventsCh <-chan Event
	stats    stats

	mu           sync.Mutex // guards what follows; held by every transition
	state        atomic.Int32
	open         atomic.Pointer[socket] // the OPEN socket; written by transition only
	err          error                  // why it closed; written by transition only
	stateChanged chan struct{}          // closed and replaced on every transition
	done         chan struct{}          // closed on CLOSED, by transition only
	firstOpen    chan struct{}          // closed on the first OPEN
	started      bool
	opened       bool
	stopReq      *stopRequest            // the first request to stop
	cut          context.CancelCauseFunc // cuts the attempt in progress, for Reconnect
	resumeURL    string                  // where resume-mode attempts dial; "" is url

	// current is the socket being handshaken or served, for Reconnect
	// and AckHeartbeat; nil between sockets. Written under mu.
	current atomic.Pointer[socket]
	// handlerClosed is closed when Close is called from inside the
	// WithOnMessage handler: the client then does not wait for it.
	handlerClosed     chan struct{}
	handlerClosedOnce sync.Once
	// handlerG is the goroutine id of the read pump that runs the
	// WithOnMessage handler: the latest one, since the next socket's pump
	// starts only after the one before it returned. The pump itself calls
	// nothing of the client's but the handler, so a call made on that
	// goroutine comes from inside the handler.
	handlerG atomic.Uint64
}

// Message is one message received from the server.
type Message struct {
	Type websocket.MessageType
	Data []byte
	// Attempt is the Session.Attempt of the socket the message arrived on.
	// When it changes, a new socket began: transport state bound to one
	// socket (a zlib-stream inflater) resets exactly there. Protocol
	// state does not: a gateway's sequence number survives a resume,
	// which is a new socket, and starts again only with a new session
	// (READY).
	Attempt int
	// Session is the socket the message arrived on. Reply, Reconnect and
	// ACK through it: an answer to this message then never reaches a
	// later socket (see Session).
	Session *Session
}

// Stats are counters over the client's life.
type Stats struct {
	Attempts           int64  // sockets dialed, successful or not
	Opens              int64  // sockets that finished their handshake
	Reconnects         int64  // opens after the first
	Disconnects        int64  // sockets and attempts that ended, classified
	Reidentifies       int64  // disconnects that started a fresh session
	HeartbeatTimeouts  int64  // sockets cut for a missing pong, or as zombies (a heartbeat not acknowledged)
	IdleTimeouts       int64  // sockets cut because nothing arrived within Session.SetIdleTimeout's limit
	EventsDropped      uint64 // events dropped from full subscriber buffers
	IllegalTransitions int64  // state changes refused by the table; always 0 unless there is a bug
	// RTT is the last heartbeat round trip: ping to pong, or, with
	// Session.Heartbeat, beat to AckHeartbeat. 0 until the first one.
	RTT time.Duration
}

type stats struct {
	attempts, opens, disconnects, reidentifies, heartbeatTimeouts, idleTimeouts, illegalTransitions, rtt atomic.Int64
}

// New validates url and the options and returns a client in CONNECTING
// that has not dialed yet: take Events or Subscribe, then call Connect.
// The URL's scheme must be ws or wss (http and https are taken as ws and
// wss). Nothing is dialed when New fails.
func New(rawURL string, opts ...Option) (*Client, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("resocket: %w", err)
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
		url:           rawURL,
		safeURL:       RedactURL(rawURL),
		cfg:           cfg,
		redact:        newRedactor(u, cfg.dialOptions.HTTPHeader),
		queue:         make(chan Message, cfg.readQueue),
		resumeURL:     cfg.resumeURL,
		reconnects:    make(chan reconnectRequest, 1),
		stateChanged:  make(chan struct{}),
		done:          make(chan struct{}),
		firstOpen:     make(chan struct{}),
		handlerClosed: make(chan struct{}),
		dialOpt:       cfg.dialOptions,
	}
	if c.backoff = cfg.newBackoff(); c.backoff == nil {
		return nil, errors.New("resocket: WithBackoff: function returned a nil BackOff")
	}
	c.log = cfg.logger
	if _, silent := cfg.logger.Handler().(discardHandler); !silent {
		c.log = cfg.logger.With("url", c.safeURL)
	}
	if cfg.resumeURL != "" {
		ru, _ := url.Parse(cfg.resumeURL) // validated by WithResume
		c.redact.addURL(ru)
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
		return nil, fmt.Errorf("invalid URL: %w", err)
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "wss", "http", "https":
	case "":
		return nil, fmt.Errorf("invalid URL %q: no scheme, want ws:// or wss://", RedactURL(raw))
	default:
		return nil, fmt.Errorf("invalid URL %q: scheme %q is not ws or wss", RedactURL(raw), u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid URL %q: no host", RedactURL(raw))
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
// needed. Connect returns nil if and only if a socket reached OPEN,
// whatever happened to it after. Connect may be called once.
func (c *Client) Connect(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.stopReq != nil || c.State() == StateClosed:
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
	case <-c.done: // firstOpen may be closed too: the select picked at random
	case <-ctx.Done():
	}
	c.mu.Lock()
	if c.opened {
		c.mu.Unlock()
		return nil
	}
	if c.State() != StateClosed {
		c.requestStop(&stopRequest{ctxErr: ctx.Err()})
	}
	c.mu.Unlock()
	<-c.done
	return c.Err()
}

// requestStop asks the loop to end the client; the first request wins.
// The caller holds c.mu.
func (c *Client) requestStop(r *stopRequest) {
	if c.stopReq == nil {
		c.stopReq = r
	}
	c.stop()
}

// Read returns the next message, in the order the server sent it, across
// reconnects. When ctx ends Read returns ctx's error and the socket stays
// up. After CLOSED it returns an error wrapping ErrClosed; messages that
// arrived before a fatal disconnect are returned first, messages not yet
// read when Close was called are discarded.
//
// What Read cannot promise: the caller works on a message after Read
// returned it, so messages of one socket may still be in the caller's
// hands, or queued, when the next socket opens. Answer them through
// ReadMessage's Message.Session, which acts on their own socket only.
// WithOnMessage promises more: the handshake of socket N+1 starts only
// after the handler returned for socket N's last message.
func (c *Client) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	m, err := c.ReadMessage(ctx)
	return m.Type, m.Data, err
}

// ReadMessage is Read, plus which socket the message came from
// (Message.Session and Message.Attempt).
func (c *Client) ReadMessage(ctx context.Context) (Message, error) {
	if c.cfg.onMessage != nil {
		if st := c.State(); st == StateClosed {
			return Message{}, c.Err()
		}
		return Message{}, ErrOnMessage
	}
	select {
	case m := <-c.queue:
		return m, nil
	default:
	}
	if done := ctx.Done(); done == nil { // a ctx that never ends: one case fewer to wait on
		select {
		case m := <-c.queue:
			return m, nil
		case <-c.done:
		}
	} else {
		select {
		case m := <-c.queue:
			return m, nil
		case <-done:
			return Message{}, ctx.Err()
		case <-c.done:
		}
	}
	// CLOSED: what arrived before a fatal end is still delivered first.
	select {
	case m := <-c.queue:
		return m, nil
	default:
	}
	return Message{}, c.Err()
}

// Write sends one message on the live socket, whichever it is. While
// CONNECTING it waits for OPEN or for ctx. A reply to a message belongs to
// the message's socket: send it with Message.Session.Write, which never
// reaches a later socket. Called from the WithOnMessage handler when the
// socket has ended, Write cannot wait (the next socket waits for the
// handler) and returns an error wrapping ErrSocketEnded at once. nil means the message was handed to a live socket; an
// error means it was not, and says why. There is no hidden buffering: a
// message is never held for a later socket.
//
// Writes go out one at a time. A ctx that ends before the frame starts
// (while the Write waits for OPEN or for the write before it) sends
// nothing and leaves the socket up. A failed write ends that socket, as
// does a ctx that ends while the frame is being written (half a frame
// cannot be taken back): that disconnect is a 1006 retry whose Err wraps
// ctx's error. Later writes wait for the next socket. A ctx that ends
// after the frame went out whole, even one whose deadline passed while
// the process was stopped in the middle of the write, leaves the socket
// up.
// A write that fails because the peer closed does not decide the
// disconnect: the close frame the peer sent first, if any, is still read,
// and its code is the verdict.
func (c *Client) Write(ctx context.Context, typ websocket.MessageType, p []byte) error {
	if err := checkMessageType("Write", typ); err != nil {
		return err
	}
	if err := c.waitWriteLimiter(ctx); err != nil {
		return err
	}
	for {
		if s := c.open.Load(); s != nil && !s.retired.Load() {
			if done, err := c.writeOn(ctx, s, typ, p); done {
				return err
			}
			continue // s was retired while this write waited its turn
		}
		c.mu.Lock()
		st, changed := c.State(), c.stateChanged
		c.mu.Unlock()
		if st == StateClosing || st == StateClosed {
			return c.closedErr()
		}
		if s := c.open.Load(); s != nil && !s.retired.Load() {
			continue
		}
		if c.inHandler() { // the next socket waits for this very call to return
			return fmt.Errorf("resocket: write: %w", errHandlerHoldsNextSocket)
		}
		select {
		case <-changed:
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("resocket: write: waiting for an open socket: %w", ctx.Err())
		}
	}
}

func checkMessageType(method string, typ websocket.MessageType) error {
	if typ != websocket.MessageText && typ != websocket.MessageBinary {
		return fmt.Errorf("resocket: %s: message type must be MessageText or MessageBinary, got %v", method, typ)
	}
	return nil
}

// errHandlerHoldsNextSocket is Write's error when it is called from the
// WithOnMessage handler with no open socket: waiting would wait for itself.
var errHandlerHoldsNextSocket = fmt.Errorf("%w: called from the WithOnMessage handler, whose return the next socket waits for (reply with Message.Session.Write)",
	ErrSocketEnded)

// writeOn writes one message on s, or reports (false) that s was retired
// while the write waited for its turn. Writes take turns on the socket's
// gate, so a Write whose ctx ends while it waits has written nothing and
// leaves the socket up. A write that fails on the socket finishes it:
// coder/websocket cannot take back half a frame.
func (c *Client) writeOn(ctx context.Context, s *socket, typ websocket.MessageType, p []byte) (bool, error) {
	select {
	case s.writing <- struct{}{}:
	case <-ctx.Done():
		return true, fmt.Errorf("resocket: write: waiting for the write before it: %w", ctx.Err())
	}
	defer func() { <-s.writing }()
	if s.retired.Load() {
		return false, nil
	}
	// coder/websocket cuts the socket of a write whose ctx ends, even one
	// that had ended before the write began (a Write that waited for OPEN
	// until its deadline): such a write sends nothing instead.
	if err := ctx.Err(); err != nil {
		return true, fmt.Errorf("resocket: write: %w", err)
	}
	cut, err := s.write(ctx, typ, p)
	switch {
	case err == nil:
		return true, nil
	case cut:
		o := writeCut(ctx)
		s.cut(o, false)
		return true, fmt.Errorf("resocket: write: %w", o.d.Err)
	default:
		s.writeFailed(err)
		return true, fmt.Errorf("resocket: write: %w", c.redact.err(err))
	}
}

// waitWriteLimiter waits on WithWriteLimiter's Limiter, if any, bounded
// by ctx and cut by Close.
func (c *Client) waitWriteLimiter(ctx context.Context) error {
	if c.cfg.writeLimiter == nil {
		return nil
	}
	if st := c.State(); st == StateClosing || st == StateClosed {
		return c.closedErr()
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.life, cancel)()
	if err := c.cfg.writeLimiter.Wait(wctx); err != nil {
		if ctx.Err() == nil && c.life.Err() != nil {
			return c.closedErr()
		}
		return fmt.Errorf("resocket: write: waiting for the write limiter: %w", err)
	}
	return nil
}

// Reconnect closes the current socket with code and reason and acts as if
// the server had asked for action a: ActionRetry resumes, ActionReidentify
// starts a fresh session, ActionFatal closes the client with
// ErrReconnectRequested. It returns at once; the events tell what followed.
//
// It acts on whichever socket is current when it is called. To act on a
// signal read from a socket (a gateway's "reconnect" or "invalid session"
// message), use that message's Session.Reconnect instead: a signal handled
// after its socket ended must not end the next one.
//
// Its verdict goes through the same steps as any disconnect (counted,
// loop-guarded, scheduled, published as Disconnected), and a socket's end
// is judged once: a close frame the peer had already sent, or a cut the
// client had already made, decides instead. While OPEN the next attempt
// waits for the schedule. While CONNECTING it cuts a dial or a handshake
// in progress, and it cuts the wait that followed a disconnect, so the
// next attempt is made at once. Requests never add up to skip the
// backoff: one made while another is pending, or while the client waits
// to carry one out, joins it (the stronger action wins, the wait stands).
func (c *Client) Reconnect(code websocket.StatusCode, reason string, a Action) error {
	if err := checkReconnect("Reconnect", code, reason, a); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.stopReq != nil || c.State() >= StateClosing:
		return c.closedErrLocked()
	case !c.started:
		return errors.New("resocket: Reconnect: not connected yet; call Connect first")
	}
	r := reconnectRequest{code: code, reason: reason, action: a}
	if s := c.current.Load(); s != nil && c.reconnectSocket(s, r) {
		return nil
	}
	select {
	case c.reconnects <- r:
	default: // one is pending: merge, the stronger action wins
		select {
		case older := <-c.reconnects:
			r = stronger(older, r)
		default: // the loop took it meanwhile
		}
		c.reconnects <- r // room: only Reconnect sends, under c.mu
	}
	if c.cut != nil {
		c.cut(errCut)
	}
	return nil
}

// checkReconnect reports an action, close code or reason a Reconnect
// cannot use.
func checkReconnect(method string, code websocket.StatusCode, reason string, a Action) error {
	if !a.valid() {
		return fmt.Errorf("resocket: %s: invalid action %v", method, a)
	}
	return checkCloseFrame(method, code, reason)
}

// checkCloseFrame reports a close code or reason that cannot be sent.
func checkCloseFrame(method string, code websocket.StatusCode, reason string) error {
	if !sendableCode(code) {
		return fmt.Errorf("resocket: %s: close code %d cannot be sent (use 1000–1003, 1007–1014 or 3000–4999)", method, int(code))
	}
	if len(reason) > 123 {
		return fmt.Errorf("resocket: %s: reason is %d bytes, a close frame holds at most 123", method, len(reason))
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

// Close ends the client from any state: it cancels a dial, a handshake or
// a wait at once, sends 1000 on an open socket and waits up to the close
// timeout for the peer's answer. It returns once the client is CLOSED and
// its goroutines have ended, the WithOnMessage handler included: a Close
// made while the handler runs returns after the handler returned. Two
// calls are exceptions, since they cannot wait for themselves: a Close
// from inside the handler returns once the client is CLOSED, and the
// handler's call ends by itself right after; a Close from inside the
// handshake returns once the client is CLOSED; so does a Close from a
// Session.Heartbeat beat, whose goroutine ends right after. A handshake
// function that ignores its ctx is not waited for: its goroutine ends
// whenever it returns. Close may be called any
// number of times; after it Err is ErrClosed, unless the client had
// already ended by itself (a fatal verdict): Err keeps that cause. It
// always returns nil.
func (c *Client) Close() error {
	c.close(&stopRequest{byClose: true})
	return nil
}

// CloseWith is Close, sending code and reason instead of 1000 on an open
// socket: a deploy that closes with 4000 or 1012 leaves a gateway session
// resumable by the next process (see WithResume). It has Close's
// guarantees. It returns an error, and closes nothing, when code may not
// be sent (1005, 1006, 1015 and codes outside 1000–1014 and 3000–4999)
// or reason is over 123 bytes.
func (c *Client) CloseWith(code websocket.StatusCode, reason string) error {
	if err := checkCloseFrame("CloseWith", code, reason); err != nil {
		return err
	}
	c.close(&stopRequest{byClose: true, code: code, reason: reason})
	return nil
}

func (c *Client) close(r *stopRequest) {
	if c.inHandler() {
		c.handlerClosedOnce.Do(func() { close(c.handlerClosed) })
	}
	if s := c.current.Load(); s != nil && s.beatG.Load() != 0 && s.beatG.Load() == goid() {
		s.closedFromBeat.Store(true) // Close from a Session.Heartbeat beat
	}
	c.mu.Lock()
	c.requestStop(r)
	if !c.started { // no loop to ask: Close winds down itself
		c.started = true
		c.transition(StateClosing, nil, ErrClosed)
		c.transition(StateClosed, nil, ErrClosed)
	}
	c.mu.Unlock()
	<-c.done
}

// inHandler reports whether the caller is the WithOnMessage handler.
func (c *Client) inHandler() bool {
	if c.cfg.onMessage == nil {
		return false
	}
	g := c.handlerG.Load()
	return g != 0 && g == goid()
}

// SetResumeURL sets where resume-mode attempts dial, typically from the
// session a gateway's READY announced (Discord's resume_gateway_url). It
// holds until the session ends: a re-identify or a fatal verdict clears
// it, and the next identify dials New's URL. "" clears it now. The URL is
// validated as New's is, and never printed unredacted.
func (c *Client) SetResumeURL(rawURL string) error {
	if rawURL != "" {
		u, err := parseURL(rawURL)
		if err != nil {
			return fmt.Errorf("resocket: SetResumeURL: %w", err)
		}
		c.redact.addURL(u)
	}
	c.mu.Lock()
	c.resumeURL = rawURL
	c.mu.Unlock()
	return nil
}

// AckHeartbeat tells the client that the protocol's heartbeat ACK arrived
// (Discord's op 11) for the current socket's Session.Heartbeat. An ACK
// with no beat outstanding is ignored.
//
// Deprecated: an ACK read from one socket and acknowledged after the next
// one opened would count for the wrong socket and could hide a zombie
// there. Use the Session.AckHeartbeat of the message that carried the
// ACK (Message.Session), or of the handshake.
func (c *Client) AckHeartbeat() {
	if s := c.current.Load(); s != nil {
		s.session.AckHeartbeat()
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
//
// It is final before the terminal event is published: whoever receives
// StateChanged{To: StateClosed} finds Err (and State) already set.
func (c *Client) Err() error {
	if c.State() != StateClosed {
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
		IdleTimeouts:       c.stats.idleTimeouts.Load(),
		EventsDropped:      c.events.dropped.Load(),
		IllegalTransitions: c.stats.illegalTransitions.Load(),
		RTT:                time.Duration(c.stats.rtt.Load()),
	}
}
