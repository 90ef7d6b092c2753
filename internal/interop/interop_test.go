package interop

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/resocket/resocket"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitLimit = 15 * time.Second

// bounded is the context of a test's Dial or Connect: a peer that never
// lets the client open fails the test with the context's error after a
// minute instead of hanging the package.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// need skips the test when a peer is missing, or fails it under CI=true.
func need(t *testing.T, what, install string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing under CI=true (%v); install it: %s", what, err, install)
	}
	t.Skipf("%s is missing (%v); install it with: %s", what, err, install)
}

// Peers ------------------------------------------------------------------

const python = "/usr/bin/python3" // Debian's python3-websockets is seen by this one

var versions sync.Map // peer → version, logged once per test

func logVersion(t *testing.T, peer string, version func() (string, error)) {
	t.Helper()
	v, ok := versions.Load(peer)
	if !ok {
		s, err := version()
		if err != nil {
			s = "unknown: " + err.Error()
		}
		v, _ = versions.LoadOrStore(peer, s)
	}
	t.Logf("peer %s", v)
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func needPython(t *testing.T) {
	_, err := output(python, "-c", "import websockets")
	need(t, "Python websockets", "apt-get install -y python3-websockets", err)
	logVersion(t, "python", func() (string, error) {
		return output(python, "-c", "import sys, websockets; print('Python', sys.version.split()[0], 'websockets', websockets.__version__)")
	})
}

func needNode(t *testing.T) {
	_, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join("node_modules", "ws", "package.json"))
	}
	need(t, "Node ws", "npm ci --prefix internal/interop", err)
	logVersion(t, "node", func() (string, error) {
		return output("node", "-e", "console.log('Node', process.version, 'ws', require('./node_modules/ws/package.json').version)")
	})
}

// startPeer runs a scripted server process and returns its ws:// URL.
func startPeer(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		var port int
		if _, err := fmt.Sscanf(s, "listening %d", &port); err != nil {
			t.Fatalf("%s did not start: %q", name, s)
		}
		return fmt.Sprintf("ws://127.0.0.1:%d/", port)
	case <-time.After(waitLimit):
		t.Fatalf("%s did not start within %v", name, waitLimit)
		return ""
	}
}

// Client helpers ------------------------------------------------------------

type modes struct {
	mu  sync.Mutex
	got []resocket.Mode
}

func (m *modes) handshake(ctx context.Context, s *resocket.Session) error {
	m.mu.Lock()
	m.got = append(m.got, s.Mode)
	m.mu.Unlock()
	return s.Conn.Write(ctx, websocket.MessageText, []byte(s.Mode.String()))
}

func (m *modes) list() []resocket.Mode {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]resocket.Mode(nil), m.got...)
}

func quick(opts ...resocket.Option) []resocket.Option {
	return append([]resocket.Option{
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(20 * time.Millisecond) }),
		resocket.WithCloseTimeout(time.Second),
	}, opts...)
}

// next returns the next event of a type, or fails.
func next[E resocket.Event](t *testing.T, events <-chan resocket.Event) E {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("events ended before a %T", *new(E))
			}
			if want, ok := e.(E); ok {
				return want
			}
		case <-deadline:
			t.Fatalf("no %T within %v", *new(E), waitLimit)
		}
	}
}

// connected makes a client (closed when the test ends), takes its events
// before the first dial, and connects.
func connected(t *testing.T, url string, opts ...resocket.Option) (*resocket.Client, <-chan resocket.Event) {
	t.Helper()
	c, err := resocket.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	events := c.Events()
	if err := c.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	return c, events
}

func echo(t *testing.T, c *resocket.Client, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != msg {
		t.Fatalf("echo of %q: %q, %v", msg, got, err)
	}
}

func equalModes(t *testing.T, got, want []resocket.Mode) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("modes %v, want %v", got, want)
	}
}

// Scenarios, the same for every peer ------------------------------------------

type peerStarter func(t *testing.T, plan string) string

