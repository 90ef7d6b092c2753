package resockettest

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Script is what the server does with one connection: answer the upgrade
// (after Delay, with Status, Header and Body instead of upgrading, or with
// a broken 101), then run Steps on the socket. The zero Script upgrades
// and holds the socket, answering pings, until the client leaves.
type Script struct {
	// Delay waits before answering the upgrade.
	Delay time.Duration
	// Status, when not 0, answers the upgrade with this HTTP status,
	// Header and Body instead of upgrading.
	Status int
	Header http.Header
	Body   string
	// BadAccept answers 101 with a wrong Sec-WebSocket-Accept.
	BadAccept bool
	// ResetUpgrade answers the upgrade request with a TCP reset: the
	// client sees a network error and no response.
	ResetUpgrade bool
	// Trickle answers a valid 101 one byte per Trickle, then hangs up: a
	// slow-trickle upgrade.
	Trickle time.Duration
	// Steps run in order on the upgraded socket: the server side of a
	// handshake (Do, ReadMode), messages (Send), and an ending (Close,
	// Reset, Hangup, Silent, Echo). When they end with the socket still
	// open, the server holds it, reading (answering pings, recording
	// nothing) until the client goes away. A Step that returns an error
	// ends the socket.
	Steps []Step
}

// Step is one scripted action on an upgraded socket. Any
// func(ctx, *Peer) error is a Step; ctx ends when the server closes.
type Step func(ctx context.Context, p *Peer) error

// Peer is the server side of one upgraded connection.
type Peer struct {
	Conn *websocket.Conn
	TCP  net.Conn
	Info *ConnInfo
}

// ConnInfo records one connection.
type ConnInfo struct {
	Index  int         // 1 for the first connection
	Header http.Header // the upgrade request's headers
	URL    string      // the request URI: path and query
	Path   string      // the URL's path
	Query  url.Values  // the URL's query

	mu       sync.Mutex
	received []string
	mode     string
}

// Mode returns what SetMode or ReadMode recorded: the mode in which the
// client identified on this connection.
func (c *ConnInfo) Mode() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mode
}

// SetMode records the mode in which the client identified on this
// connection; call it from a handshake Step.
func (c *ConnInfo) SetMode(mode string) {
	c.mu.Lock()
	c.mode = mode
	c.mu.Unlock()
}

// Received returns the messages the steps read from the client so far
// (Read, ReadMode, Echo), in order.
func (c *ConnInfo) Received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.received...)
}

func (c *ConnInfo) record(m string) {
	c.mu.Lock()
	c.received = append(c.received, m)
	c.mu.Unlock()
}

// Server is a WebSocket server on 127.0.0.1 that follows a Script per
// connection. Scripts are taken one per connection, in the order given
// (to NewServer, Start or Queue); a connection that finds none left
// follows the default Script, which echoes until the client leaves (see
// SetDefault and SetPlanner). All its methods are safe for concurrent use.
type Server struct {
	// URL is ws://127.0.0.1:port/.
	URL string

	ln     net.Listener
	http   *http.Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	plans   []Script
	def     Script
	planner func(r *http.Request, index int) Script
	conns   []*ConnInfo
	count   int
	tcp     map[net.Conn]struct{}
	closed  bool
}

type connKey struct{}

// NewServer starts a Server with scripts, closed when the test ends (with
// no goroutine left); it fails the test if it cannot listen.
func NewServer(t testing.TB, scripts ...Script) *Server {
	t.Helper()
	s, err := Start(scripts...)
	if err != nil {
		t.Fatalf("resockettest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start listens on 127.0.0.1 on a free port and serves scripts. The
// caller must Close it.
func Start(scripts ...Script) (*Server, error) {
	return StartOn("127.0.0.1:0", scripts...)
}

// StartOn listens on addr (a loopback address) and serves scripts. The
// caller must Close it.
func StartOn(addr string, scripts ...Script) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		URL:    "ws://" + ln.Addr().String() + "/",
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		def:    Script{Steps: []Step{Echo()}},
		plans:  scripts,
		tcp:    map[net.Conn]struct{}{},
	}
	s.http = &http.Server{
		Handler:     http.HandlerFunc(s.serve),
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			s.mu.Lock()
			s.tcp[c] = struct{}{}
			s.mu.Unlock()
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				s.mu.Lock()
				delete(s.tcp, c)
				s.mu.Unlock()
			}
		},
		ErrorLog: nil,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.http.Serve(ln)
	}()
	return s, nil
}

