package resockettest

import (
	"net/http"
	"net/url"
	"sync"
)

// ConnInfo describes one connection and records what it received. Its
// methods are safe for concurrent use.
type ConnInfo struct {
	Index  int         // 1 for the first connection, in the order they arrive
	Header http.Header // the upgrade request's headers
	URL    string      // the request URI: path and query
	Path   string      // the URL's path
	Query  url.Values  // the URL's query

	keep bool // SetRecording: keep what is read

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
// connection; call it from a handshake Step or a handler.
func (c *ConnInfo) SetMode(mode string) {
	c.mu.Lock()
	c.mode = mode
	c.mu.Unlock()
}

// Received returns the messages read from the client so far (by Read,
// ReadMode, Echo, EchoN, EchoThen and Peer.Read), in order; none when the
// server's recording was off as the connection arrived.
func (c *ConnInfo) Received() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.received...)
}

func (c *ConnInfo) record(m []byte) {
	if !c.keep {
		return
	}
	c.mu.Lock()
	c.received = append(c.received, string(m))
	c.mu.Unlock()
}
