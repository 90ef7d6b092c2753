package resocket_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// Servers that misbehave get the action the table gives them, a clear
// error, and cost bounded memory. (A 101 with a wrong accept key and an
// endless slow upgrade are in client_test.go: TestBadAcceptKeyIsFatal and
// TestDialErrorRows.)

// A 10 MB message against the default 1 MiB read limit is a fatal 1009
// naming WithReadLimit, and the client never holds the 10 MB.
func TestHostileHugeMessage(t *testing.T) {
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.SendLarge(10 << 20)}})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, err := resocket.Dial(context.Background(), srv.URL, fast()...)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, c)
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	err = c.Err()
	if websocket.CloseStatus(err) != -1 || !errors.Is(err, websocket.ErrMessageTooBig) || !strings.Contains(err.Error(), "WithReadLimit") {
		t.Fatalf("Err() = %v: want our own 1009 naming WithReadLimit", err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 6<<20 {
		t.Fatalf("allocated %d bytes for a message refused at 1 MiB", allocated)
	}
}

// Invalid UTF-8 in a text message fails the connection with 1007 (fatal:
// the same bytes would fail again); the server is told so.
func TestHostileInvalidUTF8(t *testing.T) {
	t.Parallel()
	got := make(chan websocket.StatusCode, 1)
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Send("fine"),
		resockettest.Raw(resockettest.Frame(0x1, []byte{'b', 'a', 'd', 0xff, 0xfe})),
		resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			_, _, err := p.Conn.Read(ctx)
			got <- websocket.CloseStatus(err)
			return err
		}),
	}})
	c, rec := newRecorded(t, srv.URL, fast()...)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := rec.disconnected(t)
	if d.Code != websocket.StatusInvalidFramePayloadData || d.Action != resocket.ActionFatal || !errors.Is(d.Err, resocket.ErrInvalidUTF8) {
		t.Fatalf("got %d %v %v, want 1007 fatal", d.Code, d.Action, d.Err)
	}
	if code := <-got; code != websocket.StatusInvalidFramePayloadData {
		t.Fatalf("server saw %d, want 1007", code)
	}
	if got := readText(t, c); got != "fine" {
		t.Fatalf("the valid message before it: %q", got)
	}
	waitDone(t, c)
	mustErrorIs(t, c.Err(), resocket.ErrInvalidUTF8)
}

// A close frame with a code that may not be sent is a protocol error:
// 1002, re-identify once.
func TestHostileInvalidCloseCode(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{
		resockettest.Read(1),
		resockettest.Raw(resockettest.Frame(0x8, []byte{0x03, 0xE7})), // 999
		resockettest.Sleep(time.Second),
	}})
	var m modes
	c, rec := newRecorded(t, srv.URL, fast(resocket.WithHandshake(m.handshake))...)
	if err := c.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := rec.disconnected(t)
	if d.Code != websocket.StatusProtocolError || d.Action != resocket.ActionReidentify || !strings.Contains(d.Err.Error(), "999") {
		t.Fatalf("got %d %v %v, want 1002 re-identify naming the code", d.Code, d.Action, d.Err)
	}
	rec.connected(t, 2)
	equal(t, "modes", m.list(), []resocket.Mode{identify, identify})
}

// A server that floods faster than the consumer reads: memory stays
// bounded by the read queue (backpressure reaches TCP), the stalled
// consumer is not a dead peer, and every message arrives in order.
func TestHostileFlood(t *testing.T) {
	const n = 100000
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.SendN(n, "flood %d")}})
	c, err := resocket.Dial(context.Background(), srv.URL, fast(resocket.WithHeartbeat(20*time.Millisecond, 500*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // the consumer stalls; the server keeps sending
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if ms.HeapAlloc > 32<<20 {
		t.Fatalf("heap %d bytes while the consumer stalled", ms.HeapAlloc)
	}
	for i := 1; i <= n; i++ {
		if got, want := readText(t, c), fmt.Sprintf("flood %d", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if s := c.Stats(); s.HeartbeatTimeouts != 0 || s.Opens != 1 {
		t.Fatalf("stats %+v", s)
	}
}
