package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
)

// exampleServer starts a WebSocket server whose n-th connection (from 1)
// is handled by serve.
func exampleServer(serve func(n int64, c *websocket.Conn)) *httptest.Server {
	var conns atomic.Int64
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		serve(conns.Add(1), c)
	}))
}

func wsURL(s *httptest.Server) string { return "ws" + strings.TrimPrefix(s.URL, "http") }

// quickRetries keeps the examples fast; the default schedule starts within
// a second and grows to a minute.
var quickRetries = resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} })

func ExampleDial() {
	srv := exampleServer(func(n int64, c *websocket.Conn) {
		c.Write(context.Background(), websocket.MessageText, []byte("hello from the server"))
		c.Read(context.Background()) // until the client leaves
	})
	defer srv.Close()

	ctx := context.Background()
	c, err := resocket.Dial(ctx, wsURL(srv))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	_, data, err := c.Read(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(data))
	// Output: hello from the server
}

// The handshake identifies on the first socket and resumes after a drop.
func ExampleWithHandshake() {
	srv := exampleServer(func(n int64, c *websocket.Conn) {
		ctx := context.Background()
		_, hello, _ := c.Read(ctx) // "identify" or "resume"
		c.Write(ctx, websocket.MessageText, []byte("ok "+string(hello)))
		if n == 1 {
			c.Close(websocket.StatusServiceRestart, "restarting") // retry: resume
			return
		}
		c.Write(ctx, websocket.MessageText, []byte("resumed: missed events follow"))
		c.Read(ctx)
	})
	defer srv.Close()

	ctx := context.Background()
	c, err := resocket.Dial(ctx, wsURL(srv), quickRetries,
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			msg := "identify"
			if s.Mode == resocket.ModeResume {
				msg = "resume" // a real client sends its session id and sequence
			}
			if err := s.Conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				return err
			}
			_, reply, err := s.Conn.Read(ctx)
			fmt.Printf("socket %d: %s\n", s.Attempt, reply)
			return err
		}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))
	// Output:
	// socket 1: ok identify
	// socket 2: ok resume
	// resumed: missed events follow
}

// Change a row of the table: here 4004 re-identifies instead of stopping.
func ExampleTablePolicy_WithCode() {
	srv := exampleServer(func(n int64, c *websocket.Conn) {
		if n == 1 {
			c.Close(4004, "authentication failed")
			return
		}
		c.Write(context.Background(), websocket.MessageText, []byte("welcome back"))
		c.Read(context.Background())
	})
	defer srv.Close()

	fmt.Println("default:", resocket.DefaultPolicy.Classify(resocket.Disconnect{Code: 4004}))
	policy := resocket.DefaultPolicy.WithCode(4004, resocket.ActionReidentify)
	fmt.Println("custom:", policy.Classify(resocket.Disconnect{Code: 4004}))

	ctx := context.Background()
	c, err := resocket.Dial(ctx, wsURL(srv), quickRetries, resocket.WithPolicy(policy))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, data, _ := c.Read(ctx)
	fmt.Println(string(data))
	// Output:
	// default: fatal
	// custom: reidentify
	// welcome back
}

