package bench

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/bench/command"
	"github.com/resocket/resocket/otelresocket"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

var serverURL string

func TestMain(m *testing.M) {
	flag.Parse()
	if flag.Lookup("test.bench").Value.String() == "" {
		os.Exit(m.Run()) // no benchmarks asked for: no server needed
	}
	url, stop, err := startServer()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: starting the server:", err)
		os.Exit(1)
	}
	serverURL = url
	code := m.Run()
	stop()
	os.Exit(code)
}

// startServer builds and starts ./server, or uses RESOCKET_BENCH_URL.
func startServer() (string, func(), error) {
	if u := os.Getenv("RESOCKET_BENCH_URL"); u != "" {
		return u, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "resocket-bench")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "server")
	build := exec.Command("go", "build", "-o", bin, "./server")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-exit-on-eof")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	stop := func() { stdin.Close(); cmd.Wait(); os.RemoveAll(dir) }
	if err != nil {
		stop()
		return "", nil, err
	}
	return strings.TrimSpace(line), stop, nil
}

var sizes = []int{16, 1 << 10, 64 << 10}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs f for b.N messages and reports the CPU per message.
func measure(b *testing.B, size int, f func()) {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	f()
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/msg")
}

// conn is one implementation's client: send a message, receive one.
type conn interface {
	send(p []byte) error
	recv() error
	close()
}

type coderConn struct{ c *coder.Conn }

func (c coderConn) send(p []byte) error {
	return c.c.Write(context.Background(), coder.MessageBinary, p)
}
func (c coderConn) recv() error { _, _, err := c.c.Read(context.Background()); return err }
func (c coderConn) close()      { c.c.CloseNow() }

type gorillaConn struct{ c *gorilla.Conn }

func (c gorillaConn) send(p []byte) error { return c.c.WriteMessage(gorilla.BinaryMessage, p) }
func (c gorillaConn) recv() error         { _, _, err := c.c.ReadMessage(); return err }
func (c gorillaConn) close()              { c.c.Close() }

type readConn struct{ c *resocket.Client }

func (c readConn) send(p []byte) error {
	return c.c.Write(context.Background(), coder.MessageBinary, p)
}
func (c readConn) recv() error { _, _, err := c.c.Read(context.Background()); return err }
func (c readConn) close()      { c.c.Close() }

func dial(b *testing.B, impl string) conn {
	b.Helper()
	switch impl {
	case "coder":
		c, _, err := coder.Dial(context.Background(), serverURL, nil)
		if err != nil {
			b.Fatal(err)
		}
		c.SetReadLimit(-1)
		return coderConn{c}
	case "gorilla":
		c, _, err := gorilla.DefaultDialer.Dial(serverURL, http.Header{})
		if err != nil {
			b.Fatal(err)
		}
		return gorillaConn{c}
	}
	return readConn{newClient(b)}
}

// newClient is a resocket client as a user would set it up: default
// heartbeat, no read limit (as the raw twins).
func newClient(b *testing.B, opts ...resocket.Option) *resocket.Client {
	b.Helper()
	return connect(b, false, opts...)
}

