package resockettest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// announceMode is a client handshake that tells the server which mode it
// runs in; the server records it with ReadMode.
func announceMode(ctx context.Context, s *resocket.Session) error {
	return s.Conn.Write(ctx, websocket.MessageText, []byte(s.Mode.String()))
}

// quick keeps the examples fast: immediate retries, no pings.
var quick = []resocket.Option{
	resocket.WithHandshake(announceMode),
	resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
	resocket.WithHeartbeat(0, 0),
}

// A socket that dies without a close frame (a TCP reset) is a 1006: the
// client reconnects and its handshake resumes the session.
func ExampleNewServer() {
	srv, _ := resockettest.Start(
		resockettest.Script{Steps: []resockettest.Step{resockettest.ReadMode(), resockettest.Reset()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.ReadMode(), resockettest.Echo()}},
	)
	defer srv.Close()
	c, _ := resocket.New(srv.URL, quick...)
	events := c.Events()
	c.Connect(context.Background())
	for e := range events {
		if e, ok := e.(resocket.Connected); ok && e.Attempt == 2 {
			break
		}
	}
	c.Close()
	fmt.Println(srv.Modes())
	// Output: [identify resume]
}

// A gateway that invalidates the session (4003) and then refuses the
// intents (4014): the client identifies once more, then stops for good.
func ExampleScript_reidentifyThenStop() {
	srv, _ := resockettest.Start(
		resockettest.Script{Steps: []resockettest.Step{resockettest.ReadMode(), resockettest.Close(4003, "session invalidated")}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.ReadMode(), resockettest.Close(4014, "disallowed intents")}},
	)
	defer srv.Close()
	c, _ := resocket.Dial(context.Background(), srv.URL, quick...)
	<-c.Done()
	fmt.Println(srv.Modes(), websocket.CloseStatus(c.Err()))
	// Output: [identify identify] StatusCode(4014)
}

// A path that goes silent (packets swallowed, the TCP connection still
// up) is noticed by the heartbeat within interval + timeout, and the
// client resumes once the path is back.
func ExampleProxy() {
	srv, _ := resockettest.Start()
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.ReadMode(), resockettest.Echo()}})
	defer srv.Close()
	proxy, _ := resockettest.StartProxy(srv.Addr())
	defer proxy.Close()

	c, _ := resocket.New(proxy.URL, append(quick, resocket.WithHeartbeat(20*time.Millisecond, 40*time.Millisecond))...)
	events := c.Events()
	c.Connect(context.Background())
	proxy.SetAll(resockettest.Settings{Blackhole: true})
	for e := range events {
		switch e := e.(type) {
		case resocket.Disconnected:
			if errors.Is(e.Err, resocket.ErrHeartbeatTimeout) {
				fmt.Println("noticed:", int(e.Code), e.Action)
				proxy.SetAll(resockettest.Settings{}) // the path comes back
			}
		case resocket.Connected:
			if e.Mode == resocket.ModeResume {
				fmt.Println("resumed")
				c.Close()
			}
		}
	}
	// Output:
	// noticed: 1006 retry
	// resumed
}
