package chaos

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/resocket/resocket"
)

// Report is what a run saw.
type Report struct {
	Clients            int // clients created (a fatal stop is replaced by a new client)
	FaultsInjected     int // connections given a fault
	FaultsSeen         int // faults whose disconnect the client reported
	FaultsAbandoned    int // planned for a client that closed itself before they landed
	ByFault            map[string]int
	Actions            map[resocket.Action]int
	Mismatches         []string // a verdict that did not match the table
	Reconnects         int64
	FatalStops         int // clients stopped by a fatal fault
	LoopGuardStops     int // clients stopped by the re-identify loop guard
	IllegalTransitions int64
	Panics             int64
	EventsDropped      uint64
	MessagesRead       int64
	OrderViolations    int64 // a message out of order or twice
	PhantomEchoes      int64 // an echo of a write that had not returned nil
	WritesOK           int64
	WritesFailed       int64
	WriteErrorsUnnamed int64 // a failed write whose error says nothing
	PingsAnswered      int64 // server pings answered through Message.Session
	RepliesMisrouted   int64 // a reply that reached a socket other than its ping's
	StaleReconnects    int64 // Session.Reconnect made on a message whose socket had ended
	StaleActed         int64 // ... and that returned true, or ended a socket
	DoubleVerdicts     int64 // a socket or attempt with two Disconnected events
	SlowClients        int64 // clients whose consumer sleeps on every message
	BigWrites          int64 // large writes the server asked for (mid-write, mid-pong)
	SelfCloses         int64 // clients that closed themselves while faults landed
	Recovery           []time.Duration
	HeapBefore         uint64
	HeapAfter          uint64
	GoroutinesBefore   int
	GoroutinesAfter    int
	Elapsed            time.Duration
}

// HeapGrowth is the relative heap growth between the start and the end.
func (r *Report) HeapGrowth() float64 {
	return (float64(r.HeapAfter) - float64(r.HeapBefore)) / float64(r.HeapBefore)
}

// Percentile returns the p-th percentile (0–100) of the recovery times.
func (r *Report) Percentile(p float64) time.Duration {
	if len(r.Recovery) == 0 {
		return 0
	}
	s := slices.Clone(r.Recovery)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// String is the summary table.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos: %d clients, %d faults injected, %d seen, in %v\n", r.Clients, r.FaultsInjected, r.FaultsSeen, r.Elapsed.Round(time.Millisecond))
	names := make([]string, 0, len(r.ByFault))
	for n := range r.ByFault {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "%-28s %s\n", "fault", "count")
	for _, n := range names {
		fmt.Fprintf(&b, "%-28s %d\n", n, r.ByFault[n])
	}
	fmt.Fprintf(&b, "actions: retry %d, reidentify %d, fatal %d\n", r.Actions[resocket.ActionRetry], r.Actions[resocket.ActionReidentify], r.Actions[resocket.ActionFatal])
	fmt.Fprintf(&b, "reconnects %d; fatal stops %d (each matching its cause), loop-guard stops %d\n", r.Reconnects, r.FatalStops, r.LoopGuardStops)
	fmt.Fprintf(&b, "time to recover: median %v, p99 %v, max %v (%d samples)\n",
		r.Percentile(50).Round(time.Microsecond), r.Percentile(99).Round(time.Microsecond), r.Percentile(100).Round(time.Microsecond), len(r.Recovery))
	fmt.Fprintf(&b, "messages read %d, order violations %d; writes ok %d, failed %d (unnamed %d), phantom echoes %d\n",
		r.MessagesRead, r.OrderViolations, r.WritesOK, r.WritesFailed, r.WriteErrorsUnnamed, r.PhantomEchoes)
	fmt.Fprintf(&b, "server pings answered through their Session %d, replies on another socket %d; Reconnects on ended sockets %d, acted %d; sockets judged twice %d; slow clients %d\n",
		r.PingsAnswered, r.RepliesMisrouted, r.StaleReconnects, r.StaleActed, r.DoubleVerdicts, r.SlowClients)
	fmt.Fprintf(&b, "large writes during faults %d, clients closed while faults landed %d (faults left unreported by them %d)\n",
		r.BigWrites, r.SelfCloses, r.FaultsAbandoned)
	fmt.Fprintf(&b, "verdict mismatches %d, illegal transitions %d, panics %d, events dropped %d (counted, never blocking)\n",
		len(r.Mismatches), r.IllegalTransitions, r.Panics, r.EventsDropped)
	fmt.Fprintf(&b, "heap %d -> %d bytes (%+.1f%%), goroutines %d -> %d\n",
		r.HeapBefore, r.HeapAfter, 100*r.HeapGrowth(), r.GoroutinesBefore, r.GoroutinesAfter)
	for i, m := range r.Mismatches {
		if i == 10 {
			fmt.Fprintf(&b, "... and %d more mismatches\n", len(r.Mismatches)-10)
			break
		}
		fmt.Fprintln(&b, "mismatch:", m)
	}
	return b.String()
}

// HeapNow returns the live heap after two collections (the second empties
// the sync.Pools).
func HeapNow() uint64 { return heapNow() }

func heapNow() uint64 {
	runtime.GC()
	runtime.GC() // a second cycle empties the sync.Pools
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// heapAtStart takes the first heap reading after the warm-up.
func (r *runner) heapAtStart(ctx context.Context) {
	for ctx.Err() == nil {
		if r.seen.Load() >= int64(r.cfg.Faults/10) {
			h := heapNow()
			r.record(func(rep *Report) { rep.HeapBefore = h })
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdForHeap keeps a client connected until every client finished, so
// that the second heap reading sees the same load as the first; the last
// client to arrive takes it.
func (r *runner) holdForHeap(ctx context.Context) {
	if r.holding.Add(1) == int64(r.cfg.Clients) {
		h := heapNow()
		r.record(func(rep *Report) { rep.HeapAfter = h })
		close(r.endHeap)
	}
	select {
	case <-r.endHeap:
	case <-ctx.Done():
	case <-time.After(2 * time.Second): // a client that stopped meanwhile never arrives
	}
}
