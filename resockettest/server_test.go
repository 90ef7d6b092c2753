package resockettest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/resocket/resocket/resockettest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// These tests use raw coder/websocket as the client, so that the kit is
// checked on its own.

func dial(t *testing.T, url string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if c != nil {
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func read(t *testing.T, c *websocket.Conn) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	return string(b), err
}

func steps(s ...resockettest.Step) resockettest.Script { return resockettest.Script{Steps: s} }

func TestUpgradeAnswers(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		resockettest.Script{Status: 520, Header: http.Header{"Retry-After": {"3"}}, Body: "origin down"},
		resockettest.Script{Delay: 100 * time.Millisecond},
		resockettest.Script{BadAccept: true},
		resockettest.Script{ResetUpgrade: true},
	)
	_, resp, err := dial(t, srv.URL)
	if err == nil || resp == nil || resp.StatusCode != 520 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("first: %v %+v", err, resp)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "origin down" {
		t.Fatalf("body %q", body)
	}
	start := time.Now()
	if _, _, err := dial(t, srv.URL); err != nil || time.Since(start) < 100*time.Millisecond {
		t.Fatalf("delayed upgrade: %v after %v", err, time.Since(start))
	}
	if _, _, err := dial(t, srv.URL); err == nil || !strings.Contains(err.Error(), "Sec-WebSocket-Accept") {
		t.Fatalf("bad accept: %v", err)
	}
	if _, resp, err := dial(t, srv.URL); err == nil || resp != nil {
		t.Fatalf("reset upgrade: %v %+v, want a network error and no response", err, resp)
	}
	if n := srv.Accepted(); n != 4 {
		t.Fatalf("Accepted = %d", n)
	}
}

func TestTrickledUpgrade(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, resockettest.Script{Trickle: 10 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := websocket.Dial(ctx, srv.URL, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a 101 trickled one byte per 10 ms finished within 100 ms: %v", err)
	}
}

// Steps run in order; the records tell what each connection sent and
// where it went.
func TestStepsAndRecords(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t, steps(
		resockettest.ReadMode(),
		resockettest.Send("a", "b"),
		resockettest.SendN(2, "n%d"),
		resockettest.SendLarge(3),
		resockettest.SendLarge(100<<10),
		resockettest.Read(1),
		resockettest.EchoN(1),
		resockettest.Step(func(ctx context.Context, p *resockettest.Peer) error {
			return p.Conn.Write(ctx, websocket.MessageText, []byte("from a func, on "+p.Info.Path))
		}),
		resockettest.Close(4003, "session invalidated"),
	))
	c, _, err := dial(t, srv.URL+"gateway?v=10&encoding=json")
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(-1)
	ctx := context.Background()
	c.Write(ctx, websocket.MessageText, []byte("resume"))
	var got []string
	for i := 0; i < 6; i++ {
		m, err := read(t, c)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m[:min(len(m), 2)])
	}
	if strings.Join(got, ",") != "a,b,n1,n2,\x00\x00,\x00\x00" {
		t.Fatalf("got %q", got)
	}
	c.Write(ctx, websocket.MessageText, []byte("read me"))
	c.Write(ctx, websocket.MessageText, []byte("echo me"))
	if m, _ := read(t, c); m != "echo me" {
		t.Fatalf("echo: %q", m)
	}
	if m, _ := read(t, c); m != "from a func, on /gateway" {
		t.Fatalf("func step: %q", m)
	}
	if _, err := read(t, c); websocket.CloseStatus(err) != 4003 {
		t.Fatalf("close: %v", err)
	}
	checkRecords(t, srv)
}

func checkRecords(t *testing.T, srv *resockettest.Server) {
	t.Helper()
	info := srv.Conns()[0]
	if info.Index != 1 || info.Path != "/gateway" || info.Query.Get("encoding") != "json" || info.URL != "/gateway?v=10&encoding=json" {
		t.Fatalf("records: %+v", info)
	}
	if got := info.Received(); strings.Join(got, ",") != "resume,read me,echo me" {
		t.Fatalf("Received = %q", got)
	}
	if modes := srv.Modes(); len(modes) != 1 || modes[0] != "resume" || info.Mode() != "resume" {
		t.Fatalf("Modes = %q", modes)
	}
	if info.Header.Get("Sec-WebSocket-Key") == "" {
		t.Fatal("no upgrade headers recorded")
	}
}