// Addr returns the listening address, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Queue adds scripts, one per future connection, after those already
// queued.
func (s *Server) Queue(scripts ...Script) {
	s.mu.Lock()
	s.plans = append(s.plans, scripts...)
	s.mu.Unlock()
}

// SetDefault sets the Script for connections that find the queue empty:
// the last Script, repeated, for a server that should answer every
// connection alike.
func (s *Server) SetDefault(p Script) {
	s.mu.Lock()
	s.def = p
	s.mu.Unlock()
}

// SetPlanner makes every connection that finds the queue empty ask f for
// its Script, with the upgrade request and the connection's index (from
// 1). f is called with the server's lock held and must not call the
// server. Connections planned this way keep no records (Conns), so that
// a long soak does not grow.
func (s *Server) SetPlanner(f func(r *http.Request, index int) Script) {
	s.mu.Lock()
	s.planner = f
	s.mu.Unlock()
}

// Conns returns the connections seen so far, in order.
func (s *Server) Conns() []*ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*ConnInfo(nil), s.conns...)
}

// Modes returns the mode each connection recorded (SetMode, ReadMode), in
// order; "" for a connection that recorded none.
func (s *Server) Modes() []string {
	var out []string
	for _, c := range s.Conns() {
		out = append(out, c.Mode())
	}
	return out
}

// Accepted returns how many connections reached the handler.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) + s.count
}

// DropAll resets every open TCP connection, as a crashing server would.
func (s *Server) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.tcp {
		reset(c)
	}
}

// Close stops the server, resets every connection and waits for every
// handler to return.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.http.Close()
	s.DropAll()
	s.wg.Wait()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	info := &ConnInfo{Index: len(s.conns) + s.count + 1, Header: r.Header.Clone(), URL: r.RequestURI,
		Path: r.URL.Path, Query: r.URL.Query()}
	plan := s.def
	switch {
	case len(s.plans) > 0:
		plan, s.plans = s.plans[0], s.plans[1:]
	case s.planner != nil:
		plan = s.planner(r, info.Index)
	}
	if s.planner == nil {
		s.conns = append(s.conns, info)
	} else {
		s.count++ // a planned soak keeps no per-connection records
	}
	s.mu.Unlock()

	ctx := s.ctx
	if !sleep(ctx, plan.Delay) {
		return
	}
	tcp, _ := r.Context().Value(connKey{}).(net.Conn)
	defer func() {
		s.mu.Lock()
		delete(s.tcp, tcp)
		s.mu.Unlock()
	}()
	switch {
	case plan.Status != 0:
		for k, v := range plan.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(plan.Status)
		fmt.Fprint(w, plan.Body)
		return
	case plan.ResetUpgrade:
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				reset(c)
			}
		}
		return
	case plan.BadAccept:
		s.rawUpgrade(ctx, w, "not-the-right-accept-key", 0)
		return
	case plan.Trickle > 0:
		s.rawUpgrade(ctx, w, acceptKey(r.Header.Get("Sec-WebSocket-Key")), plan.Trickle)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return
	}
	conn.SetReadLimit(-1)
	defer conn.CloseNow()
	p := &Peer{Conn: conn, TCP: tcp, Info: info}
	for _, step := range plan.Steps {
		if err := step(ctx, p); err != nil {
			return
		}
	}
	// Keep the socket up, answering pings, until the client leaves.
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			return
		}
	}
}

// rawUpgrade writes a 101 response by hand with the given accept key, one
// byte per trickle when trickle > 0, then holds the connection until the
// client hangs up or the server closes.
func (s *Server) rawUpgrade(ctx context.Context, w http.ResponseWriter, accept string, trickle time.Duration) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + accept + "\r\n\r\n"
	if trickle == 0 {
		// Hang up after the response: a client reading a body after the
		// bad 101 sees its end at once.
		brw.WriteString(resp)
		brw.Flush()
		return
	} else {
		for i := 0; i < len(resp); i++ {
			if _, err := c.Write([]byte{resp[i]}); err != nil || !sleep(ctx, trickle) {
				return
			}
		}
	}
	bufio.NewReader(c).WriteTo(discard{})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// reset closes c with an RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

var errStop = errors.New("resockettest: socket ended by the script")

// Send sends each message as text.
func Send(msgs ...string) Step {
	return func(ctx context.Context, p *Peer) error {
		for _, m := range msgs {
			if err := p.Conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
				return err
			}
		}
		return nil
	}
}

