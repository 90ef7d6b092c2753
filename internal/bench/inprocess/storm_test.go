package inprocess_test

import (
	"context"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// BenchmarkStorm: 1,000 connected clients; the server drops them all at
// once. Reports the peak number of reconnect attempts in any 100 ms window
// against the uniform share, and the time until every client is OPEN.
//
// Each run is one storm whatever b.N (ns/op is suppressed): -benchtime 1x
// is all it needs.
func BenchmarkStorm(b *testing.B) {
	const n = 1000
	srv, err := resockettest.Start("")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.SetRecording(false)
	var rec attempts
	srv.SetPlanner(func(*http.Request, int) resockettest.Script {
		rec.add(time.Now())
		return resockettest.Script{}
	})
	clients, reopened := connectAll(b, srv.URL, n)
	rec.counting.Store(true)
	start := time.Now()
	srv.DropAll()
	reopened.Wait()
	allOpen := time.Since(start)
	peak := rec.peak(100 * time.Millisecond)
	// The default first retry is uniform over one second: 100 per 100 ms.
	uniform := float64(n) * float64(100*time.Millisecond) / float64(resocket.DefaultInitialDelay)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(peak), "peak/100ms")
	b.ReportMetric(float64(peak)/uniform, "peak/uniform")
	b.ReportMetric(float64(allOpen.Milliseconds()), "all-open-ms")
	for _, c := range clients {
		c.Close()
	}
}

// attempts records the times of the connection attempts made while
// counting is on.
type attempts struct {
	counting atomic.Bool
	mu       sync.Mutex
	at       []time.Time
}

func (a *attempts) add(t time.Time) {
	if !a.counting.Load() {
		return
	}
	a.mu.Lock()
	a.at = append(a.at, t)
	a.mu.Unlock()
}

// peak returns the largest number of attempts in any window of length w.
func (a *attempts) peak(w time.Duration) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	sort.Slice(a.at, func(i, j int) bool { return a.at[i].Before(a.at[j]) })
	peak := 0
	for lo, hi := 0, 0; hi < len(a.at); hi++ {
		for a.at[hi].Sub(a.at[lo]) >= w {
			lo++
		}
		peak = max(peak, hi-lo+1)
	}
	return peak
}

// connectAll dials n clients with no heartbeat; reopened is done when each
// of them has connected again after that.
func connectAll(b *testing.B, url string, n int) (clients []*resocket.Client, reopened *sync.WaitGroup) {
	reopened = &sync.WaitGroup{}
	clients = make([]*resocket.Client, n)
	for k := range clients {
		c, err := resocket.Dial(context.Background(), url, resocket.WithHeartbeat(0, 0))
		if err != nil {
			b.Fatal(err)
		}
		clients[k] = c
		events, _ := c.Subscribe(16)
		reopened.Add(1)
		go func() {
			defer reopened.Done()
			waitFor[resocket.Connected](events)
		}()
	}
	return clients, reopened
}