func scenarios(t *testing.T, start peerStarter, drop string) {
	id, re := resocket.ModeIdentify, resocket.ModeResume
	t.Run("retry-1012", func(t *testing.T) {
		url := start(t, `["close:1012", "echo"]`)
		var m modes
		c, events := connected(t, url, quick(resocket.WithHandshake(m.handshake))...)
		d := next[resocket.Disconnected](t, events)
		if d.Code != websocket.StatusServiceRestart || d.Reason != "interop" || d.Action != resocket.ActionRetry {
			t.Fatalf("got %d %q %v", d.Code, d.Reason, d.Action)
		}
		next[resocket.Connected](t, events)
		equalModes(t, m.list(), []resocket.Mode{id, re})
		echo(t, c, "after resume")
	})
	t.Run("reidentify-4003", func(t *testing.T) {
		url := start(t, `["close:4003", "echo"]`)
		var m modes
		c, events := connected(t, url, quick(resocket.WithHandshake(m.handshake))...)
		if d := next[resocket.Disconnected](t, events); d.Code != 4003 || d.Action != resocket.ActionReidentify {
			t.Fatalf("got %d %v", d.Code, d.Action)
		}
		next[resocket.Connected](t, events)
		equalModes(t, m.list(), []resocket.Mode{id, id})
		echo(t, c, "fresh session")
	})
	t.Run("fatal-4004", func(t *testing.T) {
		url := start(t, `["close:4004:authentication failed"]`)
		var m modes
		c, err := resocket.Dial(bounded(t), url, quick(resocket.WithHandshake(m.handshake))...)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-c.Done():
		case <-time.After(waitLimit):
			t.Fatal("not closed")
		}
		if websocket.CloseStatus(c.Err()) != 4004 || !errors.Is(c.Err(), resocket.ErrClosed) {
			t.Fatalf("Err() = %v", c.Err())
		}
		equalModes(t, m.list(), []resocket.Mode{id})
	})
	t.Run("no-close-frame-1006", func(t *testing.T) {
		url := start(t, `["`+drop+`", "echo"]`)
		var m modes
		c, events := connected(t, url, quick(resocket.WithHandshake(m.handshake))...)
		if d := next[resocket.Disconnected](t, events); d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry {
			t.Fatalf("got %d %v (%v)", d.Code, d.Action, d.Err)
		}
		next[resocket.Connected](t, events)
		equalModes(t, m.list(), []resocket.Mode{id, re})
		echo(t, c, "after the drop")
	})
	t.Run("reject-503-retry-after", func(t *testing.T) {
		url := start(t, `["reject:503:1", "echo"]`)
		c, err := resocket.New(url, quick()...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		events := c.Events()
		connected := make(chan error, 1)
		go func() { connected <- c.Connect(bounded(t)) }()
		d := next[resocket.Disconnected](t, events)
		if d.HTTPStatus != 503 || d.Action != resocket.ActionRetry || d.Header.Get("Retry-After") != "1" || d.Next < time.Second {
			t.Fatalf("got status %d %v Retry-After %q next %v", d.HTTPStatus, d.Action, d.Header.Get("Retry-After"), d.Next)
		}
		if err := <-connected; err != nil {
			t.Fatal(err)
		}
	})
	t.Run("reject-401-fatal", func(t *testing.T) {
		url := start(t, `["reject:401"]`)
		_, err := resocket.Dial(bounded(t), url, quick()...)
		var ue *resocket.UpgradeError
		if !errors.As(err, &ue) || ue.Status != 401 {
			t.Fatalf("Dial = %v, want an UpgradeError 401", err)
		}
	})
}

func TestPythonWebsockets(t *testing.T) {
	needPython(t)
	scenarios(t, func(t *testing.T, plan string) string {
		return startPeer(t, python, "peers/server.py", plan)
	}, "drop")
}

func TestNodeWS(t *testing.T) {
	needNode(t)
	scenarios(t, func(t *testing.T, plan string) string {
		return startPeer(t, "node", "peers/server.js", plan)
	}, "terminate")
	t.Run("permessage-deflate", func(t *testing.T) {
		url := startPeer(t, "node", "peers/server.js", `["echo"]`, "deflate")
		var negotiated string
		c, err := resocket.Dial(bounded(t), url, quick(
			resocket.WithDialOptions(&websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover}),
			resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
				negotiated = s.Response.Header.Get("Sec-WebSocket-Extensions")
				return s.Conn.Write(ctx, websocket.MessageText, []byte("hello"))
			}))...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !strings.Contains(negotiated, "permessage-deflate") {
			t.Fatalf("server negotiated %q", negotiated)
		}
		for i := 0; i < 20; i++ {
			echo(t, c, strings.Repeat(fmt.Sprintf("compressible %d ", i), 500))
		}
	})
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
