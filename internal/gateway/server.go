package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Config sets the gateway's rules.
type Config struct {
	Token             string        // the only token accepted; others are closed with 4004
	HeartbeatInterval time.Duration // announced in hello
	MaxConcurrency    int           // identify buckets: shard id % MaxConcurrency
	IdentifyEvery     time.Duration // at most one identify per bucket in this long
	SendLimit         int           // at most this many messages from a socket...
	SendWindow        time.Duration // ...in any window this long, or 4008
	// DailyIdentifies, when set, is the bot's identify budget per
	// DailyWindow (24 h when 0): an identify over it is refused with
	// op 9 and recorded as "identify-over-budget".
	DailyIdentifies int
	DailyWindow     time.Duration
	// SessionTTL, when set, forgets a session that long after its last
	// socket closed resumable, unless a resume came first.
	SessionTTL time.Duration
}

// Record is one thing the gateway saw.
type Record struct {
	At     time.Time
	Shard  int
	Kind   string // identify, resume, resume-refused, heartbeat, message, closed
	Path   string // the URL path of the socket
	Detail string
}

// Server is a fake gateway on 127.0.0.1.
type Server struct {
	URL       string // the main gateway: identify here
	ResumeURL string // the resume gateway, announced in READY: op 6 only here

	cfg Config
	ln  net.Listener
	srv *http.Server
	wg  sync.WaitGroup

	mu           sync.Mutex
	conns        map[*conn]struct{}
	sessions     map[string]*session
	lastIdentify map[int]time.Time // per bucket
	records      []Record
	noAck        map[int]bool // shards whose heartbeats go unacknowledged
	nextID       int
	daily        []time.Time // identifies within the daily window
}

type session struct {
	id     string
	shard  int
	seq    int64
	events []Payload // every dispatch, for replay
	live   int       // sockets on it now
	expiry *time.Timer
}

// Start serves a fake gateway with cfg's rules.
func Start(cfg Config) (*Server, error) {
	if cfg.MaxConcurrency < 1 || cfg.HeartbeatInterval <= 0 || cfg.SendLimit < 1 || cfg.SendWindow <= 0 {
		return nil, errors.New("gateway: Config needs MaxConcurrency, HeartbeatInterval, SendLimit and SendWindow")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:          "ws://" + ln.Addr().String() + "/?v=10&encoding=json",
		ResumeURL:    "ws://" + ln.Addr().String() + "/resume",
		cfg:          cfg,
		ln:           ln,
		conns:        map[*conn]struct{}{},
		sessions:     map[string]*session{},
		lastIdentify: map[int]time.Time{},
		noAck:        map[int]bool{},
	}
	s.srv = &http.Server{
		Handler: http.HandlerFunc(s.serve),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, tcpKey{}, c)
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.srv.Serve(ln)
	}()
	return s, nil
}

// Close stops the gateway and waits for its goroutines.
func (s *Server) Close() {
	s.srv.Close()
	s.each(-1, func(c *conn) { c.ws.CloseNow() })
	s.wg.Wait()
}