// Consume events: take the channel before Connect to see every one.
func ExampleClient_Events() {
	srv := exampleServer(func(n int64, c *websocket.Conn) {
		if n == 1 {
			c.Close(websocket.StatusGoingAway, "deploy")
			return
		}
		c.Read(context.Background())
	})
	defer srv.Close()

	c, err := resocket.New(wsURL(srv), quickRetries)
	if err != nil {
		fmt.Println(err)
		return
	}
	events := c.Events()
	if err := c.Connect(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	for e := range events {
		switch e := e.(type) {
		case resocket.StateChanged:
			fmt.Printf("state %v -> %v\n", e.From, e.To)
		case resocket.Connected:
			fmt.Printf("connected: attempt %d, %v\n", e.Attempt, e.Mode)
			if e.Attempt == 2 {
				c.Close() // safe from inside the event loop
			}
		case resocket.Disconnected:
			fmt.Printf("disconnected: %d %q, %v\n", e.Code, e.Reason, e.Action)
		case resocket.Retrying:
			fmt.Printf("retrying: attempt %d, %v\n", e.Attempt, e.Mode)
		}
	}
	// Output:
	// state CONNECTING -> OPEN
	// connected: attempt 1, identify
	// disconnected: 1001 "deploy", retry
	// state OPEN -> CONNECTING
	// retrying: attempt 2, resume
	// state CONNECTING -> OPEN
	// connected: attempt 2, resume
	// state OPEN -> CLOSING
	// state CLOSING -> CLOSED
}

// Close is safe from any state, any number of times; afterwards every
// call reports ErrClosed.
func ExampleClient_Close() {
	srv := exampleServer(func(n int64, c *websocket.Conn) { c.Read(context.Background()) })
	defer srv.Close()

	ctx := context.Background()
	c, err := resocket.Dial(ctx, wsURL(srv))
	if err != nil {
		fmt.Println(err)
		return
	}
	c.Close()
	c.Close()
	_, _, err = c.Read(ctx)
	fmt.Println(c.State(), errors.Is(err, resocket.ErrClosed), c.Err())
	// Output: CLOSED true resocket: client closed
}

// A fatal close code ends the client; Err tells which.
func ExampleClient_Err() {
	srv := exampleServer(func(n int64, c *websocket.Conn) {
		c.Close(4014, "disallowed intents")
	})
	defer srv.Close()

	c, err := resocket.Dial(context.Background(), wsURL(srv))
	if err != nil {
		fmt.Println(err)
		return
	}
	<-c.Done()
	fmt.Println(int(websocket.CloseStatus(c.Err())), errors.Is(c.Err(), resocket.ErrClosed))
	// Output: 4014 true
}

// Shards that share an identify budget share one limiter: at most one
// identify in any window of 5 s, whatever the number of clients. The
// handshake takes it right before it sends its identify.
func ExampleNewLimiter() {
	bucket := resocket.NewLimiter(1, 5*time.Second)
	handshake := resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		// read HELLO, start s.Heartbeat, then:
		if s.Mode == resocket.ModeIdentify {
			if err := s.WaitIdentify(ctx); err != nil {
				return err
			}
			// send the identify
		}
		return nil
	})
	for shard := 0; shard < 3; shard++ {
		_, err := resocket.New("wss://gateway.example/?v=10", resocket.WithIdentifyLimiter(bucket), handshake)
		fmt.Println("shard", shard, err)
	}
	// A bad limiter is refused by New, with the reason.
	_, err := resocket.New("wss://gateway.example/", resocket.WithIdentifyLimiter(resocket.NewLimiter(0, time.Second)), handshake)
	fmt.Println(err)
	// Output:
	// shard 0 <nil>
	// shard 1 <nil>
	// shard 2 <nil>
	// resocket: WithIdentifyLimiter: NewLimiter: n must be at least 1, got 0
}

// The protocol's own heartbeat: the server answers each beat with an ACK,
// which the client is told of with AckHeartbeat. A server that stops
// answering makes the socket a zombie: it is cut and resumed.
func ExampleSession_Heartbeat() {
	srv := exampleServer(func(n int64, c *websocket.Conn) {
		for acks := 0; ; acks++ { // the first socket stops answering after 3 beats
			_, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if string(b) == "beat" && (n > 1 || acks < 3) {
				c.Write(context.Background(), websocket.MessageText, []byte("ack"))
			}
		}
	})
	defer srv.Close()

	var c *resocket.Client
	c, _ = resocket.New(wsURL(srv), quickRetries, resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		s.Heartbeat(20*time.Millisecond, func(ctx context.Context) error {
			return s.Conn.Write(ctx, websocket.MessageText, []byte("beat"))
		})
		return nil
	}))
	defer c.Close()
	events, _ := c.Subscribe(64)
	go func() { // the SDK's reader
		for {
			m, err := c.ReadMessage(context.Background())
			if err != nil {
				return
			}
			if string(m.Data) == "ack" {
				m.Session.AckHeartbeat() // the ACK counts for the socket it came on
			}
		}
	}()
	c.Connect(context.Background())
	for e := range events {
		switch e := e.(type) {
		case resocket.Disconnected:
			fmt.Println(int(e.Code), e.Action, errors.Is(e.Err, resocket.ErrZombie))
		case resocket.Connected:
			if e.Attempt == 2 {
				fmt.Println("resumed:", e.Mode == resocket.ModeResume, "heartbeat timeouts:", c.Stats().HeartbeatTimeouts)
				return
			}
		}
	}
	// Output:
	// 1006 retry true
	// resumed: true heartbeat timeouts: 1
}

// A deploy: the old process closes with 4000, which keeps the session
// resumable, and the new one starts in ModeResume.
func ExampleWithResume() {
	closed := make(chan struct{}, 2)
	srv := exampleServer(func(n int64, c *websocket.Conn) {
		_, b, _ := c.Read(context.Background())
		fmt.Printf("socket %d: %s\n", n, b)
		_, _, err := c.Read(context.Background())
		fmt.Printf("socket %d: closed with %d\n", n, websocket.CloseStatus(err))
		closed <- struct{}{}
	})
	defer srv.Close()
	handshake := resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
		return s.Conn.Write(ctx, websocket.MessageText, []byte(s.Mode.String()))
	})

	old, _ := resocket.Dial(context.Background(), wsURL(srv), handshake)
	old.CloseWith(4000, "restarting")
	<-closed

	next, _ := resocket.Dial(context.Background(), wsURL(srv), handshake, resocket.WithResume(""))
	next.Close()
	<-closed
	// Output:
	// socket 1: identify
	// socket 1: closed with 4000
	// socket 2: resume
	// socket 2: closed with 1000
}
