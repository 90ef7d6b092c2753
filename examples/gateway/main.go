// Gateway runs a Discord-style gateway session: hello, identify or resume,
// heartbeats, dispatches with sequence numbers. With no flags it starts a
// fake gateway that drops the socket (1006: the client resumes), then
// invalidates the session (4003: it identifies again), then refuses the
// intents (4014: it stops for good), and prints the timeline.
//
//	go run ./examples/gateway
//	go run ./examples/gateway -url 'wss://gateway.example/?v=10&encoding=json' -token "$TOKEN"
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// session is what a resume needs, kept across sockets.
type session struct {
	mu        sync.Mutex
	id        string
	seq       int64
	heartbeat time.Duration
}

func (s *session) get() (string, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id, s.seq
}

func (s *session) update(p payload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.T == "READY" { // a new session: its own sequence
		var r ready
		json.Unmarshal(p.D, &r)
		s.id, s.seq = r.SessionID, p.S
		return
	}
	s.seq = max(s.seq, p.S)
}

func run() error {
	url := flag.String("url", "", "gateway URL; empty starts a local fake gateway")
	token := flag.String("token", "demo-token", "bot token (never printed)")
	intents := flag.Int("intents", 513, "gateway intents")
	flag.Parse()

	local := *url == ""
	if local {
		g, err := startFakeGateway()
		if err != nil {
			return err
		}
		defer g.Close()
		*url = g.URL
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Printf("%6dms  %s\n", time.Since(start).Milliseconds(), fmt.Sprintf(format, args...))
	}

	sess := &session{}
	handshake := func(ctx context.Context, s *resocket.Session) error {
		_, b, err := s.Conn.Read(ctx)
		if err != nil {
			return err
		}
		var p payload
		if err := json.Unmarshal(b, &p); err != nil || p.Op != opHello {
			return resocket.Fatal(fmt.Errorf("expected hello, got %.60s", b))
		}
		var h hello
		json.Unmarshal(p.D, &h)
		sess.mu.Lock()
		sess.heartbeat = time.Duration(h.HeartbeatInterval) * time.Millisecond
		sess.mu.Unlock()

		id, seq := sess.get()
		var msg []byte
		if s.Mode == resocket.ModeResume && id != "" {
			logf("handshake #%d: resume %s from seq %d", s.Attempt, id, seq)
			msg = encode(opResume, resume{Token: *token, SessionID: id, Seq: seq}, 0, "")
		} else {
			logf("handshake #%d: identify", s.Attempt)
			msg = encode(opIdentify, identify{Token: *token, Intents: *intents,
				Properties: map[string]string{"os": "linux", "browser": "resocket", "device": "resocket"}}, 0, "")
		}
		if err := s.Conn.Write(ctx, websocket.MessageText, msg); err != nil {
			return err
		}
		for { // until READY or RESUMED
			_, b, err := s.Conn.Read(ctx)
			if err != nil {
				return err
			}
			var p payload
			if err := json.Unmarshal(b, &p); err != nil {
				return fmt.Errorf("decoding %.60s: %w", b, err)
			}
			switch {
			case p.Op == opInvalidSession:
				return resocket.Reidentify(errors.New("invalid session"))
			case p.Op == opDispatch:
				sess.update(p)
				logf("  dispatch %s (seq %d)", p.T, p.S)
				if p.T == "READY" || p.T == "RESUMED" {
					return nil
				}
			}
		}
	}

	c, err := resocket.New(*url,
		resocket.WithHandshake(handshake),
		resocket.WithHeartbeat(5*time.Second, 5*time.Second),
		resocket.WithStableAfter(5*time.Second),
		resocket.WithBackoff(func() backoff.BackOff {
			if local { // quick retries for the demo; keep the default against a real gateway
				return backoff.NewConstantBackOff(100 * time.Millisecond)
			}
			return resocket.DefaultBackoff()
		}),
	)
	if err != nil {
		return err
	}
	events := c.Events()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the timeline
		defer wg.Done()
		for e := range events {
			switch e := e.(type) {
			case resocket.StateChanged:
				logf("state %v -> %v", e.From, e.To)
			case resocket.Connected:
				logf("open: attempt %d, %v", e.Attempt, e.Mode)
			case resocket.Disconnected:
				logf("closed %d %q -> %v (next in %v)", e.Code, e.Reason, e.Action, e.Next.Round(time.Millisecond))
			}
		}
	}()
	go func() { // gateway heartbeats, on top of the WebSocket pings
		defer wg.Done()
		for {
			sess.mu.Lock()
			every := max(sess.heartbeat, 100*time.Millisecond)
			sess.mu.Unlock()
			select {
			case <-c.Done():
				return
			case <-time.After(every):
			}
			_, seq := sess.get()
			wctx, cancel := context.WithTimeout(ctx, every)
			c.Write(wctx, websocket.MessageText, encode(opHeartbeat, seq, 0, ""))
			cancel()
		}
	}()
	defer func() { c.Close(); wg.Wait() }()

	if err := c.Connect(ctx); err != nil {
		return err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if local && websocket.CloseStatus(err) == 4014 {
				logf("stopped for good: %v", err)
				return nil // the ending the fake gateway scripts
			}
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		var p payload
		if json.Unmarshal(b, &p) != nil {
			continue
		}
		switch p.Op {
		case opDispatch:
			sess.update(p)
			logf("  dispatch %s (seq %d)", p.T, p.S)
		case opHeartbeatAck:
			logf("  heartbeat ack")
		case opReconnect:
			c.Reconnect(4000, "gateway asked to reconnect", resocket.ActionRetry)
		case opInvalidSession:
			c.Reconnect(4000, "invalid session", resocket.ActionReidentify)
		}
	}
}