// Records returns what the gateway saw of kind ("" for all).
func (s *Server) Records(kind string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, r := range s.records {
		if kind == "" || r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

func (s *Server) record(shard int, kind, path, detail string) {
	s.mu.Lock()
	s.records = append(s.records, Record{At: time.Now(), Shard: shard, Kind: kind, Path: path, Detail: detail})
	s.mu.Unlock()
}

// each runs f on the live sockets of shard (every shard when shard < 0).
func (s *Server) each(shard int, f func(*conn)) {
	s.mu.Lock()
	var cs []*conn
	for c := range s.conns {
		if shard < 0 || c.shard == shard {
			cs = append(cs, c)
		}
	}
	s.mu.Unlock()
	for _, c := range cs {
		f(c)
	}
}

// Drop resets the TCP connections of shard with no close frame (a 1006).
func (s *Server) Drop(shard int) {
	s.each(shard, func(c *conn) {
		if tc, ok := c.tcp.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.tcp.Close()
	})
}

// RequestReconnect sends op 7 to shard.
func (s *Server) RequestReconnect(shard int) {
	s.each(shard, func(c *conn) { c.send(OpReconnect, nil, 0, "") })
}

// InvalidateSession sends op 9 to shard; with resumable false the session
// is forgotten.
func (s *Server) InvalidateSession(shard int, resumable bool) {
	s.each(shard, func(c *conn) {
		if !resumable {
			s.mu.Lock()
			if sess := c.sess; sess != nil {
				delete(s.sessions, sess.id)
			}
			s.mu.Unlock()
		}
		c.send(OpInvalidSession, resumable, 0, "")
	})
}

// CloseShard closes shard's sockets with code.
func (s *Server) CloseShard(shard int, code websocket.StatusCode, reason string) {
	s.each(shard, func(c *conn) { c.ws.Close(code, reason) })
}

// SetAck turns the heartbeat ACKs for shard off (a zombie path) or on.
func (s *Server) SetAck(shard int, on bool) {
	s.mu.Lock()
	s.noAck[shard] = !on
	s.mu.Unlock()
}

// Dispatch adds an event to the sessions of shard (every shard when
// shard < 0), numbered in sequence and kept for a resume to replay, and
// sends it on the session's live socket, if there is one.
func (s *Server) Dispatch(shard int, t string, d any) {
	raw, _ := json.Marshal(d)
	s.mu.Lock()
	var live []*conn
	var events []Payload
	for _, sess := range s.sessions {
		if shard >= 0 && sess.shard != shard {
			continue
		}
		sess.seq++
		p := Payload{Op: OpDispatch, D: raw, S: sess.seq, T: t}
		sess.events = append(sess.events, p)
		for c := range s.conns {
			if c.sess == sess {
				live, events = append(live, c), append(events, p)
			}
		}
	}
	s.mu.Unlock()
	for i, c := range live {
		c.sendPayload(events[i])
	}
}

// conn is one gateway socket.
type conn struct {
	s     *Server
	ws    *websocket.Conn
	tcp   net.Conn
	path  string
	mu    sync.Mutex
	sess  *session
	shard int // -1 until identified or resumed
	sent  []time.Time
}

func (c *conn) shardID() int {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.shard
}

func (c *conn) send(op int, d any, seq int64, t string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.ws.Write(ctx, websocket.MessageText, Encode(op, d, seq, t))
}

func (c *conn) sendPayload(p Payload) {
	b, _ := json.Marshal(p)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.ws.Write(ctx, websocket.MessageText, b)
}

type tcpKey struct{}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.wg.Add(1)
	defer s.wg.Done()
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	tcp, _ := r.Context().Value(tcpKey{}).(net.Conn)
	c := &conn{s: s, ws: ws, tcp: tcp, path: r.URL.Path, shard: -1}
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	c.send(OpHello, Hello{HeartbeatInterval: s.cfg.HeartbeatInterval.Milliseconds()}, 0, "")
	err = c.readLoop()
	s.closed(c, err)
}

// closed forgets a session the client ended with 1000 or 1001, as a real
// gateway does; any other end keeps it resumable.
func (s *Server) closed(c *conn, err error) {
	code := websocket.CloseStatus(err)
	s.record(c.shardID(), "closed", c.path, fmt.Sprint(int(code)))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := c.sess
	if sess == nil {
		return
	}
	sess.live--
	switch {
	case code == websocket.StatusNormalClosure || code == websocket.StatusGoingAway:
		delete(s.sessions, sess.id)
	case s.cfg.SessionTTL > 0 && sess.live == 0:
		if sess.expiry != nil {
			sess.expiry.Stop()
		}
		sess.expiry = time.AfterFunc(s.cfg.SessionTTL, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if sess.live == 0 && s.sessions[sess.id] == sess {
				delete(s.sessions, sess.id)
				s.records = append(s.records, Record{At: time.Now(), Shard: sess.shard, Kind: "session-expired", Detail: sess.id})
			}
		})
	}
}

// attach makes c the session's live socket. The caller holds s.mu.
func (s *Server) attach(c *conn, sess *session) {
	c.sess, c.shard = sess, sess.shard
	sess.live++
	if sess.expiry != nil {
		sess.expiry.Stop()
		sess.expiry = nil
	}
}

// overBudget counts an identify against the daily budget. The caller
// holds s.mu.
func (s *Server) overBudget(now time.Time) bool {
	if s.cfg.DailyIdentifies <= 0 {
		return false
	}
	window := s.cfg.DailyWindow
	if window <= 0 {
		window = 24 * time.Hour
	}
	keep := s.daily[:0]
	for _, t := range s.daily {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	s.daily = keep
	if len(s.daily) >= s.cfg.DailyIdentifies {
		return true
	}
	s.daily = append(s.daily, now)
	return false
}

// readLoop handles what the client sends until the socket ends.
func (c *conn) readLoop() error {
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			return err
		}
		if !c.withinSendLimit() {
			c.ws.Close(CloseRateLimited, "you are being rate limited")
			return websocket.CloseError{Code: CloseRateLimited}
		}
		var p Payload
		if json.Unmarshal(b, &p) != nil {
			c.ws.Close(CloseDecodeError, "decode error")
			return websocket.CloseError{Code: CloseDecodeError}
		}
		if err := c.handle(p); err != nil {
			return err
		}
	}
}

