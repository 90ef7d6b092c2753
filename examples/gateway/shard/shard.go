// Package shard is a small Discord-style gateway SDK built on resocket's
// embedding kit: a Shard is one gateway connection, resocket does its
// lifecycle and the shard speaks the protocol. Besides the standard
// library it imports only resocket and coder/websocket, so it reads, and
// copies, on its own. The example around it, examples/gateway, runs three
// shards against a fake gateway that follows the real rules.
package shard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
)

// Config is what a Shard needs.
type Config struct {
	URL       string
	Token     string
	ID, Count int
	Intents   int
	// IdentifyLimiter is shared by the shards of one max_concurrency
	// bucket: resocket.NewLimiter(1, 5*time.Second) on Discord.
	IdentifyLimiter resocket.Limiter
	// WriteLimiter keeps Send under the gateway's send limit.
	WriteLimiter resocket.Limiter
	// Resume, when set, is a session an earlier process kept (Suspend).
	Resume *Resumable
	// OnDispatch, when set, gets every dispatch once, in sequence order,
	// on the goroutine that called Run.
	OnDispatch func(Payload)
	// Options are added to the client's.
	Options []resocket.Option
}

// Resumable is what a process keeps to resume a session after a restart.
type Resumable struct {
	SessionID string
	Seq       int64
	ResumeURL string
}

// Shard is one gateway connection: resocket does the lifecycle; the shard
// speaks the protocol.
type Shard struct {
	cfg Config
	c   *resocket.Client

	mu        sync.Mutex
	sessionID string
	resumeURL string
	seq       int64
	// since is the socket (Session.Attempt) whose READY began the
	// session; messages from earlier sockets, still queued for Run,
	// belong to the session before it, whose last sequence is prevSeq.
	since   int
	prevSeq int64

	running atomic.Bool
	runDone chan struct{} // closed when Run returns
}

// New makes a shard. It does not connect: take Client().Events(),
// then call Run.
func New(cfg Config) (*Shard, error) {
	s := &Shard{cfg: cfg, runDone: make(chan struct{})}
	opts := []resocket.Option{resocket.WithHandshake(s.handshake)}
	if cfg.IdentifyLimiter != nil {
		opts = append(opts, resocket.WithIdentifyLimiter(cfg.IdentifyLimiter))
	}
	if cfg.WriteLimiter != nil {
		opts = append(opts, resocket.WithWriteLimiter(cfg.WriteLimiter))
	}
	if r := cfg.Resume; r != nil {
		s.sessionID, s.seq, s.resumeURL = r.SessionID, r.Seq, r.ResumeURL
		opts = append(opts, resocket.WithResume(r.ResumeURL))
	}
	c, err := resocket.New(cfg.URL, append(opts, cfg.Options...)...)
	if err != nil {
		return nil, err
	}
	s.c = c
	return s, nil
}

// ID is the shard's id.
func (s *Shard) ID() int { return s.cfg.ID }

// Client is the shard's resocket client.
func (s *Shard) Client() *resocket.Client { return s.c }

// Seq is the last dispatch sequence number seen.
func (s *Shard) Seq() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seq
}

// handshake reads hello, starts the heartbeat, then identifies (and waits
// for READY) or resumes (the replay, RESUMED or op 9 then come through
// Run, in order after anything the previous socket left unread).
func (s *Shard) handshake(ctx context.Context, sess *resocket.Session) error {
	var hello helloData
	if err := expect(ctx, sess.Conn, opHello, &hello); err != nil {
		return err
	}
	sess.Heartbeat(time.Duration(hello.HeartbeatInterval)*time.Millisecond, func(ctx context.Context) error {
		return sess.Conn.Write(ctx, websocket.MessageText, encode(opHeartbeat, s.Seq()))
	})
	s.mu.Lock()
	id, seq := s.sessionID, s.seq
	s.mu.Unlock()
	if sess.Mode == resocket.ModeResume {
		if id == "" {
			return resocket.Reidentify(errors.New("no session to resume"))
		}
		return sess.Conn.Write(ctx, websocket.MessageText, encode(opResume, resumeData{Token: s.cfg.Token, SessionID: id, Seq: seq}))
	}
	if err := sess.WaitIdentify(ctx); err != nil { // the identify gate, at the send
		return err
	}
	ident := identifyData{Token: s.cfg.Token, Intents: s.cfg.Intents, Shard: [2]int{s.cfg.ID, s.cfg.Count}}
	if err := sess.Conn.Write(ctx, websocket.MessageText, encode(opIdentify, ident)); err != nil {
		return err
	}
	for {
		p, err := read(ctx, sess.Conn)
		if err != nil {
			return err
		}
		switch {
		case p.Op == opHeartbeatAck:
			sess.AckHeartbeat()
		case p.Op == opInvalidSession:
			return resocket.Reidentify(errors.New("gateway refused the identify (op 9)"))
		case p.Op == opDispatch && p.T == "READY":
			return s.ready(p, sess.Attempt)
		}
	}
}

