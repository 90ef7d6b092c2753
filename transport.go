package resocket

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// tcpSlot records the TCP connection a dial made, so that Close can cut a
// peer that never answers the close frame.
type tcpSlot struct {
	mu   sync.Mutex
	conn net.Conn
}

type tcpSlotKey struct{}

func (s *tcpSlot) set(conn net.Conn) {
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
}

// known reports whether the dial's connection was recorded: a caller's
// RoundTripper that is not an *http.Transport dials out of sight.
func (s *tcpSlot) known() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn != nil
}

// setWriteDeadline sets the recorded connection's write deadline.
func (s *tcpSlot) setWriteDeadline(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.SetWriteDeadline(t)
	}
}

func (s *tcpSlot) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
	}
}

// newHTTPClient returns the HTTP client for the upgrades: a copy of the
// caller's (or the default) whose transport records each TCP connection
// and keeps no idle ones. A caller's RoundTripper that is not an
// *http.Transport is used as it is, and the transport result is nil.
func newHTTPClient(base *http.Client) (*http.Client, *http.Transport) {
	if base == nil {
		return sharedHTTPClient, nil // nothing idle to clean up: keep-alives are off
	}
	hc := *base
	var tr *http.Transport
	switch t := hc.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return &hc, nil
	}
	hc.Transport = recordingTransport(tr)
	return &hc, tr
}

// sharedHTTPClient serves every client that brings no HTTP client of its
// own: one transport for all, instead of one per client.
var sharedHTTPClient = &http.Client{
	Transport: recordingTransport(http.DefaultTransport.(*http.Transport).Clone()),
}

// recordingTransport adapts tr for upgrades: it records each TCP
// connection in the attempt's tcpSlot and keeps no idle connections.
func recordingTransport(tr *http.Transport) *http.Transport {
	tr.DisableKeepAlives = true  // a socket is never reused; an idle one would outlive the client
	tr.ForceAttemptHTTP2 = false // WebSocket upgrades are HTTP/1.1
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if tr.DialContext == nil {
		tr.DialContext = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	tr.DialContext = recordingDial(tr.DialContext)
	if tr.DialTLSContext != nil {
		tr.DialTLSContext = recordingDial(tr.DialTLSContext)
	}
	return tr
}

type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// recordingDial puts each connection dial makes into the attempt's tcpSlot.
func recordingDial(dial dialFunc) dialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if slot, ok := ctx.Value(tcpSlotKey{}).(*tcpSlot); ok && err == nil {
			slot.set(conn)
		}
		return conn, err
	}
}
