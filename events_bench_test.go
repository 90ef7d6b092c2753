package resocket

import (
	"fmt"
	"testing"
)

// BenchmarkPublish publishes a state change the way a real client does:
// every client holds the subscription Events returns, from New on, so
// there is always at least one subscriber. With 1, that subscription is
// never read (its buffer stays full: every publish drops its oldest
// event), which is what a client costs whose events nobody reads; with 8,
// one never reads and seven do.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			c, err := New("ws://127.0.0.1:9/")
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			h := &c.events
			stop := make(chan struct{})
			defer close(stop)
			for i := 1; i < n; i++ { // the client's own subscription is the one that never reads
				ch, _ := h.subscribe(64)
				go func() {
					for {
						select {
						case <-ch:
						case <-stop:
							return
						}
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				publish(h, stateChanged(StateOpen, StateConnecting))
			}
		})
	}
}
