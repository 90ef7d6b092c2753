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

	// lifecycle is the state machine and what moves with it (state.go).
	lifecycle

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

// Stats are counters over the client's life.
type Stats struct {
	Attempts          int64  // sockets dialed, successful or not
	Opens             int64  // sockets that finished their handshake
	Reconnects        int64  // opens after the first
	Disconnects       int64  // sockets and attempts that ended, classified
	Reidentifies      int64  // disconnects that started a fresh session
	HeartbeatTimeouts int64  // sockets cut for a missing pong, or as zombies (a heartbeat not acknowledged)
	IdleTimeouts      int64  // sockets cut because nothing arrived within Session.SetIdleTimeout's limit
	EventsDropped     uint64 // events dropped from full subscriber buffers
	MessagesIn        int64  // messages delivered: returned by Read and ReadMessage, or given to the handler; not the handshake's own reads on Session.Conn
	BytesIn           int64  // their payload bytes
	MessagesOut       int64  // messages Write and Session.Write handed to a socket; not writes on Session.Conn
	BytesOut          int64  // their payload bytes
	// WriteLimiterWaited is the time Writes spent waiting on
	// WithWriteLimiter's Limiter, all together.
	WriteLimiterWaited time.Duration
	// RTT is the last heartbeat round trip: ping to pong, or, with
	// Session.Heartbeat, beat to AckHeartbeat. 0 until the first one.
	RTT time.Duration
}

type stats struct {
	attempts, opens, disconnects, reidentifies, heartbeatTimeouts, idleTimeouts, rtt atomic.Int64
	messagesIn, bytesIn, messagesOut, bytesOut, writeLimiterWaited                   atomic.Int64
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
		reconnects:    make(chan reconnectRequest, 1),
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
	c.lifecycle = newLifecycle(&c.events, c.log)
	c.resumeURL = cfg.resumeURL
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
		MessagesIn:         c.stats.messagesIn.Load(),
		BytesIn:            c.stats.bytesIn.Load(),
		MessagesOut:        c.stats.messagesOut.Load(),
		BytesOut:           c.stats.bytesOut.Load(),
		WriteLimiterWaited: time.Duration(c.stats.writeLimiterWaited.Load()),
		RTT:                time.Duration(c.stats.rtt.Load()),
	}
}

// sent counts a message handed to a socket.
func (s *stats) sent(n int) {
	s.messagesOut.Add(1)
	s.bytesOut.Add(int64(n))
}

// received counts a message delivered.
func (s *stats) received(n int) {
	s.messagesIn.Add(1)
	s.bytesIn.Add(int64(n))
}
