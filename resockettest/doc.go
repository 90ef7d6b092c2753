// Package resockettest is a fault kit for testing WebSocket clients, and
// the SDKs built on them, against the failures that happen in production,
// in the spirit of net/http/httptest.
//
// Server is a real WebSocket server on 127.0.0.1 that follows a Script
// per incoming connection: answer the upgrade with any status, headers and
// body after any delay (a 520 with Retry-After, a 401, a slow or broken
// 101), play the server side of a handshake, send messages, then close
// with any code and reason, reset the TCP connection, go silent, echo or
// hold. It records what each connection received, its URL path and query,
// and the mode it identified in.
//
// For a gateway whose state spans connections (sessions, sequence
// numbers, replay after a resume), SetHandler serves every connection
// with one func instead, given a Peer whose methods are the same faults:
// Accept or Reject the upgrade, Send, Read, Close, Reset, Hangup, Silent,
// Raw. The state lives in the func's closure.
//
// Proxy is a TCP proxy beside it that adds latency, throttles, black-holes,
// half-closes or resets the path, switchable while connections are live.
//
// In a test, NewServer and NewProxy start them and close them when the
// test ends, leaving no goroutine behind; elsewhere (an example, a
// program) Start and StartProxy do, and the caller closes them. The
// package depends only on the standard library and
// github.com/coder/websocket.
package resockettest
