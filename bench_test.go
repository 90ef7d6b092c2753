package resocket_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/chaos"
	"github.com/resocket/resocket/resockettest"
)

// Each benchmark has a raw coder/websocket twin on the same server; run
// them alternately with internal/bench/run.sh, which prints the ratios.

var sizes = []int{16, 1 << 10, 64 << 10}

// benchServer answers commands: "stream N S" sends N binary messages of S
// bytes; "echo" echoes until the client leaves; "drop" resets the TCP
// connection; "close" closes with 1012; "hello" (a handshake) gets "ok".
func benchServer(b *testing.B) *resockettest.Server {
	b.Helper()
	srv, err := resockettest.Start("")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{serveCommands}})
	return srv
}

func serveCommands(ctx context.Context, p *resockettest.Peer) error {
	for {
		typ, cmd, err := p.Conn.Read(ctx)
		if err != nil {
			return err
		}
		f := strings.Fields(string(cmd))
		switch {
		case len(f) == 3 && f[0] == "stream":
			n, _ := strconv.Atoi(f[1])
			size, _ := strconv.Atoi(f[2])
			msg := make([]byte, size)
			for i := 0; i < n; i++ {
				if err := p.Conn.Write(ctx, websocket.MessageBinary, msg); err != nil {
					return err
				}
			}
		case len(f) == 1 && f[0] == "echo":
			for {
				typ, b, err := p.Conn.Read(ctx)
				if err != nil {
					return err
				}
				if err := p.Conn.Write(ctx, typ, b); err != nil {
					return err
				}
			}
		case len(f) == 1 && f[0] == "hello":
			p.Conn.Write(ctx, typ, []byte("ok"))
		case len(f) == 1 && f[0] == "drop":
			return resockettest.Reset()(ctx, p)
		case len(f) == 1 && f[0] == "close":
			return resockettest.Close(websocket.StatusServiceRestart, "")(ctx, p)
		}
	}
}

