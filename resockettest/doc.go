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
// Proxy is a TCP proxy beside it that adds latency, throttles, black-holes,
// half-closes or resets the path, switchable while connections are live.
//
// Both end with the test (NewServer, NewProxy) and leave no goroutine
// behind. The package depends only on the standard library and
// github.com/coder/websocket.
package resockettest
