package resocket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket/internal/clock"
)

// Defaults of the options, each documented on its option.
const (
	DefaultHeartbeatInterval = 30 * time.Second
	DefaultHeartbeatTimeout  = 15 * time.Second
	DefaultConnectTimeout    = 20 * time.Second
	DefaultCloseTimeout      = 2 * time.Second
	DefaultStableAfter       = 5 * time.Second
	DefaultMaxReidentify     = 2
	DefaultReadLimit         = 1 << 20
	DefaultReadQueue         = 64
	DefaultEventBuffer       = 32
)

// Mode tells the handshake whether to start a session or resume one.
type Mode int

const (
	// ModeIdentify: start a fresh session. The first socket of a client,
	// and every socket after a re-identify, runs in this mode.
	ModeIdentify Mode = iota
	// ModeResume: a previous socket of this client finished its handshake
	// and the session may still be valid; resume it. Sockets after a retry
	// run in this mode.
	ModeResume
)

func (m Mode) String() string {
	switch m {
	case ModeIdentify:
		return "identify"
	case ModeResume:
		return "resume"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Option configures a Client. Options are checked by New: a nil or
// out-of-range value is an error that names the option.
type Option interface {
	apply(*config) error
}

type optionFunc func(*config) error

func (f optionFunc) apply(c *config) error { return f(c) }

type config struct {
	handshake         func(context.Context, *Session) error
	policy            Policy
	newBackoff        func() backoff.BackOff
	heartbeatInterval time.Duration
	heartbeatTimeout  time.Duration
	connectTimeout    time.Duration
	closeTimeout      time.Duration
	maxReidentify     int
	stableAfter       time.Duration
	dialOptions       websocket.DialOptions
	readLimit         int64
	readQueue         int
	eventBuffer       int
	logger            *slog.Logger
	identifyLimiter   Limiter
	writeLimiter      Limiter
	onMessage         func(Message)
	resume            bool   // WithResume: the first attempt resumes
	resumeURL         string // where resume-mode attempts dial; "" is New's URL
	clock             clock.Clock
}

func defaultConfig() config {
	return config{
		policy:            DefaultPolicy,
		newBackoff:        DefaultBackoff,
		heartbeatInterval: DefaultHeartbeatInterval,
		heartbeatTimeout:  DefaultHeartbeatTimeout,
		connectTimeout:    DefaultConnectTimeout,
		closeTimeout:      DefaultCloseTimeout,
		maxReidentify:     DefaultMaxReidentify,
		stableAfter:       DefaultStableAfter,
		readLimit:         DefaultReadLimit,
		readQueue:         DefaultReadQueue,
		eventBuffer:       DefaultEventBuffer,
		logger:            slog.New(discardHandler{}),
		clock:             clock.Real,
	}
}

// WithHandshake sets the function that identifies or resumes on each new
// socket. Without one, a socket is OPEN as soon as the upgrade succeeds.
//
// h runs before the socket counts as OPEN, with a context bounded by the
// connect timeout and cancelled by Close. Returning nil opens the socket;
// an error ends it and is classified (see Fatal and Reidentify to force
// the decision).
func WithHandshake(h func(ctx context.Context, s *Session) error) Option {
	return optionFunc(func(c *config) error {
		if h == nil {
			return errors.New("WithHandshake: handshake is nil")
		}
		c.handshake = h
		return nil
	})
}

// WithPolicy replaces DefaultPolicy. Use DefaultPolicy's With methods to
// change a few rows, or PolicyFunc to decide everything.
func WithPolicy(p Policy) Option {
	return optionFunc(func(c *config) error {
		if p == nil {
			return errors.New("WithPolicy: policy is nil")
		}
		if f, ok := p.(PolicyFunc); ok && f == nil {
			return errors.New("WithPolicy: PolicyFunc is nil")
		}
		c.policy = p
		return nil
	})
}

// WithBackoff replaces the reconnect schedule. newBackoff is called once per
// client; its value is Reset after every stable socket and used as it is.
// backoff.Stop ends the client with ErrRetriesExhausted. Retry-After and
// 1013 still raise the floor. Defaults to DefaultBackoff.
func WithBackoff(newBackoff func() backoff.BackOff) Option {
	return optionFunc(func(c *config) error {
		if newBackoff == nil {
			return errors.New("WithBackoff: function is nil")
		}
		c.newBackoff = newBackoff
		return nil
	})
}

// WithHeartbeat sets how often a ping is sent and how long to wait for its
// pong before the socket is declared dead (a 1006 disconnect, retried).
// An interval of 0 turns the heartbeat off. Defaults to 30 s and 15 s, inside
// the 60 s idle cut of common proxies; a silent peer is found within
// interval+timeout.
func WithHeartbeat(interval, timeout time.Duration) Option {
	return optionFunc(func(c *config) error {
		if interval < 0 {
			return fmt.Errorf("WithHeartbeat: interval must not be negative, got %v", interval)
		}
		if interval > 0 && timeout <= 0 {
			return fmt.Errorf("WithHeartbeat: timeout must be positive when the interval is set, got %v", timeout)
		}
		c.heartbeatInterval, c.heartbeatTimeout = interval, timeout
		return nil
	})
}

// WithConnectTimeout bounds dial, upgrade and handshake together. A slow
// server past it is a retry. Defaults to 20 s (gRPC's minimum connect
// timeout).
func WithConnectTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithConnectTimeout: timeout must be positive, got %v", d)
		}
		c.connectTimeout = d
		return nil
	})
}

