package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// fakeGateway plays a gateway that, on its three sockets in turn:
//  1. accepts an identify, sends a few events, then drops the TCP
//     connection without a close frame (a 1006: resume);
//  2. accepts the resume, replays from the client's sequence, then says
//     the session is invalid with 4003 (re-identify);
//  3. accepts the new identify, then refuses the intents with 4014 (stop).
type fakeGateway struct {
	URL   string
	srv   *http.Server
	wg    sync.WaitGroup
	conns atomic.Int64
}

func startFakeGateway() (*fakeGateway, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	g := &fakeGateway{URL: "ws://" + ln.Addr().String() + "/?v=10&encoding=json"}
	g.srv = &http.Server{Handler: http.HandlerFunc(g.serve)}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		g.srv.Serve(ln)
	}()
	return g, nil
}

func (g *fakeGateway) Close() {
	g.srv.Close()
	g.wg.Wait()
}

func (g *fakeGateway) serve(w http.ResponseWriter, r *http.Request) {
	g.wg.Add(1)
	defer g.wg.Done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := g.conns.Add(1)

	send := func(op int, d any, s int64, t string) {
		c.Write(ctx, websocket.MessageText, encode(op, d, s, t))
	}
	send(opHello, hello{HeartbeatInterval: 250}, 0, "")
	_, b, err := c.Read(ctx)
	if err != nil {
		return
	}
	var first payload
	if json.Unmarshal(b, &first) != nil {
		c.Close(4002, "decode error")
		return
	}

	// Answer heartbeats while the script runs.
	go func() {
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			var p payload
			if json.Unmarshal(b, &p) == nil && p.Op == opHeartbeat {
				send(opHeartbeatAck, nil, 0, "")
			}
		}
	}()

	switch n {
	case 1:
		if first.Op != opIdentify {
			c.Close(4003, "identify first")
			return
		}
		send(opDispatch, ready{SessionID: "session-1"}, 1, "READY")
		send(opDispatch, map[string]string{"content": "hi"}, 2, "MESSAGE_CREATE")
		send(opDispatch, map[string]string{"content": "how are you"}, 3, "MESSAGE_CREATE")
		time.Sleep(600 * time.Millisecond) // a couple of heartbeats
		c.CloseNow()                       // the TCP connection dies: no close frame
	case 2:
		var res resume
		json.Unmarshal(first.D, &res)
		if first.Op != opResume || res.SessionID != "session-1" {
			c.Close(4003, "unknown session")
			return
		}
		send(opDispatch, map[string]string{"content": "missed while away"}, res.Seq+1, "MESSAGE_CREATE")
		send(opDispatch, nil, res.Seq+2, "RESUMED")
		time.Sleep(300 * time.Millisecond)
		c.Close(4003, "session invalidated")
	default:
		if first.Op != opIdentify {
			c.Close(4003, "identify first")
			return
		}
		send(opDispatch, ready{SessionID: "session-2"}, 1, "READY")
		time.Sleep(300 * time.Millisecond)
		c.Close(4014, "disallowed intents")
	}
}
