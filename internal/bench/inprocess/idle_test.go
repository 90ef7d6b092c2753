package inprocess_test

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/internal/chaos"
)

// BenchmarkIdle: N connected idle clients with the heartbeat on, in one
// process with the server (which is counted too, equally for both), versus
// N raw connections each with a reader and a ping loop. RESOCKET_IDLE_URL
// points at the command server in another process (go run ../server) to
// count the client side only; RESOCKET_IDLE_N is N (5,000 when unset).
//
// Each run is one measurement of N clients whatever b.N (the metrics are
// per client, and ns/op is suppressed): -benchtime 1x is all it needs.
func BenchmarkIdle(b *testing.B) {
	url := os.Getenv("RESOCKET_IDLE_URL")
	if url == "" {
		url = startServer(b).URL
	}
	// Warm up with the larger number of goroutines: the runtime keeps its
	// goroutine descriptors (heap objects) at their high-water mark, and
	// whichever side ran first would pay for them.
	footprint(b, func() func() {
		c := newClient(b, url)
		return func() { c.Close() }
	})
	b.Run("impl=raw", func(b *testing.B) {
		footprint(b, func() func() { return rawIdle(b, url) })
	})
	b.Run("impl=resocket", func(b *testing.B) {
		footprint(b, func() func() {
			c := newClient(b, url, resocket.WithReadLimit(32768))
			return func() { c.Close() }
		})
	})
}

func idleClients() int {
	if n, err := strconv.Atoi(os.Getenv("RESOCKET_IDLE_N")); err == nil && n > 0 {
		return n
	}
	return 5000
}

// footprint connects idleClients clients with connect, which returns how
// to close each, and reports the heap and the goroutines they add.
func footprint(b *testing.B, connect func() func()) {
	n := idleClients()
	before, g0 := chaos.HeapNow(), runtime.NumGoroutine()
	closers := make([]func(), 0, n)
	for i := 0; i < n; i++ {
		closers = append(closers, connect())
	}
	time.Sleep(200 * time.Millisecond) // let the server side settle
	after, g1 := chaos.HeapNow(), runtime.NumGoroutine()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(after-before)/float64(n), "heap-B/client")
	b.ReportMetric(float64(g1-g0)/float64(n), "goroutines/client")
	for _, close := range closers {
		close()
	}
}

// rawIdle is what a raw client needs to notice a dead peer while idle: a
// reader (for the pongs) and a ping loop with resocket's default heartbeat.
func rawIdle(b *testing.B, url string) func() {
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
}