// The endings: a reset and a hangup give I/O errors, not close frames; a
// silent server holds the socket without answering; the default echoes.
func TestEndings(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t,
		steps(resockettest.Reset()),
		steps(resockettest.Hangup()),
		steps(resockettest.Silent(0)),
		steps(resockettest.Sleep(50*time.Millisecond), resockettest.Raw(resockettest.Frame(0x1, []byte("raw")))),
		steps(resockettest.EchoThen(50*time.Millisecond, resockettest.Reset())),
	)
	for i, want := range []string{"reset", "hangup"} {
		c, _, err := dial(t, srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := read(t, c); err == nil || websocket.CloseStatus(err) != -1 {
			t.Fatalf("%s (%d): %v, want an I/O error", want, i, err)
		}
	}
	c, _, err := dial(t, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Ping(pctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a silent server answered a ping: %v", err)
	}
	c, _, _ = dial(t, srv.URL)
	if m, err := read(t, c); m != "raw" {
		t.Fatalf("raw frame: %q %v", m, err)
	}
	c, _, _ = dial(t, srv.URL)
	c.Write(context.Background(), websocket.MessageText, []byte("x"))
	if m, _ := read(t, c); m != "x" {
		t.Fatalf("EchoThen: %q", m)
	}
	if _, err := read(t, c); websocket.CloseStatus(err) != -1 {
		t.Fatalf("EchoThen's reset: %v", err)
	}
	c, _, _ = dial(t, srv.URL) // the queue is empty: the default echoes
	c.Write(context.Background(), websocket.MessageText, []byte("default"))
	if m, _ := read(t, c); m != "default" {
		t.Fatalf("default: %q", m)
	}
}

func TestDefaultPlannerDropAll(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Status: 503})
	if _, resp, _ := dial(t, srv.URL); resp == nil || resp.StatusCode != 503 {
		t.Fatal("SetDefault not used")
	}
	srv.Queue(steps(resockettest.Send("queued")))
	c, _, _ := dial(t, srv.URL)
	if m, _ := read(t, c); m != "queued" {
		t.Fatalf("Queue: %q", m)
	}
	srv.DropAll() // the socket is held: its Script ended
	if _, err := read(t, c); websocket.CloseStatus(err) != -1 || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DropAll: %v, want the connection reset", err)
	}
	srv.SetPlanner(func(r *http.Request, index int) resockettest.Script {
		if r.URL.Query().Get("token") == "bad" {
			return resockettest.Script{Status: 401}
		}
		return resockettest.Script{}
	})
	if _, resp, _ := dial(t, srv.URL+"?token=bad"); resp == nil || resp.StatusCode != 401 {
		t.Fatal("planner not asked")
	}
	if _, _, err := dial(t, srv.URL+"?token=good"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(srv.URL, "ws://127.0.0.1:") || !strings.Contains(srv.URL, srv.Addr()) {
		t.Fatalf("URL %q, Addr %q", srv.URL, srv.Addr())
	}
	srv.Close()
	srv.Close() // twice is fine; Cleanup makes it three times
}

// The proxy shapes a live connection: latency, bandwidth, black hole,
// half-close, reset.
func TestProxy(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	p := resockettest.NewProxy(t, srv.Addr())
	c, _, err := dial(t, p.URL)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func() (time.Duration, error) {
		start := time.Now()
		c.Write(context.Background(), websocket.MessageText, []byte("ping"))
		_, err := read(t, c)
		return time.Since(start), err
	}
	p.SetAll(resockettest.Settings{Latency: 50 * time.Millisecond})
	if d, err := roundTrip(); err != nil || d < 100*time.Millisecond {
		t.Fatalf("latency: %v after %v", err, d)
	}
	p.Last().Set(resockettest.Settings{Bandwidth: 10 << 10})
	start := time.Now()
	c.Write(context.Background(), websocket.MessageBinary, make([]byte, 5<<10))
	if _, err := read(t, c); err != nil || time.Since(start) < 500*time.Millisecond {
		t.Fatalf("5 KiB each way at 10 KiB/s: %v after %v", err, time.Since(start))
	}
	p.Last().Set(resockettest.Settings{})
	p.Last().Blackhole(true)
	pctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Ping(pctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a black hole answered: %v", err)
	}
	if len(p.Conns()) != 1 {
		t.Fatalf("Conns = %d", len(p.Conns()))
	}
	p.Last().Reset()
}

// The proxy half-closes, changes its default and closes, more than once.
func TestProxyHalfCloseAndClose(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	p := resockettest.NewProxy(t, srv.Addr())
	c2, _, err := dial(t, p.URL)
	if err != nil {
		t.Fatal(err)
	}
	p.Last().HalfClose()
	if _, err := read(t, c2); websocket.CloseStatus(err) != -1 {
		t.Fatalf("half-close: %v", err)
	}
	p.SetDefault(resockettest.Settings{Blackhole: true})
	if !strings.Contains(p.URL, p.Addr()) {
		t.Fatal("URL and Addr disagree")
	}
	p2, err := resockettest.StartProxy(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	p2.Close()
	p2.Close()
}

// A reset passes through the proxy after the bytes sent before it, as it
// would on one TCP connection: the client reads them all, then the reset.
func TestProxyPassesAResetAfterTheBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 64 << 10
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write(make([]byte, size))
		// A reset throws away what the sender's kernel still holds: give
		// the bytes time to reach the proxy, then reset.
		time.Sleep(50 * time.Millisecond)
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	p := resockettest.NewProxy(t, ln.Addr().String())
	p.SetDefault(resockettest.Settings{Latency: 300 * time.Millisecond}) // the bytes are still in the proxy when the reset comes
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-served
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, c)
	if n != size || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read %d bytes then %v, want %d bytes then a reset", n, err, size)
	}
}