// withinSendLimit counts a message against the send limit.
func (c *conn) withinSendLimit() bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := c.sent[:0]
	for _, t := range c.sent {
		if now.Sub(t) < c.s.cfg.SendWindow {
			keep = append(keep, t)
		}
	}
	c.sent = append(keep, now)
	return len(c.sent) <= c.s.cfg.SendLimit
}

func (c *conn) handle(p Payload) error {
	s := c.s
	switch p.Op {
	case OpHeartbeat:
		s.record(c.shardID(), "heartbeat", c.path, string(p.D))
		s.mu.Lock()
		quiet := s.noAck[c.shard]
		s.mu.Unlock()
		if !quiet {
			c.send(OpHeartbeatAck, nil, 0, "")
		}
		return nil
	case OpIdentify:
		return c.identify(p)
	case OpResume:
		return c.resume(p)
	}
	if c.shardID() < 0 {
		c.ws.Close(CloseNotAuthenticated, "not authenticated")
		return websocket.CloseError{Code: CloseNotAuthenticated}
	}
	if p.Op != OpDispatch {
		s.record(c.shardID(), "message", c.path, string(p.D))
		return nil
	}
	c.ws.Close(CloseUnknownOpcode, "unknown opcode")
	return websocket.CloseError{Code: CloseUnknownOpcode}
}

func (c *conn) identify(p Payload) error {
	s := c.s
	var id Identify
	json.Unmarshal(p.D, &id)
	if id.Token != s.cfg.Token {
		c.ws.Close(CloseAuthFailed, "authentication failed")
		return websocket.CloseError{Code: CloseAuthFailed}
	}
	bucket := id.Shard[0] % s.cfg.MaxConcurrency
	s.mu.Lock()
	last, seen := s.lastIdentify[bucket]
	tooSoon := seen && time.Since(last) < s.cfg.IdentifyEvery
	s.lastIdentify[bucket] = time.Now()
	over := !tooSoon && s.overBudget(time.Now())
	s.mu.Unlock()
	if over {
		s.record(id.Shard[0], "identify-over-budget", c.path, "")
		c.send(OpInvalidSession, false, 0, "")
		return nil
	}
	if tooSoon {
		s.record(id.Shard[0], "identify-too-soon", c.path, fmt.Sprintf("bucket %d, %v after the last", bucket, time.Since(last)))
		c.send(OpInvalidSession, false, 0, "")
		return nil
	}
	s.record(id.Shard[0], "identify", c.path, "")
	s.mu.Lock()
	s.nextID++
	sess := &session{id: fmt.Sprintf("session-%d", s.nextID), shard: id.Shard[0], seq: 1}
	s.sessions[sess.id] = sess
	s.attach(c, sess)
	ready := Ready{SessionID: sess.id, ResumeGatewayURL: s.ResumeURL, Shard: id.Shard}
	raw, _ := json.Marshal(ready)
	ev := Payload{Op: OpDispatch, D: raw, S: 1, T: "READY"}
	sess.events = append(sess.events, ev)
	s.mu.Unlock()
	c.sendPayload(ev)
	return nil
}

func (c *conn) resume(p Payload) error {
	s := c.s
	var r Resume
	json.Unmarshal(p.D, &r)
	s.mu.Lock()
	sess := s.sessions[r.SessionID]
	s.mu.Unlock()
	switch {
	case r.Token != s.cfg.Token:
		c.ws.Close(CloseAuthFailed, "authentication failed")
		return websocket.CloseError{Code: CloseAuthFailed}
	case c.path != "/resume":
		s.record(-1, "resume-refused", c.path, "not at the resume URL")
		c.send(OpInvalidSession, false, 0, "")
		return nil
	case sess == nil:
		s.record(-1, "resume-refused", c.path, "unknown session "+r.SessionID)
		c.send(OpInvalidSession, false, 0, "")
		return nil
	}
	s.mu.Lock()
	s.attach(c, sess)
	var replay []Payload
	for _, ev := range sess.events {
		if ev.S > r.Seq {
			replay = append(replay, ev)
		}
	}
	sess.seq++
	resumed := Payload{Op: OpDispatch, S: sess.seq, T: "RESUMED"}
	sess.events = append(sess.events, resumed)
	s.mu.Unlock()
	s.record(sess.shard, "resume", c.path, fmt.Sprintf("from seq %d, %d replayed", r.Seq, len(replay)))
	for _, ev := range append(replay, resumed) {
		c.sendPayload(ev)
	}
	return nil
}
