package resockettest

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// Accept answers the upgrade with 101 and sets Conn. The socket takes
// messages of any size and any origin.
func (p *Peer) Accept() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateRequest {
		return errAnswered
	}
	conn, err := websocket.Accept(p.w, p.Request, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil { // Accept answered the request with the reason
		p.state = stateAnswered
		return err
	}
	conn.SetReadLimit(-1)
	p.Conn = conn
	p.state = stateSocket
	return nil
}

// Reject answers the upgrade with status, header and body instead of
// upgrading: a 520 with Retry-After, a 401, a 429.
func (p *Peer) Reject(status int, header http.Header, body string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateRequest {
		return errAnswered
	}
	p.state = stateAnswered
	for k, v := range header {
		p.w.Header()[k] = v
	}
	p.w.WriteHeader(status)
	_, err := io.WriteString(p.w, body)
	return err
}

// BadAccept answers the upgrade with a 101 whose Sec-WebSocket-Accept is
// wrong, then hangs up.
func (p *Peer) BadAccept() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != stateRequest {
		return errAnswered
	}
	c, brw, err := p.hijack()
	if err != nil {
		return err
	}
	defer c.Close()
	// Hang up after the response: a client reading a body after the bad
	// 101 sees its end at once.
	brw.WriteString(switchingProtocols("not-the-right-accept-key"))
	return brw.Flush()
}

// Trickle answers the upgrade with a valid 101, one byte per d: a slow
// upgrade that never stalls for long. It then holds the connection until
// the client hangs up or ctx ends.
func (p *Peer) Trickle(ctx context.Context, d time.Duration) error {
	p.mu.Lock()
	if p.state != stateRequest {
		p.mu.Unlock()
		return errAnswered
	}
	c, _, err := p.hijack()
	p.mu.Unlock()
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	resp := switchingProtocols(acceptKey(p.Request.Header.Get("Sec-WebSocket-Key")))
	for i := 0; i < len(resp); i++ {
		if _, err := c.Write([]byte{resp[i]}); err != nil {
			return err
		}
		if !sleep(ctx, d) {
			return ctx.Err()
		}
	}
	bufio.NewReader(c).WriteTo(io.Discard)
	return nil
}

// hijack takes the TCP connection from net/http; p.mu is held.
func (p *Peer) hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := p.w.(http.Hijacker)
	if !ok {
		return nil, nil, errNoHijack
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	p.state = stateHijacked
	return c, brw, nil
}

// end is called once the handler returned with err (or panicked): an
// upgrade still unanswered gets a 500 that says why. It returns the
// socket, if there is one, for the server to hold or close, and whether
// the TCP connection was taken from net/http.
func (p *Peer) end(err error) (conn *websocket.Conn, taken bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.state {
	case stateRequest:
		p.state = stateAnswered
		msg := "resockettest: the handler returned without answering the upgrade"
		if err != nil {
			msg += ": " + err.Error()
		}
		http.Error(p.w, msg, http.StatusInternalServerError)
	case stateSocket:
		return p.Conn, true
	case stateHijacked:
		return nil, true
	}
	return nil, false
}

func switchingProtocols(accept string) string {
	return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + accept + "\r\n\r\n"
}

func acceptKey(key string) string {
	h := sha1.New()
	h.Write([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}