// ready starts a new session from READY, read on socket attempt: its own
// sequence, and its own URL for resumes.
func (s *Shard) ready(p Payload, attempt int) error {
	var r readyData
	if err := json.Unmarshal(p.D, &r); err != nil {
		return resocket.Fatal(fmt.Errorf("decoding READY: %w", err))
	}
	s.mu.Lock()
	s.prevSeq, s.since = s.seq, attempt
	s.sessionID, s.seq, s.resumeURL = r.SessionID, p.S, r.ResumeGatewayURL
	s.mu.Unlock()
	if s.cfg.OnDispatch != nil {
		s.cfg.OnDispatch(p)
	}
	return s.c.SetResumeURL(r.ResumeGatewayURL)
}

// Run connects and handles the gateway's messages until the shard is
// closed (nil) or stops for good (the reason). Everything it does in
// answer to a message (a beat, an ACK, a reconnect) goes through the
// message's Session, so that a message still queued when its socket ended
// cannot act on the next one.
func (s *Shard) Run(ctx context.Context) error {
	s.running.Store(true)
	defer close(s.runDone)
	if err := s.c.Connect(ctx); err != nil {
		return err
	}
	for {
		m, err := s.c.ReadMessage(ctx)
		if err != nil {
			if s.c.Err() == resocket.ErrClosed {
				return nil // Close or Suspend
			}
			return err
		}
		var p Payload
		if json.Unmarshal(m.Data, &p) != nil {
			continue
		}
		s.handle(m, p)
	}
}

func (s *Shard) handle(m resocket.Message, p Payload) {
	switch p.Op {
	case opDispatch:
		if fresh := s.advance(m.Attempt, p.S); fresh && s.cfg.OnDispatch != nil {
			s.cfg.OnDispatch(p)
		}
	case opHeartbeatAck:
		m.Session.AckHeartbeat()
	case opHeartbeat: // the gateway asks for a beat now, on this socket
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		m.Session.Write(ctx, websocket.MessageText, encode(opHeartbeat, s.Seq()))
		cancel()
	case opReconnect:
		m.Session.Reconnect(closeRestart, "gateway asked to reconnect", resocket.ActionRetry)
	case opInvalidSession:
		var resumable bool
		json.Unmarshal(p.D, &resumable)
		if resumable {
			m.Session.Reconnect(closeRestart, "invalid session, resumable", resocket.ActionRetry)
		} else {
			m.Session.Reconnect(closeRestart, "invalid session", resocket.ActionReidentify)
		}
	}
}

// advance records dispatch seq, read from socket attempt, and reports
// whether it is new: a resume may replay what was already seen, and a
// dispatch of the session before the current one (still queued when the
// new session's READY came) counts against that session's sequence, not
// the new one's.
func (s *Shard) advance(attempt int, seq int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	last := &s.seq
	if attempt < s.since {
		last = &s.prevSeq
	}
	if seq <= *last {
		return false
	}
	*last = seq
	return true
}

// Send sends an application message, paced by the write limiter.
func (s *Shard) Send(ctx context.Context, op int, d any) error {
	return s.c.Write(ctx, websocket.MessageText, encode(op, d))
}

// Suspend closes the shard for a deploy: it closes with 4000, which keeps
// the session resumable, and returns what the next process needs, once
// Run has finished with the message it was handling (its sequence number
// counts).
func (s *Shard) Suspend() Resumable {
	s.c.CloseWith(closeRestart, "restarting")
	if s.running.Load() {
		<-s.runDone
	}
	return s.State()
}

// State is what a process would keep now to resume the session later:
// save it after each dispatch, and a process that dies without Suspend
// can be resumed from it (the gateway replays what came after Seq).
func (s *Shard) State() Resumable {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Resumable{SessionID: s.sessionID, Seq: s.seq, ResumeURL: s.resumeURL}
}

// Close closes the shard; the session ends.
func (s *Shard) Close() { s.c.Close() }

// expect reads one payload and requires op, decoding its data into v.
func expect(ctx context.Context, conn *websocket.Conn, op int, v any) error {
	p, err := read(ctx, conn)
	if err != nil {
		return err
	}
	if p.Op != op {
		return resocket.Fatal(fmt.Errorf("expected op %d, got op %d", op, p.Op))
	}
	if err := json.Unmarshal(p.D, v); err != nil {
		return resocket.Fatal(fmt.Errorf("decoding op %d: %w", op, err))
	}
	return nil
}

func read(ctx context.Context, conn *websocket.Conn) (Payload, error) {
	_, b, err := conn.Read(ctx)
	if err != nil {
		return Payload{}, err
	}
	var p Payload
	if err := json.Unmarshal(b, &p); err != nil {
		return Payload{}, fmt.Errorf("decoding %.60q: %w", b, err)
	}
	return p, nil
}
