package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// collector is a WithOnMessage handler that keeps a copy of every message
// with the socket it came from.
type collector struct {
	mu  sync.Mutex
	got []string
}

func (k *collector) handle(m resocket.Message) {
	k.mu.Lock()
	k.got = append(k.got, fmt.Sprintf("%s@%d", m.Data, m.Attempt))
	k.mu.Unlock()
}

func (k *collector) list() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.got...)
}

func (k *collector) wait(t *testing.T, n int) []string {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages", n), func() bool { return len(k.list()) >= n })
	return k.list()
}

// Messages reach the handler once each, in order, across a drop; Attempt
// changes at the socket boundary.
func TestHandlerOrderAcrossReconnects(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(50, "a%d"), resockettest.Sleep(50 * time.Millisecond), resockettest.Reset()}},
		resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(50, "b%d"), resockettest.Echo()}},
	)
	var k collector
	c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithOnMessage(k.handle))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := k.wait(t, 100)
	for i, m := range got {
		want := fmt.Sprintf("a%d@1", i+1)
		if i >= 50 {
			want = fmt.Sprintf("b%d@2", i-49)
		}
		if m != want {
			t.Fatalf("message %d is %q, want %q", i, m, want)
		}
	}
}

// Data is valid only during the call: the next message reuses the buffer.
func TestHandlerReusesTheBuffer(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("first", "again")}})
	var mu sync.Mutex
	var kept [][]byte
	var copies []string
	c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		mu.Lock()
		kept = append(kept, m.Data) // wrong on purpose: not a copy
		copies = append(copies, string(m.Data))
		mu.Unlock()
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "two messages", func() bool { mu.Lock(); defer mu.Unlock(); return len(kept) == 2 })
	mu.Lock()
	defer mu.Unlock()
	if copies[0] != "first" || copies[1] != "again" {
		t.Fatalf("copies %q", copies)
	}
	if string(kept[0]) != "again" {
		t.Fatalf("the first message's Data still reads %q: the buffer was not reused", kept[0])
	}
}

// A handler that runs long is a stalled consumer, not a dead peer; a
// black-holed path with an idle handler is a dead peer.
func TestHandlerStalledIsNotDead(t *testing.T) {
	t.Parallel()
	t.Run("stalled", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("slow", "after"), resockettest.Echo()}})
		var k collector
		c, rec := newRecorded(t, srv.URL, fast(resocket.WithHeartbeat(20*time.Millisecond, 40*time.Millisecond), resocket.WithOnMessage(func(m resocket.Message) {
			if string(m.Data) == "slow" {
				time.Sleep(400 * time.Millisecond) // ten heartbeat periods
			}
			k.handle(m)
		}))...)
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		k.wait(t, 2)
		if n := countEvents[resocket.Disconnected](rec); n != 0 || c.Stats().HeartbeatTimeouts != 0 {
			t.Fatalf("a slow handler was taken for a dead peer: %v", rec.all())
		}
	})
	t.Run("dead", func(t *testing.T) {
		t.Parallel()
		srv := resockettest.NewServer(t)
		proxy := resockettest.NewProxy(t, srv.Addr())
		var k collector
		c, rec := newRecorded(t, proxy.URL, fast(resocket.WithHeartbeat(20*time.Millisecond, 40*time.Millisecond), resocket.WithOnMessage(k.handle))...)
		if err := c.Connect(context.Background()); err != nil {
			t.Fatal(err)
		}
		proxy.Last().Blackhole(true)
		if d := rec.disconnected(t); !errors.Is(d.Err, resocket.ErrHeartbeatTimeout) {
			t.Fatalf("got %v, want a heartbeat timeout", d.Err)
		}
	})
}

// A panic in the handler stops the client with an error naming it.
func TestHandlerPanicStopsTheClient(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Send("boom")}})
	c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		panic("handler bug: " + string(m.Data))
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	err = c.Err()
	if !errors.Is(err, resocket.ErrClosed) || !strings.Contains(err.Error(), "resocket: closed: message handler panicked: handler bug: boom") {
		t.Fatalf("Err = %v", err)
	}
}

// The handler may Write (the zero-hand-off echo) and Close; Read says
// where the messages go.
func TestHandlerWritesAndCloses(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Send("ping"),
		resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			_, b, err := p.Conn.Read(ctx)
			got <- string(b)
			return err
		}),
		resockettest.Send("close now"),
	}})
	var c *resocket.Client
	closed := make(chan struct{})
	c, err := resocket.New(srv.URL, fast(resocket.WithOnMessage(func(m resocket.Message) {
		switch string(m.Data) {
		case "ping":
			if err := c.Write(context.Background(), websocket.MessageText, []byte("pong")); err != nil {
				panic(err)
			}
		case "close now":
			c.Close() // from the read goroutine: returns once CLOSED
			close(closed)
		}
	}))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(context.Background()); !errors.Is(err, resocket.ErrOnMessage) {
		t.Fatalf("Read = %v, want ErrOnMessage", err)
	}
	if m := <-got; m != "pong" {
		t.Fatalf("server got %q", m)
	}
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close inside the handler did not return")
	}
	if c.Err() != resocket.ErrClosed {
		t.Fatalf("Err = %v", c.Err())
	}
	if _, err := c.ReadMessage(context.Background()); !errors.Is(err, resocket.ErrClosed) {
		t.Fatalf("ReadMessage after Close = %v", err)
	}
	if _, err := resocket.New(srv.URL, resocket.WithOnMessage(nil)); err == nil || !strings.Contains(err.Error(), "WithOnMessage: handler is nil") {
		t.Fatalf("WithOnMessage(nil): %v", err)
	}
}
