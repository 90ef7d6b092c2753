package resockettest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Peer is the server side of one connection, from its upgrade request on.
// A handler (SetHandler) gets it before the upgrade is answered and
// answers it with Accept or with an upgrade fault (Reject, BadAccept,
// Trickle, or Reset, Hangup or Silent on the request); a Script answers
// it by its fields before its Steps run.
//
// A handler's Peer is its own until the handler returns: call the methods
// that answer the upgrade from the handler. After Accept, Send, Close,
// Reset, Hangup and Raw may be called from any goroutine, also from the
// handler of another connection (a gateway that drops an old socket when
// its session resumes elsewhere) and after this handler returned; Read,
// like Conn.Read, from one goroutine at a time.
type Peer struct {
	// Conn is the upgraded socket: nil until Accept.
	Conn *websocket.Conn
	// TCP is the connection underneath, for faults below the WebSocket
	// protocol.
	TCP net.Conn
	// Info describes the connection and records what it received.
	Info *ConnInfo
	// Request is the upgrade request.
	Request *http.Request

	mu    sync.Mutex
	w     http.ResponseWriter
	state peerState
}

// peerState is how far a Peer's connection went.
type peerState int

const (
	stateRequest  peerState = iota // the upgrade request waits for its answer
	stateSocket                    // upgraded: Conn is the socket
	stateHijacked                  // taken from net/http without a socket: the kit owns the TCP connection
	stateAnswered                  // answered with an HTTP status: net/http owns the TCP connection
)

var (
	errAnswered    = errors.New("resockettest: the upgrade was already answered")
	errNotUpgraded = errors.New("resockettest: no socket: the upgrade was not accepted")
	errNoHijack    = errors.New("resockettest: the connection cannot be taken over from net/http")
)

// socket returns the upgraded socket, or an error if there is none.
func (p *Peer) socket() (*websocket.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateSocket {
		return nil, errNotUpgraded
	}
	return p.Conn, nil
}

// tcp returns the TCP connection for a fault on it, taking it from
// net/http when the upgrade is not answered yet, so that the client gets
// no answer. A connection answered with an HTTP status is net/http's
// (it may carry the client's next request) and is left alone.
func (p *Peer) tcp() (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case stateRequest:
		c, _, err := p.hijack()
		return c, err
	case stateAnswered:
		return nil, errAnswered
	}
	return p.TCP, nil
}

// Send sends each message as text.
func (p *Peer) Send(ctx context.Context, msgs ...string) error {
	conn, err := p.socket()
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := conn.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			return err
		}
	}
	return nil
}

// Read reads one message from the client and records it (Received). As
// with Conn.Read, a ctx that ends while Read waits closes the socket.
func (p *Peer) Read(ctx context.Context) (websocket.MessageType, []byte, error) {
	conn, err := p.socket()
	if err != nil {
		return 0, nil, err
	}
	typ, b, err := conn.Read(ctx)
	if err != nil {
		return typ, b, err
	}
	p.Info.record(b)
	return typ, b, nil
}

// Close sends a close frame with code and reason and waits briefly for
// the client's answer (Conn.Close).
func (p *Peer) Close(code websocket.StatusCode, reason string) error {
	conn, err := p.socket()
	if err != nil {
		return err
	}
	return conn.Close(code, reason)
}

// Reset drops the TCP connection with an RST, without a close frame.
// Before the upgrade is answered, the client gets no response at all.
func (p *Peer) Reset() error {
	c, err := p.tcp()
	if err != nil {
		return err
	}
	reset(c)
	return nil
}

// Hangup closes the TCP connection with a FIN, without a close frame.
// Before the upgrade is answered, the client gets no response at all.
func (p *Peer) Hangup() error {
	c, err := p.tcp()
	if err != nil {
		return err
	}
	c.Close()
	return nil
}

// Silent holds the connection without a word for d (until ctx ends when
// d is 0), then hangs up. On a socket nothing is read meanwhile, so pings
// go unanswered: the dead peer a heartbeat must notice. Before the upgrade
// is answered, the request gets no response. The hangup is a FIN, or a
// reset if the client sent bytes that were never read (as the kernel
// does).
func (p *Peer) Silent(ctx context.Context, d time.Duration) error {
	c, err := p.tcp()
	if err != nil {
		return err
	}
	if d == 0 {
		<-ctx.Done()
	} else {
		sleep(ctx, d)
	}
	c.Close()
	return nil
}

// Raw writes b straight to the TCP connection of an upgraded socket, for
// frames that break the protocol (see Frame). It does not wait for, and
// may interleave with, a message Conn is writing.
func (p *Peer) Raw(b []byte) error {
	if _, err := p.socket(); err != nil {
		return err
	}
	_, err := p.TCP.Write(b)
	return err
}

// hold keeps an upgraded socket up, answering pings and dropping what the
// client sends, until the client leaves or ctx ends.
func hold(ctx context.Context, conn *websocket.Conn) {
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			return
		}
	}
}

// sleep waits d, or less if ctx ends first; it reports whether d passed
// with ctx still live.
func sleep(ctx context.Context, d time.Duration) bool { return waitOr(ctx.Done(), d) }

// waitOr waits d, or less if done closes first; it reports whether d
// passed with done still open.
func waitOr(done <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
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
