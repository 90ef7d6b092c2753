package resocket_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

func startProxy(t *testing.T, srv *resockettest.Server) *resockettest.Proxy {
	t.Helper()
	p, err := resockettest.StartProxy(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// A black-holed path (bytes accepted, nothing forwarded, TCP still open)
// is found by the heartbeat within interval+timeout; while every new
// connection is black-holed too the attempts time out; once the path is
// restored the client resumes on its own.
func TestBlackholeDetectedAndResumed(t *testing.T) {
	t.Parallel()
	const interval, timeout = 100 * time.Millisecond, 200 * time.Millisecond
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Echo()}}) // the handshake's hello is not echoed
	proxy := startProxy(t, srv)
	var m modes
	c, err := resocket.Dial(context.Background(), proxy.URL, fast(
		resocket.WithHandshake(m.handshake),
		resocket.WithHeartbeat(interval, timeout),
		resocket.WithConnectTimeout(300*time.Millisecond),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rec := record(c)
	start := time.Now()
	proxy.SetAll(resockettest.Settings{Blackhole: true})
	d := rec.disconnected(t)
	noticed := time.Since(start)
	if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry || !errors.Is(d.Err, resocket.ErrHeartbeatTimeout) {
		t.Fatalf("got %d %v %v, want a 1006 heartbeat timeout, retried", d.Code, d.Action, d.Err)
	}
	// interval+timeout, with ten times that for a loaded machine;
	// BenchmarkDeadPeer measures it, TestPingTimeoutOnTheClock checks
	// the edge exactly.
	if noticed > 10*(interval+timeout) {
		t.Fatalf("noticed after %v, want about %v", noticed, interval+timeout)
	}
	rec.waitFor(t, "an attempt timing out in the black hole", func(e resocket.Event) bool {
		d, ok := e.(resocket.Disconnected)
		return ok && strings.Contains(d.Err.Error(), "connect timeout")
	})
	proxy.SetAll(resockettest.Settings{})
	rec.waitFor(t, "a resumed socket", func(e resocket.Event) bool {
		c, ok := e.(resocket.Connected)
		return ok && c.Mode == resume
	})
	if err := c.Write(context.Background(), websocket.MessageText, []byte("back")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); got != "back" {
		t.Fatalf("echo %q", got)
	}
}

// Latency below the pong timeout is not a dead peer.
func TestLatencyIsNotDeath(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	proxy := startProxy(t, srv)
	proxy.SetDefault(resockettest.Settings{Latency: 80 * time.Millisecond}) // 160 ms round trip
	c, err := resocket.Dial(context.Background(), proxy.URL, fast(resocket.WithHeartbeat(50*time.Millisecond, time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 5; i++ {
		if err := c.Write(context.Background(), websocket.MessageText, []byte("slow")); err != nil {
			t.Fatal(err)
		}
		if got := readText(t, c); got != "slow" {
			t.Fatalf("echo %q", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if s := c.Stats(); s.HeartbeatTimeouts != 0 || s.Opens != 1 {
		t.Fatalf("stats %+v: latency was taken for death", s)
	}
}

// A throttled, slow-trickle upgrade hits the connect timeout and is
// retried; with bandwidth back the client opens.
func TestThrottledUpgradeRetried(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	proxy := startProxy(t, srv)
	proxy.SetDefault(resockettest.Settings{Bandwidth: 20})
	c, rec := newRecorded(t, proxy.URL, fast(resocket.WithConnectTimeout(300*time.Millisecond))...)
	connected := make(chan error, 1)
	go func() { connected <- c.Connect(context.Background()) }()
	d := rec.disconnected(t)
	if d.Action != resocket.ActionRetry || !strings.Contains(d.Err.Error(), "connect timeout") {
		t.Fatalf("got %v %v", d.Action, d.Err)
	}
	proxy.SetDefault(resockettest.Settings{})
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
}

// Reset and half-close on the path are 1006 drops, resumed.
func TestProxyResetAndHalfClose(t *testing.T) {
	for name, cut := range map[string]func(*resockettest.ProxyConn){
		"reset":      (*resockettest.ProxyConn).Reset,
		"half-close": (*resockettest.ProxyConn).HalfClose,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := resockettest.NewServer(t)
			proxy := startProxy(t, srv)
			var m modes
			c, err := resocket.Dial(context.Background(), proxy.URL, fast(resocket.WithHandshake(m.handshake))...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			rec := record(c)
			cut(proxy.Last())
			d := rec.disconnected(t)
			if d.Code != websocket.StatusAbnormalClosure || d.Action != resocket.ActionRetry {
				t.Fatalf("got %d %v (%v)", d.Code, d.Action, d.Err)
			}
			rec.connected(t, 1)
			equal(t, "modes", m.list(), []resocket.Mode{identify, resume})
		})
	}
}
