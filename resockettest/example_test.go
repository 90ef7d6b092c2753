package resockettest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	srv, _ := resockettest.Start("",
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
	srv, _ := resockettest.Start("",
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
	srv, _ := resockettest.Start("")
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

// gateway is a small resumable gateway, the kind an SDK's resume logic is
// tested against. It says HELLO; IDENTIFY gets READY <session>, and the
// session's events follow as EVENT <seq>; RESUME <session> <seq> gets
// RESUMED and a replay of the session's events after seq. Its state spans
// connections, whose handlers run concurrently: a mutex guards it.
type gateway struct {
	mu     sync.Mutex
	events map[string][]string // per session, every event dispatched so far
}

func (g *gateway) serve(ctx context.Context, p *resockettest.Peer) error {
	if err := p.Accept(); err != nil {
		return err
	}
	if err := p.Send(ctx, "HELLO"); err != nil {
		return err
	}
	_, b, err := p.Read(ctx)
	if err != nil {
		return err
	}
	if f := strings.Fields(string(b)); len(f) == 3 && f[0] == "RESUME" {
		return g.resume(ctx, p, f[1], f[2])
	}
	return g.identify(ctx, p)
}

// identify starts a session in which six events happen; the socket dies
// (a TCP reset, no close frame) after sending three of them.
func (g *gateway) identify(ctx context.Context, p *resockettest.Peer) error {
	p.Info.SetMode("identify")
	id := fmt.Sprintf("s%d", p.Info.Index)
	g.mu.Lock()
	for seq := 1; seq <= 6; seq++ {
		g.events[id] = append(g.events[id], fmt.Sprintf("EVENT %d", seq))
	}
	sent := slices.Clone(g.events[id][:3])
	g.mu.Unlock()
	if err := p.Send(ctx, "READY "+id); err != nil {
		return err
	}
	if err := p.Send(ctx, sent...); err != nil {
		return err
	}
	return p.Reset()
}

// resume replays what the client missed, then the server holds the socket.
func (g *gateway) resume(ctx context.Context, p *resockettest.Peer, id, seq string) error {
	p.Info.SetMode("resume")
	after, _ := strconv.Atoi(seq)
	g.mu.Lock()
	events, ok := g.events[id]
	missed := slices.Clone(events[min(max(after, 0), len(events)):])
	g.mu.Unlock()
	if !ok {
		return p.Close(4009, "unknown session")
	}
	if err := p.Send(ctx, "RESUMED"); err != nil {
		return err
	}
	return p.Send(ctx, missed...)
}

// resumingClient is the SDK's side: it identifies, then resumes with the
// last sequence number it saw, and reports an event out of sequence.
type resumingClient struct {
	mu      sync.Mutex
	session string
	seq     int
	done    chan struct{} // closed at the sixth event
}

func (s *resumingClient) handshake(ctx context.Context, sess *resocket.Session) error {
	if _, b, err := sess.Conn.Read(ctx); err != nil || string(b) != "HELLO" {
		return fmt.Errorf("no HELLO: %v", err)
	}
	s.mu.Lock()
	hello := "IDENTIFY"
	if sess.Mode == resocket.ModeResume && s.session != "" {
		hello = fmt.Sprintf("RESUME %s %d", s.session, s.seq)
	}
	s.mu.Unlock()
	if err := sess.Conn.Write(ctx, websocket.MessageText, []byte(hello)); err != nil {
		return err
	}
	_, b, err := sess.Conn.Read(ctx)
	if err != nil {
		return err
	}
	fmt.Println(strings.Fields(string(b))[0])
	if id, ok := strings.CutPrefix(string(b), "READY "); ok {
		s.mu.Lock()
		s.session, s.seq = id, 0
		s.mu.Unlock()
	}
	return nil
}

func (s *resumingClient) onMessage(m resocket.Message) {
	seq, err := strconv.Atoi(strings.TrimPrefix(string(m.Data), "EVENT "))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || seq != s.seq+1 {
		fmt.Printf("out of sequence: %q after %d\n", m.Data, s.seq)
		return
	}
	s.seq = seq
	fmt.Println("event", seq)
	if seq == 6 {
		close(s.done)
	}
}

// A gateway that replays across sockets, on the stateful mode: the socket
// is reset mid-stream, the client resumes with the last sequence number
// it saw, and the gateway replays what it missed: no gap, no duplicate.
func ExampleServer_SetHandler() {
	srv, _ := resockettest.Start("")
	defer srv.Close()
	srv.SetHandler((&gateway{events: map[string][]string{}}).serve)

	s := &resumingClient{done: make(chan struct{})}
	c, _ := resocket.New(srv.URL,
		resocket.WithHandshake(s.handshake),
		resocket.WithOnMessage(s.onMessage), // the next handshake starts after the last message's call
		resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
		resocket.WithHeartbeat(0, 0),
	)
	c.Connect(context.Background())
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		fmt.Println("timed out")
	}
	c.Close()
	fmt.Println(srv.Modes())
	// Output:
	// READY
	// event 1
	// event 2
	// event 3
	// RESUMED
	// event 4
	// event 5
	// event 6
	// [identify resume]
}
