// Echo connects to a WebSocket echo server, sends a few messages and reads
// them back. With no -url it starts a local server that drops the socket
// once, so you can watch the client resume on its own.
//
//	go run ./examples/echo
//	go run ./examples/echo -url wss://echo.example/ -n 10
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

func run() error {
	url := flag.String("url", "", "WebSocket echo server to use; empty starts a local one that drops the socket once")
	n := flag.Int("n", 6, "messages to send")
	flag.Parse()

	local := *url == ""
	if local {
		srv, err := resockettest.Start("")
		if err != nil {
			return err
		}
		defer srv.Close()
		// The first socket echoes three messages, then the TCP connection
		// is reset without a close frame; later sockets echo.
		srv.Queue(resockettest.Script{Steps: []resockettest.Step{resockettest.EchoN(3), resockettest.Reset()}})
		*url = srv.URL
		fmt.Println("local server:", srv.URL)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := resocket.New(*url,
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			fmt.Printf("handshake: attempt %d, mode %v\n", s.Attempt, s.Mode)
			return nil
		}),
		// Quick retries for the demo; the default starts within a second.
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(100 * time.Millisecond) }),
	)
	if err != nil {
		return err
	}
	events := c.Events()
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		for e := range events {
			switch e := e.(type) {
			case resocket.StateChanged:
				fmt.Printf("state: %v -> %v\n", e.From, e.To)
			case resocket.Disconnected:
				fmt.Printf("disconnected: code %d, action %v, next attempt in %v (%v)\n", e.Code, e.Action, e.Next, e.Err)
			}
		}
	}()
	defer func() { c.Close(); <-printed }()

	if err := c.Connect(ctx); err != nil {
		return err
	}
	for i := 1; i <= *n; i++ {
		msg := fmt.Sprintf("hello %d", i)
		reply, err := roundTrip(ctx, c, msg)
		if err != nil {
			return err
		}
		fmt.Printf("sent %q, got %q\n", msg, reply)
	}
	if local && c.Stats().Reconnects == 0 {
		return errors.New("the local server should have forced one reconnect")
	}
	fmt.Printf("done: %d reconnect(s)\n", c.Stats().Reconnects)
	return nil
}

// roundTrip writes msg and waits for its echo. A message written just as
// the socket died may never be echoed, so after a second without an answer
// it is sent again: delivery over a reconnect is the application's call.
func roundTrip(ctx context.Context, c *resocket.Client, msg string) (string, error) {
	for try := 0; try < 5; try++ {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			if errors.Is(err, resocket.ErrClosed) {
				return "", err
			}
			fmt.Println("write failed, retrying:", err)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, data, err := c.Read(rctx)
		cancel()
		switch {
		case err == nil:
			return string(data), nil
		case errors.Is(err, resocket.ErrClosed):
			return "", err
		}
		fmt.Println("no echo yet, sending again")
	}
	return "", fmt.Errorf("no echo for %q after 5 tries", msg)
}