// WithCloseTimeout bounds how long Close waits for the peer to answer its
// close frame before it cuts the connection. Defaults to 2 s.
func WithCloseTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("WithCloseTimeout: timeout must be positive, got %v", d)
		}
		c.closeTimeout = d
		return nil
	})
}

// WithMaxReidentify sets how many re-identifies in a row, with no stable
// socket between them, make the client stop with ErrReidentifyLoop.
// Defaults to 2: one re-identify is allowed, a second quick one stops.
func WithMaxReidentify(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 {
			return fmt.Errorf("WithMaxReidentify: n must be at least 1, got %d", n)
		}
		c.maxReidentify = n
		return nil
	})
}

// WithStableAfter sets how long a socket must stay OPEN to reset the
// backoff schedule and the re-identify loop guard. Defaults to 5 s.
func WithStableAfter(d time.Duration) Option {
	return optionFunc(func(c *config) error {
		if d < 0 {
			return fmt.Errorf("WithStableAfter: duration must not be negative, got %v", d)
		}
		c.stableAfter = d
		return nil
	})
}

// WithDialOptions sets coder/websocket's dial options: headers,
// subprotocols, compression, the HTTP client. The value is copied.
func WithDialOptions(o *websocket.DialOptions) Option {
	return optionFunc(func(c *config) error {
		if o == nil {
			return errors.New("WithDialOptions: options are nil")
		}
		c.dialOptions = *o
		c.dialOptions.HTTPHeader = o.HTTPHeader.Clone()
		return nil
	})
}

// WithReadLimit sets the largest message, in bytes, the client accepts; a
// larger one is a fatal 1009 whose error names this option. -1 removes the
// limit. Defaults to 1 MiB.
func WithReadLimit(n int64) Option {
	return optionFunc(func(c *config) error {
		if n < 1 && n != -1 {
			return fmt.Errorf("WithReadLimit: limit must be positive or -1 (no limit), got %d", n)
		}
		c.readLimit = n
		return nil
	})
}

// WithReadQueue sets how many received messages wait for Read. When the
// queue is full the client stops reading from the socket until Read makes
// room, so the pressure reaches the server through TCP. Defaults to 64.
func WithReadQueue(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 {
			return fmt.Errorf("WithReadQueue: size must be at least 1, got %d", n)
		}
		c.readQueue = n
		return nil
	})
}

// WithEventBuffer sets the buffer of the channel Events returns. Defaults
// to 32; a drop and its reconnect make about seven (Disconnected,
// StateChanged, Retrying, Dialing, Upgraded, StateChanged, Connected),
// and every heartbeat one more (HeartbeatRTT): a consumer that reads
// Events only now and then needs room for what happens meanwhile.
func WithEventBuffer(n int) Option {
	return optionFunc(func(c *config) error {
		if n < 1 {
			return fmt.Errorf("WithEventBuffer: size must be at least 1, got %d", n)
		}
		c.eventBuffer = n
		return nil
	})
}