// SendN sends n text messages, fmt.Sprintf(format, i) for i from 1 to n.
func SendN(n int, format string) Step {
	return func(ctx context.Context, p *Peer) error {
		for i := 1; i <= n; i++ {
			if err := p.Conn.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(format, i))); err != nil {
				return err
			}
		}
		return nil
	}
}

// SendBytes sends one binary message of n bytes.
func SendBytes(n int) Step {
	return func(ctx context.Context, p *Peer) error {
		return p.Conn.Write(ctx, websocket.MessageBinary, make([]byte, n))
	}
}

// ReadMode reads one message, the client's handshake saying which mode it
// identifies in, and records it as the connection's mode (see Modes).
func ReadMode() Step {
	return func(ctx context.Context, p *Peer) error {
		_, b, err := p.Conn.Read(ctx)
		if err != nil {
			return err
		}
		p.Info.record(string(b))
		p.Info.SetMode(string(b))
		return nil
	}
}

// Read reads n messages from the client and records them.
func Read(n int) Step {
	return func(ctx context.Context, p *Peer) error {
		for i := 0; i < n; i++ {
			_, b, err := p.Conn.Read(ctx)
			if err != nil {
				return err
			}
			p.Info.record(string(b))
		}
		return nil
	}
}

// Close sends a close frame with code and reason and waits briefly for
// the client's answer.
func Close(code websocket.StatusCode, reason string) Step {
	return func(ctx context.Context, p *Peer) error {
		p.Conn.Close(code, reason)
		return errStop
	}
}

// Reset drops the TCP connection with an RST, without a close frame.
func Reset() Step {
	return func(ctx context.Context, p *Peer) error {
		reset(p.TCP)
		return errStop
	}
}

// Hangup closes the TCP connection with a FIN, without a close frame.
func Hangup() Step {
	return func(ctx context.Context, p *Peer) error {
		p.TCP.Close()
		return errStop
	}
}

// Silent stops reading, so that pings are never answered, and keeps the
// TCP connection open for d (until the server closes when d is 0), then
// hangs up.
func Silent(d time.Duration) Step {
	return func(ctx context.Context, p *Peer) error {
		if d == 0 {
			<-ctx.Done()
		} else {
			sleep(ctx, d)
		}
		return errStop
	}
}

// Sleep waits d while not reading.
func Sleep(d time.Duration) Step {
	return func(ctx context.Context, p *Peer) error {
		if !sleep(ctx, d) {
			return ctx.Err()
		}
		return nil
	}
}

// Echo records and sends back every message until the client goes away.
func Echo() Step { return EchoN(-1) }

// Raw writes bytes straight to the TCP connection, for frames that break
// the protocol.
func Raw(b []byte) Step {
	return func(ctx context.Context, p *Peer) error {
		_, err := p.TCP.Write(b)
		return err
	}
}

// Do runs f, for anything the other steps do not cover.
func Do(f func(ctx context.Context, p *Peer) error) Step { return f }

// EchoN echoes n messages (all of them when n < 0), recording them, then
// goes on to the next step.
func EchoN(n int) Step {
	return func(ctx context.Context, p *Peer) error {
		for i := 0; n < 0 || i < n; i++ {
			typ, b, err := p.Conn.Read(ctx)
			if err != nil {
				return err
			}
			p.Info.record(string(b))
			if err := p.Conn.Write(ctx, typ, b); err != nil {
				return err
			}
		}
		return nil
	}
}

// EchoThen echoes (and records) messages for d, then runs fault, which is
// expected to end the socket.
func EchoThen(d time.Duration, fault Step) Step {
	return func(ctx context.Context, p *Peer) error {
		done := make(chan struct{})
		go func() {
			defer close(done)
			Echo()(ctx, p)
		}()
		sleep(ctx, d)
		err := fault(ctx, p)
		p.Conn.CloseNow()
		<-done
		return err
	}
}

// SendLarge sends one binary message of n bytes, streamed from a small
// buffer so that the server itself holds little memory.
func SendLarge(n int) Step {
	return func(ctx context.Context, p *Peer) error {
		w, err := p.Conn.Writer(ctx, websocket.MessageBinary)
		if err != nil {
			return err
		}
		buf := make([]byte, 32<<10)
		for n > 0 {
			k := min(n, len(buf))
			if _, err := w.Write(buf[:k]); err != nil {
				return err
			}
			n -= k
		}
		return w.Close()
	}
}

// Frame returns a single unmasked server frame with FIN set, for Raw.
func Frame(opcode byte, payload []byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, payload...)
}