func rawDial(b *testing.B, url string) *websocket.Conn {
	b.Helper()
	c, _, err := websocket.Dial(context.Background(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	c.SetReadLimit(-1)
	return c
}

func benchClient(b *testing.B, url string, opts ...resocket.Option) *resocket.Client {
	b.Helper()
	c, err := resocket.Dial(context.Background(), url, append([]resocket.Option{resocket.WithReadLimit(-1)}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func command(ctx context.Context, write func(context.Context, websocket.MessageType, []byte) error, cmd string) {
	if err := write(ctx, websocket.MessageText, []byte(cmd)); err != nil {
		panic(err)
	}
}

// BenchmarkStream: one-way server-to-client streaming.
func BenchmarkStream(b *testing.B) {
	srv := benchServer(b)
	ctx := context.Background()
	for _, size := range sizes {
		b.Run(fmt.Sprintf("size=%d/impl=raw", size), func(b *testing.B) {
			c := rawDial(b, srv.URL)
			defer c.CloseNow()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			command(ctx, c.Write, fmt.Sprintf("stream %d %d", b.N, size))
			for i := 0; i < b.N; i++ {
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("size=%d/impl=resocket", size), func(b *testing.B) {
			c := benchClient(b, srv.URL)
			defer c.Close()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			command(ctx, c.Write, fmt.Sprintf("stream %d %d", b.N, size))
			for i := 0; i < b.N; i++ {
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("size=%d/impl=handler", size), func(b *testing.B) {
			var n atomic.Int64
			done := make(chan struct{})
			var want int64
			c := benchClient(b, srv.URL, resocket.WithOnMessage(func(resocket.Message) {
				if n.Add(1) == want {
					close(done)
				}
			}))
			defer c.Close()
			want = int64(b.N)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			command(ctx, c.Write, fmt.Sprintf("stream %d %d", b.N, size))
			<-done
		})
	}
}

// BenchmarkEcho: write a message, read its echo.
func BenchmarkEcho(b *testing.B) {
	srv := benchServer(b)
	ctx := context.Background()
	for _, size := range sizes {
		msg := make([]byte, size)
		b.Run(fmt.Sprintf("size=%d/impl=raw", size), func(b *testing.B) {
			c := rawDial(b, srv.URL)
			defer c.CloseNow()
			command(ctx, c.Write, "echo")
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("size=%d/impl=resocket", size), func(b *testing.B) {
			c := benchClient(b, srv.URL)
			defer c.Close()
			command(ctx, c.Write, "echo")
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		// The zero-hand-off echo: each echo's arrival writes the next
		// message from the read goroutine itself.
		b.Run(fmt.Sprintf("size=%d/impl=handler", size), func(b *testing.B) {
			var c *resocket.Client
			var left atomic.Int64
			done := make(chan struct{})
			c = benchClient(b, srv.URL, resocket.WithOnMessage(func(resocket.Message) {
				if left.Add(-1) == 0 {
					close(done)
					return
				}
				if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
					panic(err)
				}
			}))
			defer c.Close()
			command(ctx, c.Write, "echo")
			left.Store(int64(b.N))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				b.Fatal(err)
			}
			<-done
		})
	}
}

func helloHandshake(ctx context.Context, s *resocket.Session) error {
	if err := s.Conn.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		return err
	}
	_, _, err := s.Conn.Read(ctx)
	return err
}

// BenchmarkReconnect: the server drops the socket (TCP reset, or a 1012
// close); the time until the client is OPEN again with its handshake done,
// with a zero-delay schedule. The raw twin notices the drop and makes a
// fresh Dial plus the same handshake.
func BenchmarkReconnect(b *testing.B) {
	srv := benchServer(b)
	ctx := context.Background()
	for _, drop := range []string{"drop", "close"} {
		b.Run(fmt.Sprintf("by=%s/impl=raw", drop), func(b *testing.B) {
			c := rawDial(b, srv.URL)
			helloHandshake(ctx, &resocket.Session{Conn: c})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				command(ctx, c.Write, drop)
				for {
					if _, _, err := c.Read(ctx); err != nil {
						break
					}
				}
				c.CloseNow()
				c = rawDial(b, srv.URL)
				if err := helloHandshake(ctx, &resocket.Session{Conn: c}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			c.CloseNow()
		})
		b.Run(fmt.Sprintf("by=%s/impl=resocket", drop), func(b *testing.B) {
			c := benchClient(b, srv.URL, resocket.WithHandshake(helloHandshake),
				resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }))
			defer c.Close()
			events, cancel := c.Subscribe(16)
			defer cancel()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				command(ctx, c.Write, drop)
				for e := range events {
					if _, ok := e.(resocket.Connected); ok {
						break
					}
				}
			}
		})
	}
}

// BenchmarkDeadPeer: a black-holed path with heartbeat interval I and
// timeout T; reports the time to notice as a multiple of I+T.
func BenchmarkDeadPeer(b *testing.B) {
	const interval, timeout = 50 * time.Millisecond, 50 * time.Millisecond
	srv := benchServer(b)
	proxy, err := resockettest.StartProxy(srv.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer proxy.Close()
	c := benchClient(b, proxy.URL, resocket.WithHeartbeat(interval, timeout),
		resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }))
	defer c.Close()
	events, cancel := c.Subscribe(64)
	defer cancel()
	var worst, total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		proxy.Last().Blackhole(true)
		for e := range events {
			if _, ok := e.(resocket.Disconnected); ok {
				break
			}
		}
		d := time.Since(start)
		total += d
		worst = max(worst, d)
		for e := range events {
			if _, ok := e.(resocket.Connected); ok {
				break
			}
		}
	}
	b.ReportMetric(float64(total)/float64(b.N)/float64(interval+timeout), "x(I+T)")
	b.ReportMetric(float64(worst)/float64(interval+timeout), "worst-x(I+T)")
}

func idleClients() int {
	if n, err := strconv.Atoi(os.Getenv("RESOCKET_IDLE_N")); err == nil && n > 0 {
		return n
	}
	return 5000
}

func footprint(b *testing.B, url string, connect func() func()) {
	n := idleClients()
	before, g0 := chaos.HeapNow(), runtime.NumGoroutine()
	closers := make([]func(), 0, n)
	for i := 0; i < n; i++ {
		closers = append(closers, connect())
	}
	time.Sleep(200 * time.Millisecond) // let the server side settle
	after, g1 := chaos.HeapNow(), runtime.NumGoroutine()
	b.ReportMetric(float64(after-before)/float64(n), "heap-B/client")
	b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/client")
	for _, close := range closers {
		close()
	}
}

// BenchmarkIdle: N connected idle clients with the heartbeat on, in one
// process with the server (which is counted too, equally for both), versus
// N raw connections each with a reader and a ping loop.
// RESOCKET_IDLE_URL points at a server in another process
// (go run ./internal/cmd/benchserver) to count the client side only.
func BenchmarkIdle(b *testing.B) {
	url := os.Getenv("RESOCKET_IDLE_URL")
	if url == "" {
		url = benchServer(b).URL
	}
	// Warm up with the larger number of goroutines: the runtime keeps its
	// goroutine descriptors (heap objects) at their high-water mark, and
	// whichever side ran first would pay for them.
	footprint(b, url, func() func() {
		c := benchClient(b, url)
		return func() { c.Close() }
	})
	b.Run("impl=raw", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			footprint(b, url, func() func() {
				c := rawDial(b, url)
				ctx := c.CloseRead(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					t := time.NewTicker(resocket.DefaultHeartbeatInterval)
					defer t.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-t.C:
							pctx, cancel := context.WithTimeout(ctx, resocket.DefaultHeartbeatTimeout)
							c.Ping(pctx)
							cancel()
						}
					}
				}()
				return func() { c.CloseNow(); <-done }
			})
		}
	})
	b.Run("impl=resocket", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			footprint(b, url, func() func() {
				c := benchClient(b, url, resocket.WithReadLimit(32768))
				return func() { c.Close() }
			})
		}
	})
}

