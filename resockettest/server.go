package resockettest

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
)

// Server is a WebSocket server on 127.0.0.1 (or Start's address). Each
// connection takes the next queued Script (given to NewServer, Start or
// Queue); once the queue is empty, connections go to the server's
// handler, which by default echoes until the client leaves. SetDefault,
// SetPlanner and SetHandler each replace that handler.
//
// Connections are served concurrently, each on its own goroutine. All
// methods are safe for concurrent use, also from handlers and Steps,
// except Close there: it waits for every handler to return.
type Server struct {
	// URL is ws://host:port/.
	URL string

	ln     net.Listener
	http   *http.Server
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	queue    []Script
	handler  func(ctx context.Context, p *Peer) error
	unkept   bool // SetRecording(false)
	conns    []*ConnInfo
	accepted int
	tcp      map[net.Conn]struct{}
	closed   bool
}

// echoScript is what a connection gets when nothing else was said.
var echoScript = Script{Steps: []Step{Echo()}}

type connKey struct{}

// NewServer starts a Server on 127.0.0.1 with scripts, closed when the
// test ends (with no goroutine left); it fails the test if it cannot
// listen.
func NewServer(t testing.TB, scripts ...Script) *Server {
	t.Helper()
	s, err := Start("", scripts...)
	if err != nil {
		t.Fatalf("resockettest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts a Server outside a test (an example, a program): it
// listens on addr, host:port as for net.Listen, or 127.0.0.1 on a free
// port when addr is "", and serves scripts. The caller must Close it.
func Start(addr string, scripts ...Script) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		URL:     "ws://" + ln.Addr().String() + "/",
		ln:      ln,
		ctx:     ctx,
		cancel:  cancel,
		handler: echoScript.serve,
		queue:   scripts,
		tcp:     map[net.Conn]struct{}{},
	}
	s.http = &http.Server{
		Handler:     http.HandlerFunc(s.serve),
		BaseContext: func(net.Listener) context.Context { return ctx },
		ConnContext: s.track,
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				s.untrack(c)
			}
		},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.http.Serve(ln)
	}()
	return s, nil
}

// track keeps c for DropAll and hands it to the request's handler.
func (s *Server) track(ctx context.Context, c net.Conn) context.Context {
	s.mu.Lock()
	s.tcp[c] = struct{}{}
	s.mu.Unlock()
	return context.WithValue(ctx, connKey{}, c)
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.tcp, c)
	s.mu.Unlock()
}

// Addr returns the listening address, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Queue adds scripts, one per future connection, after those already
// queued.
func (s *Server) Queue(scripts ...Script) {
	s.mu.Lock()
	s.queue = append(s.queue, scripts...)
	s.mu.Unlock()
}

// SetDefault makes every connection that finds the queue empty follow p:
// the last Script, repeated, for a server that answers every connection
// alike.
func (s *Server) SetDefault(p Script) { s.setHandler(p.serve) }

// SetPlanner makes every connection that finds the queue empty ask f for
// its Script, with the upgrade request and the connection's index (from
// 1). f is called on the connection's goroutine, concurrently for
// different connections. nil restores the default, an echo.
func (s *Server) SetPlanner(f func(r *http.Request, index int) Script) {
	if f == nil {
		s.setHandler(nil)
		return
	}
	s.setHandler(func(ctx context.Context, p *Peer) error {
		return f(p.Request, p.Info.Index).serve(ctx, p)
	})
}

// SetHandler makes h serve every connection that finds the queue empty:
// the stateful mode, for a gateway whose sessions, sequence numbers and
// replays span connections. h gets the Peer before the upgrade is
// answered: it calls p.Accept (or answers with an upgrade fault), then
// plays the connection with the Peer's methods and any Step; p.Info.Index
// and p.Request tell which connection it is.
//
// Handlers of different connections run concurrently, each on its
// connection's goroutine (p.Info.Index numbers the connections in the
// order they arrived): state they share lives in h's closure and needs a
// mutex. ctx ends when the server closes, and h must return then. When h returns nil with the socket
// open, the server holds it as it holds a Script's, until the client
// leaves; an error ends the socket. An upgrade h left unanswered gets a
// 500 that says so. nil restores the default, an echo.
func (s *Server) SetHandler(h func(ctx context.Context, p *Peer) error) { s.setHandler(h) }

func (s *Server) setHandler(h func(ctx context.Context, p *Peer) error) {
	if h == nil {
		h = echoScript.serve
	}
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

// SetRecording turns the server's records on (the default) or off for
// connections that arrive from then on. On, the server keeps every
// connection's ConnInfo (Conns, Modes) and every message read from it
// (ConnInfo.Received), whatever serves it. Off, it keeps nothing, so that
// a soak does not grow with its connections: Accepted still counts, and
// each Peer still has its Info, which receives nothing.
func (s *Server) SetRecording(on bool) {
	s.mu.Lock()
	s.unkept = !on
	s.mu.Unlock()
}

// Conns returns the connections recorded so far, in order.
func (s *Server) Conns() []*ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*ConnInfo(nil), s.conns...)
}

// Modes returns the mode each recorded connection identified in (SetMode,
// ReadMode), in order; "" for a connection that recorded none.
func (s *Server) Modes() []string {
	var out []string
	for _, c := range s.Conns() {
		out = append(out, c.Mode())
	}
	return out
}

// Accepted returns how many upgrade requests the server took, answered or
// not, recorded or not.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
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
// handler to return. It may be called more than once.
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

// serve runs one connection's handler, then holds or closes its socket.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	tcp, _ := r.Context().Value(connKey{}).(net.Conn)
	p, h, ok := s.admit(w, r, tcp)
	if !ok {
		return
	}
	defer s.wg.Done()
	var err error
	returned := false
	defer func() {
		conn, taken := p.end(err)
		if taken { // net/http no longer sees this connection close
			defer s.untrack(tcp) // after the hold: DropAll reaches a held socket
		}
		if conn == nil {
			return
		}
		if returned && err == nil {
			hold(s.ctx, conn)
		}
		conn.CloseNow()
	}()
	err = h(s.ctx, p)
	returned = true
}

// admit numbers and records a connection and picks what serves it.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, tcp net.Conn) (*Peer, func(context.Context, *Peer) error, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, false
	}
	s.wg.Add(1)
	s.accepted++
	info := &ConnInfo{Index: s.accepted, Header: r.Header.Clone(), URL: r.RequestURI,
		Path: r.URL.Path, Query: r.URL.Query(), keep: !s.unkept}
	if info.keep {
		s.conns = append(s.conns, info)
	}
	h := s.handler
	if len(s.queue) > 0 {
		h, s.queue = s.queue[0].serve, s.queue[1:]
	}
	return &Peer{TCP: tcp, Info: info, Request: r, w: w}, h, true
}
