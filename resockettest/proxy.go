package resockettest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Settings shape the traffic of one proxied connection, in both
// directions. The zero value passes bytes straight through.
type Settings struct {
	Latency   time.Duration // added to every chunk, each way
	Bandwidth int           // bytes per second each way; 0 is unlimited
	Blackhole bool          // swallow everything, forward nothing, not even a FIN
}

// Proxy is a TCP proxy on 127.0.0.1 between a client and one target.
// Per connection and on command, while connections are live, it passes
// bytes through, adds latency, throttles bandwidth, black-holes (takes
// bytes and forwards nothing while the TCP connection stays open: the
// silent network only a heartbeat notices), half-closes or resets.
// What one side does to its TCP connection reaches the other in order: a
// FIN passes on after the bytes sent before it, and so does a reset (given
// a second for them to go out); a side that can no longer be written to
// resets both.
type Proxy struct {
	// URL is ws://127.0.0.1:port/, the proxy's address as a WebSocket URL.
	URL string

	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	def    Settings
	conns  []*ProxyConn
	closed bool
}

// ProxyConn is one proxied connection.
type ProxyConn struct {
	client, server net.Conn
	settings       atomic.Pointer[Settings]
	done           chan struct{}
	once           sync.Once
	pipes          atomic.Int32 // directions still copying
}

// NewProxy starts a Proxy to target (host:port) that is closed when the
// test ends; it fails the test if it cannot listen.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := StartProxy(target)
	if err != nil {
		t.Fatalf("resockettest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// StartProxy listens on 127.0.0.1 and forwards to target (host:port).
// The caller must Close it.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{URL: "ws://" + ln.Addr().String() + "/", ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDefault sets the settings of connections accepted from now on.
func (p *Proxy) SetDefault(s Settings) {
	p.mu.Lock()
	p.def = s
	p.mu.Unlock()
}

// SetAll changes the settings of every open connection and of new ones.
func (p *Proxy) SetAll(s Settings) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.def = s
	for _, c := range p.conns {
		c.Set(s)
	}
}

// Conns returns the open connections, oldest first.
func (p *Proxy) Conns() []*ProxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*ProxyConn(nil), p.conns...)
}

// Last returns the newest connection, or nil.
func (p *Proxy) Last() *ProxyConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) == 0 {
		return nil
	}
	return p.conns[len(p.conns)-1]
}

// Close stops accepting, resets every connection and waits for its
// goroutines. It may be called more than once.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	conns := append([]*ProxyConn(nil), p.conns...)
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Reset()
	}
	p.wg.Wait()
}

// dialTimeout bounds the proxy's dial of its target, so that Close never
// waits on the system's connect timeout.
const dialTimeout = 5 * time.Second

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.DialTimeout("tcp", p.target, dialTimeout)
		if err != nil {
			reset(client)
			continue
		}
		c := &ProxyConn{client: client, server: server, done: make(chan struct{})}
		c.pipes.Store(2)
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			reset(client)
			reset(server)
			return
		}
		s := p.def
		c.settings.Store(&s)
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, client, server)
		go p.pipe(c, server, client)
	}
}

// Set changes this connection's settings; they apply to the next chunk.
func (c *ProxyConn) Set(s Settings) { c.settings.Store(&s) }

// Blackhole starts or stops swallowing this connection's bytes.
func (c *ProxyConn) Blackhole(on bool) {
	s := *c.settings.Load()
	s.Blackhole = on
	c.Set(s)
}

// Reset drops both sides with an RST.
func (c *ProxyConn) Reset() {
	c.once.Do(func() { close(c.done) })
	reset(c.client)
	reset(c.server)
}

// HalfClose sends a FIN to the client (no more bytes from the server)
// while the proxy keeps reading what the client sends.
func (c *ProxyConn) HalfClose() {
	if tc, ok := c.client.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// chunkPool recycles the copies of what the proxy carries: a proxy under
// a soak moves gigabytes.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

// pooled returns a pooled copy of b.
func pooled(b []byte) *[]byte {
	p := chunkPool.Get().(*[]byte)
	*p = append((*p)[:0], b...)
	return p
}

type chunk struct {
	due time.Time
	b   *[]byte
}

// pipe copies src to dst through the connection's settings: a reader that
// stamps each chunk with its due time, a writer that waits for it and
// paces by bandwidth. What ends src ends dst the same way, after the
// bytes before it: a FIN as a FIN, anything else as a reset.
func (p *Proxy) pipe(c *ProxyConn, src, dst net.Conn) {
	defer p.wg.Done()
	queue := make(chan chunk, 64)
	drained := make(chan bool, 1)
	go func() { drained <- c.forward(queue, dst) }()
	err := c.readChunks(src, queue)
	if err != io.EOF {
		// A reset passes on after the bytes read before it, given a
		// second to go out.
		dst.SetWriteDeadline(time.Now().Add(time.Second))
	}
	close(queue)
	if <-drained && err == io.EOF && !c.settings.Load().Blackhole {
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite() // pass the FIN on; a black hole swallows it too
		}
	}
	if err != io.EOF {
		c.Reset()
	}
	if c.pipes.Add(-1) == 0 {
		p.remove(c)
	}
}

// readChunks reads src into queue until src ends, and returns how it
// ended.
func (c *ProxyConn) readChunks(src net.Conn, queue chan<- chunk) error {
	buf := make([]byte, 32<<10)
	for {
		n := len(buf)
		if bw := c.settings.Load().Bandwidth; bw > 0 { // small chunks, so that pacing is smooth
			n = min(n, max(bw/10, 1))
		}
		k, err := src.Read(buf[:n])
		if s := c.settings.Load(); k > 0 && !s.Blackhole {
			select {
			case queue <- chunk{due: time.Now().Add(s.Latency), b: pooled(buf[:k])}:
			case <-c.done:
			}
		}
		if err != nil {
			return err
		}
	}
}

// forward writes the queued chunks to dst, each once it is due and paced
// by bandwidth. It reports whether it wrote them all: false when the
// connection was reset or dst could not be written (which resets it).
func (c *ProxyConn) forward(queue <-chan chunk, dst net.Conn) bool {
	for ch := range queue {
		if !waitOr(c.done, time.Until(ch.due)) {
			return false
		}
		s := c.settings.Load()
		if s.Blackhole {
			chunkPool.Put(ch.b)
			continue
		}
		if s.Bandwidth > 0 && // a chunk arrives once its bytes had time to cross
			!waitOr(c.done, time.Duration(len(*ch.b))*time.Second/time.Duration(s.Bandwidth)) {
			return false
		}
		_, err := dst.Write(*ch.b)
		chunkPool.Put(ch.b)
		if err != nil { // that side is gone: so is the connection
			c.Reset()
			return false
		}
	}
	return true
}

// remove forgets c once both directions ended.
func (p *Proxy) remove(c *ProxyConn) {
	c.client.Close()
	c.server.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			return
		}
	}
}