// BenchmarkStorm: 1,000 connected clients; the server drops them all at
// once. Reports the peak number of reconnect attempts in any 100 ms window
// against the uniform share, and the time until every client is OPEN.
func BenchmarkStorm(b *testing.B) {
	const n = 1000
	for i := 0; i < b.N; i++ {
		srv, err := resockettest.Start("")
		if err != nil {
			b.Fatal(err)
		}
		var (
			mu       sync.Mutex
			attempts []time.Time
			storm    atomic.Bool
		)
		srv.SetPlanner(func(r *http.Request, index int) resockettest.Script {
			if storm.Load() {
				mu.Lock()
				attempts = append(attempts, time.Now())
				mu.Unlock()
			}
			return resockettest.Script{}
		})
		clients := make([]*resocket.Client, n)
		var reopened sync.WaitGroup
		for k := range clients {
			c, err := resocket.Dial(context.Background(), srv.URL, resocket.WithHeartbeat(0, 0))
			if err != nil {
				b.Fatal(err)
			}
			clients[k] = c
			ch, _ := c.Subscribe(16)
			reopened.Add(1)
			go func() {
				defer reopened.Done()
				for e := range ch {
					if _, ok := e.(resocket.Connected); ok {
						return
					}
				}
			}()
		}
		storm.Store(true)
		start := time.Now()
		srv.DropAll()
		reopened.Wait()
		allOpen := time.Since(start)
		mu.Lock()
		sort.Slice(attempts, func(i, j int) bool { return attempts[i].Before(attempts[j]) })
		peak := 0
		for lo, hi := 0, 0; hi < len(attempts); hi++ {
			for attempts[hi].Sub(attempts[lo]) >= 100*time.Millisecond {
				lo++
			}
			peak = max(peak, hi-lo+1)
		}
		mu.Unlock()
		// The default first retry is uniform over one second: 100 per 100 ms.
		uniform := float64(n) * float64(100*time.Millisecond) / float64(resocket.DefaultInitialDelay)
		b.ReportMetric(float64(peak), "peak/100ms")
		b.ReportMetric(float64(peak)/uniform, "peak/uniform")
		b.ReportMetric(float64(allOpen.Milliseconds()), "all-open-ms")
		for _, c := range clients {
			c.Close()
		}
		srv.Close()
	}
}
