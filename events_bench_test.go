package resocket

import (
	"fmt"
	"testing"
)

// BenchmarkPublish publishes a state change with 0, 1 and 8 subscribers,
// one of which never reads (its buffer stays full: every publish drops its
// oldest event).
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{0, 1, 8} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			var h hub
			stop := make(chan struct{})
			defer close(stop)
			for i := 0; i < n; i++ {
				ch, _ := h.subscribe(64)
				if i == 0 {
					continue // never reads
				}
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
				publish(&h, stateChanged(StateOpen, StateConnecting))
			}
		})
	}
}