// WithLogger sets a logger for the client's decisions (debug) and
// problems (warn, error). URLs and errors are redacted before they are
// logged. The client is silent without one.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) error {
		if l == nil {
			return errors.New("WithLogger: logger is nil")
		}
		c.logger = l
		return nil
	})
}

// discardHandler drops every record; Enabled saves building them.
type discardHandler struct{}

func (discardHandler) Enabled(context.Context, slog.Level) bool  { return false }
func (discardHandler) Handle(context.Context, slog.Record) error { return nil }
func (d discardHandler) WithAttrs([]slog.Attr) slog.Handler      { return d }
func (d discardHandler) WithGroup(string) slog.Handler           { return d }

// WithIdentifyLimiter paces identifies: the handshake takes l with
// Session.WaitIdentify right before it sends its identify, so that
// identifies arrive at the gateway spaced as l allows, however slow a
// dial or a HELLO was. A resume never takes it. Share one Limiter between
// the clients (shards) that share an identify budget, for example
// NewLimiter(1, 5*time.Second) for a gateway that allows one identify per
// 5 s, or a redislimiter.Limiter across processes. The wait is not part of
// the connect timeout; Close, Reconnect and the socket's end cut it. An
// IdentifyPaced event tells how long each identify waited; a Limiter that
// fails is a failed attempt, retried. A handshake in ModeIdentify that
// returns nil without WaitIdentify stops the client (ErrIdentifySkipped),
// and so does an identify-mode socket with no WithHandshake at all.
func WithIdentifyLimiter(l Limiter) Option {
	return optionFunc(func(c *config) error {
		if err := checkLimiter("WithIdentifyLimiter", l); err != nil {
			return err
		}
		c.identifyLimiter = l
		return nil
	})
}

// WithWriteLimiter paces Write: every Write waits on l first, bounded by
// its ctx and cut by Close, so that a burst never trips a gateway's send
// limit (for example NewLimiter(110, time.Minute) under a limit of 120 per
// minute, keeping room for heartbeats). The client's own frames (pings,
// pongs, close) and the beats of Session.Heartbeat do not wait.
func WithWriteLimiter(l Limiter) Option {
	return optionFunc(func(c *config) error {
		if err := checkLimiter("WithWriteLimiter", l); err != nil {
			return err
		}
		c.writeLimiter = l
		return nil
	})
}

func checkLimiter(option string, l Limiter) error {
	if l == nil {
		return fmt.Errorf("%s: limiter is nil", option)
	}
	if err := limiterError(l); err != nil {
		return fmt.Errorf("%s: %w", option, unprefixed(err))
	}
	return nil
}

// WithResume starts the client with a session an earlier process kept:
// its first attempt runs in ModeResume and dials resumeURL ("" dials New's
// URL), as later resume attempts do until the session ends (see
// SetResumeURL). If the resume fails with a re-identify, the next attempt
// identifies at New's URL. resumeURL is validated like New's and never
// printed unredacted.
func WithResume(resumeURL string) Option {
	return optionFunc(func(c *config) error {
		if resumeURL != "" {
			if _, err := parseURL(resumeURL); err != nil {
				return fmt.Errorf("WithResume: %w", err)
			}
		}
		c.resume, c.resumeURL = true, resumeURL
		return nil
	})
}

// WithOnMessage delivers every message to f on the socket's read
// goroutine, in order, with no goroutine hand-off: the fastest path, for
// feeds where a hand-off per message matters. Read and ReadMessage then
// return ErrOnMessage.
//
// m.Data is valid only during the call: the buffer is reused for the next
// message (copy what you keep), so steady-state delivery allocates
// nothing. f may call m.Session.Write (a reply sent from f is the
// zero-hand-off echo), m.Session.Reconnect, Close and CloseWith; Close from
// f returns once the client is CLOSED, and the read goroutine ends when f
// returns. A Close from any other goroutine returns after f did. The
// handshake of the next socket starts only after f returned for the last
// message of the one before. While f
// runs the socket is not read: a long f is a stalled consumer (the
// pressure reaches the peer through TCP), never a dead peer or a zombie.
// A panic in f stops the client with an error naming it; it never
// reaches the process.
func WithOnMessage(f func(m Message)) Option {
	return optionFunc(func(c *config) error {
		if f == nil {
			return errors.New("WithOnMessage: handler is nil")
		}
		c.onMessage = f
		return nil
	})
}