// connect is newClient, instrumented with otelresocket when instrumented
// is set: an SDK MeterProvider (collected by a reader nobody reads, as
// between two scrapes) and an SDK TracerProvider that samples every span.
func connect(b *testing.B, instrumented bool, opts ...resocket.Option) *resocket.Client {
	b.Helper()
	c, err := resocket.New(serverURL, append([]resocket.Option{
		resocket.WithReadLimit(-1),
		resocket.WithBackoff(func() backoff.BackOff { return &backoff.ZeroBackOff{} }),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	if instrumented {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tp := sdktrace.NewTracerProvider()
		in, err := otelresocket.New(otelresocket.WithMeterProvider(mp), otelresocket.WithTracerProvider(tp))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(in.Instrument(c))
	}
	if err := c.Connect(context.Background()); err != nil {
		b.Fatal(err)
	}
	return c
}

// The resocket-handler-otel twin is resocket-handler instrumented with
// otelresocket: the cost of the instrumentation on the hot path.
var impls = []string{"coder", "gorilla", "resocket-read", "resocket-handler", "resocket-handler-otel"}

// BenchmarkEcho: write a message, wait for its echo; ns/op is the round
// trip. The handler writes each next message from the read goroutine.
func BenchmarkEcho(b *testing.B) {
	for _, size := range sizes {
		msg := make([]byte, size)
		for _, impl := range impls {
			b.Run(fmt.Sprintf("size=%d/impl=%s", size, impl), func(b *testing.B) {
				if strings.HasPrefix(impl, "resocket-handler") {
					echoHandler(b, msg, impl == "resocket-handler-otel")
					return
				}
				c := dial(b, impl)
				defer c.close()
				if err := c.send([]byte(command.Echo)); err != nil {
					b.Fatal(err)
				}
				measure(b, size, func() {
					for i := 0; i < b.N; i++ {
						if err := c.send(msg); err != nil {
							b.Fatal(err)
						}
						if err := c.recv(); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

func echoHandler(b *testing.B, msg []byte, instrumented bool) {
	var c *resocket.Client
	var left atomic.Int64
	done := make(chan struct{})
	c = connect(b, instrumented, resocket.WithOnMessage(func(resocket.Message) {
		if left.Add(-1) == 0 {
			close(done)
			return
		}
		if err := c.Write(context.Background(), coder.MessageBinary, msg); err != nil {
			panic(err)
		}
	}))
	defer c.Close()
	c.Write(context.Background(), coder.MessageText, []byte(command.Echo))
	left.Store(int64(b.N))
	measure(b, len(msg), func() {
		c.Write(context.Background(), coder.MessageBinary, msg)
		<-done
	})
}

// BenchmarkStream: the server sends b.N messages as fast as it can; ns/op
// is the time per message received.
func BenchmarkStream(b *testing.B) {
	for _, size := range sizes {
		cmd := func(n int) []byte { return []byte(command.Stream(n, size)) }
		for _, impl := range impls {
			b.Run(fmt.Sprintf("size=%d/impl=%s", size, impl), func(b *testing.B) {
				if strings.HasPrefix(impl, "resocket-handler") {
					streamHandler(b, size, cmd(b.N), impl == "resocket-handler-otel")
					return
				}
				c := dial(b, impl)
				defer c.close()
				measure(b, size, func() {
					if err := c.send(cmd(b.N)); err != nil {
						b.Fatal(err)
					}
					for i := 0; i < b.N; i++ {
						if err := c.recv(); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

func streamHandler(b *testing.B, size int, cmd []byte, instrumented bool) {
	var n atomic.Int64
	want := int64(b.N)
	done := make(chan struct{})
	c := connect(b, instrumented, resocket.WithOnMessage(func(resocket.Message) {
		if n.Add(1) == want {
			close(done)
		}
	}))
	defer c.Close()
	measure(b, size, func() {
		c.Write(context.Background(), coder.MessageText, cmd)
		<-done
	})
}

// BenchmarkEchoDeadline is BenchmarkEcho at 1 KiB with a fresh 10 s
// deadline on every write, as a careful caller writes. Both sides pay for
// watching the ctx during the write: coder/websocket to cut the socket
// when it ends, resocket to tell a frame that went out whole from one
// that did not.
func BenchmarkEchoDeadline(b *testing.B) {
	msg := make([]byte, 1<<10)
	for _, impl := range []string{"coder", "resocket-read"} {
		b.Run("size=1024/impl="+impl, func(b *testing.B) {
			var write func(ctx context.Context, p []byte) error
			var read func() error
			switch c := dial(b, impl).(type) {
			case coderConn:
				defer c.close()
				write = func(ctx context.Context, p []byte) error { return c.c.Write(ctx, coder.MessageBinary, p) }
				read = c.recv
			case readConn:
				defer c.close()
				write = func(ctx context.Context, p []byte) error { return c.c.Write(ctx, coder.MessageBinary, p) }
				read = c.recv
			}
			if err := write(context.Background(), []byte(command.Echo)); err != nil {
				b.Fatal(err)
			}
			measure(b, len(msg), func() {
				for i := 0; i < b.N; i++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err := write(ctx, msg)
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					if err := read(); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
