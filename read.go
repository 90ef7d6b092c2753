package resocket

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"unicode/utf8"

	"github.com/coder/websocket"
)

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
		return c.delivered(m), nil
	default:
	}
	if done := ctx.Done(); done == nil { // a ctx that never ends: one case fewer to wait on
		select {
		case m := <-c.queue:
			return c.delivered(m), nil
		case <-c.done:
		}
	} else {
		select {
		case m := <-c.queue:
			return c.delivered(m), nil
		case <-done:
			return Message{}, ctx.Err()
		case <-c.done:
		}
	}
	// CLOSED: what arrived before a fatal end is still delivered first.
	select {
	case m := <-c.queue:
		return c.delivered(m), nil
	default:
	}
	return Message{}, c.Err()
}

// delivered counts m, which Read is about to return.
func (c *Client) delivered(m Message) Message {
	c.stats.received(len(m.Data))
	return m
}

// pump reads the socket continuously into the queue, so that pongs and
// close frames are seen. It never gives a read a deadline: coder/websocket
// closes a socket whose read context ends. When the queue is full it waits
// for the consumer (the pressure reaches the peer through TCP) or for the
// client to stop.
func (s *socket) pump() {
	c := s.c
	defer close(s.pumpDone)
	for {
		typ, data, err := s.conn.Read(context.Background())
		if err == nil && typ == websocket.MessageText && !utf8.Valid(data) {
			err = ErrInvalidUTF8 // RFC 6455 §8.1: fail the connection, with 1007
		}
		if err != nil {
			s.readEnded(err)
			s.readErr <- err
			return
		}
		s.idle.arrived()
		m := Message{Type: typ, Data: data, Attempt: s.attempt, Session: s.session}
		select {
		case c.queue <- m:
			continue
		default:
		}
		s.stalls.Add(1)
		s.stalled.Store(true)
		select {
		case c.queue <- m:
			s.stalled.Store(false)
		case <-c.life.Done():
			s.readErr <- c.life.Err()
			return
		}
	}
}

// maxKeptBuffer bounds the buffer pumpToHandler keeps between messages:
// one huge message should not pin its size for the socket's life.
const maxKeptBuffer = 1 << 20

// pumpToHandler reads the socket and calls the WithOnMessage handler on
// this goroutine, reusing one buffer. While the handler runs the socket
// counts as stalled, so a long handler is not taken for a dead peer.
func (s *socket) pumpToHandler() {
	c := s.c
	defer close(s.pumpDone)
	c.handlerG.Store(goid()) // once per socket: only this goroutine runs the handler now
	buf := make([]byte, 0, 512)
	for {
		typ, r, err := s.conn.Reader(context.Background())
		if err == nil {
			buf, err = readAll(buf[:0], r)
		}
		if err == nil && typ == websocket.MessageText && !utf8.Valid(buf) {
			err = ErrInvalidUTF8 // RFC 6455 §8.1: fail the connection, with 1007
		}
		if err == nil {
			s.idle.arrived()
			c.stats.received(len(buf))
			err = s.handle(Message{Type: typ, Data: buf, Attempt: s.attempt, Session: s.session})
		}
		if err != nil {
			s.readEnded(err)
			s.readErr <- err
			return
		}
		if cap(buf) > maxKeptBuffer {
			buf = make([]byte, 0, 512)
		}
	}
}

// handle calls the handler; a panic in it stops the client.
func (s *socket) handle(m Message) (err error) {
	c := s.c
	s.stalls.Add(1)
	s.stalled.Store(true)
	defer func() {
		s.stalled.Store(false)
		if p := recover(); p != nil {
			err = fmt.Errorf("message handler panicked: %v", p)
			fatal := ActionFatal
			s.cut(outcome{d: Disconnect{Err: err}, forced: &fatal})
		}
	}()
	c.cfg.onMessage(m)
	return nil
}

// readAll appends r's bytes to buf, growing it as needed.
func readAll(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// inHandler reports whether the caller is the WithOnMessage handler.
func (c *Client) inHandler() bool {
	if c.cfg.onMessage == nil {
		return false
	}
	g := c.handlerG.Load()
	return g != 0 && g == goid()
}

// goid returns the id of the calling goroutine. Go hides it on purpose,
// and the client uses it for one thing only: to tell a Close made from
// inside the WithOnMessage handler (which must not wait for the handler)
// from one made anywhere else (which must). It reads the first line of
// the goroutine's stack, "goroutine 42 [running]:".
func goid() uint64 {
	var buf [32]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	var id uint64
	for _, ch := range b {
		if ch < '0' || ch > '9' {
			break
		}
		id = id*10 + uint64(ch-'0')
	}
	return id
}
