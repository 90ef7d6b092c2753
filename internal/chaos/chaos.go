// Package chaos runs many resocket clients against a fault server that
// injects a random fault from the classification table on every
// connection, and reports what happened: faults, verdicts, reconnects,
// recovery times, message order, illegal transitions, heap growth.
//
// It is shared by the soak tests and examples/chaos.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// Config sets the size of a run.
type Config struct {
	Clients  int           // clients connected at once
	Faults   int           // faults to inject; the run ends when all were seen
	Timeout  time.Duration // the run ends after this long in any case
	Seed     uint64        // the random faults; the same seed draws the same sequence
	URL      string        // dial this instead of the server (a proxy in front of it); "" for the server itself
	Server   *resockettest.Server
	Progress io.Writer // a line per second, or nil
}

type runner struct {
	cfg Config
	url string

	mu        sync.Mutex
	rng       *rand.Rand
	pending   map[int][]Fault // per client, the faults planned on its connections, in order
	active    map[int]bool    // clients not yet closing: only they are given faults
	report    Report
	injected  atomic.Int64
	seen      atomic.Int64
	abandoned atomic.Int64 // planned for a client that closed itself first

	// Heap is compared in the steady state: once a tenth of the faults were
	// seen, and again when all were, with every client still connected.
	endHeap chan struct{}
	holding atomic.Int64

	stats struct {
		reconnects, illegal, panics, read, order, phantom, writesOK, writesFailed, unnamed, bigWrites, selfCloses atomic.Int64
		pings, stale, staleActed, doubleVerdicts, slow                                                            atomic.Int64
		dropped                                                                                                   atomic.Uint64
	}
}

// Run runs the chaos and returns its report. The server must have no
// other plans queued; Run installs its planner and turns the server's
// records off: a soak must not grow with its connections.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Server == nil {
		return nil, errors.New("chaos: no server")
	}
	r := newRunner(cfg)
	cfg.Server.SetRecording(false)
	cfg.Server.SetPlanner(r.plan)
	misroutedBefore := misrouted.Load()

	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var wg sync.WaitGroup
	var nextID atomic.Int64
	for i := 0; i < cfg.Clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && !r.finished() {
				r.client(ctx, int(nextID.Add(1)))
			}
		}()
	}
	go r.heapAtStart(ctx)
	if cfg.Progress != nil {
		go r.progress(ctx)
	}
	wg.Wait()
	cancel()
	cfg.Server.SetPlanner(nil)

	rep := r.fill(int(nextID.Load()))
	rep.RepliesMisrouted = misrouted.Load() - misroutedBefore
	rep.Elapsed = time.Since(start)
	r.mu.Lock()
	r.pending = nil
	r.mu.Unlock()
	rep.GoroutinesAfter = runtime.NumGoroutine()
	rep.FaultsAbandoned = int(r.abandoned.Load())
	if ctx.Err() != nil && !r.finished() {
		return rep, fmt.Errorf("chaos: timed out after %v with %d of %d faults seen", cfg.Timeout, rep.FaultsSeen, cfg.Faults)
	}
	return rep, nil
}

func newRunner(cfg Config) *runner {
	r := &runner{cfg: cfg, url: cfg.URL, rng: rand.New(rand.NewPCG(cfg.Seed, 7)), pending: map[int][]Fault{}, active: map[int]bool{}}
	if r.url == "" {
		r.url = cfg.Server.URL
	}
	r.report.ByFault = map[string]int{}
	r.report.Actions = map[resocket.Action]int{}
	r.report.GoroutinesBefore = runtime.NumGoroutine()
	r.endHeap = make(chan struct{})
	return r
}

// progress prints how far the run got, every second.
func (r *runner) progress(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fmt.Fprintf(r.cfg.Progress, "chaos: %d/%d faults seen\n", r.seen.Load(), r.cfg.Faults)
		}
	}
}

// fill copies the run's counters into its report.
func (r *runner) fill(clients int) *Report {
	rep := &r.report
	rep.Clients = clients
	rep.FaultsInjected = int(r.injected.Load())
	rep.FaultsSeen = int(r.seen.Load())
	rep.Reconnects = r.stats.reconnects.Load()
	rep.IllegalTransitions = r.stats.illegal.Load()
	rep.Panics = r.stats.panics.Load()
	rep.EventsDropped = r.stats.dropped.Load()
	rep.MessagesRead = r.stats.read.Load()
	rep.OrderViolations = r.stats.order.Load()
	rep.PhantomEchoes = r.stats.phantom.Load()
	rep.WritesOK = r.stats.writesOK.Load()
	rep.WritesFailed = r.stats.writesFailed.Load()
	rep.WriteErrorsUnnamed = r.stats.unnamed.Load()
	rep.BigWrites = r.stats.bigWrites.Load()
	rep.SelfCloses = r.stats.selfCloses.Load()
	rep.PingsAnswered = r.stats.pings.Load()
	rep.StaleReconnects = r.stats.stale.Load()
	rep.StaleActed = r.stats.staleActed.Load()
	rep.DoubleVerdicts = r.stats.doubleVerdicts.Load()
	rep.SlowClients = r.stats.slow.Load()
	return rep
}

func (r *runner) finished() bool { return r.seen.Load()+r.abandoned.Load() >= int64(r.cfg.Faults) }

// plan is the server's planner: a fault for every connection until enough
// were injected, then healthy echo.
func (r *runner) plan(req *http.Request, index int) resockettest.Script {
	id, _ := strconv.Atoi(req.URL.Query().Get("client"))
	r.mu.Lock()
	defer r.mu.Unlock()
	if id == 0 || r.pending == nil || !r.active[id] || r.injected.Load() >= int64(r.cfg.Faults) {
		return resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Send(welcome), withAppPings(echoText)}}
	}
	f := draw(r.rng, allFaults)
	r.injected.Add(1)
	r.pending[id] = append(r.pending[id], f)
	return f.plan(r.rng, index)
}

// expected takes the fault planned for the client's oldest unreported
// connection.
func (r *runner) expected(id int) (Fault, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.pending[id]
	if len(q) == 0 {
		return Fault{}, false
	}
	r.pending[id] = q[1:]
	return q[0], true
}

func (r *runner) record(f func(*Report)) {
	r.mu.Lock()
	f(&r.report)
	r.mu.Unlock()
}

func (r *runner) mismatch(format string, args ...any) {
	r.record(func(rep *Report) { rep.Mismatches = append(rep.Mismatches, fmt.Sprintf(format, args...)) })
}

func (r *runner) guard() {
	if p := recover(); p != nil {
		r.stats.panics.Add(1)
		r.mismatch("panic: %v", p)
	}
}

func (r *runner) randIntN(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rng.IntN(n)
}

// allFaults is every fault a run draws from: the table's rows and the
// phases.
var allFaults = append(append([]Fault(nil), Faults...), PhaseFaults...)

const (
	writeUnknown writeState = iota
	writePending
	writeOK
	writeFailed
	writeEchoed
)
