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
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

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
// other plans queued; Run installs its planner and its check of the
// replies (OnReceive), and turns the server's records off: a soak must not
// grow with its connections.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Server == nil {
		return nil, errors.New("chaos: no server")
	}
	r := &runner{cfg: cfg, url: cfg.URL, rng: rand.New(rand.NewPCG(cfg.Seed, 7)), pending: map[int][]Fault{}, active: map[int]bool{}}
	if r.url == "" {
		r.url = cfg.Server.URL
	}
	r.report.ByFault = map[string]int{}
	r.report.Actions = map[resocket.Action]int{}
	r.report.GoroutinesBefore = runtime.NumGoroutine()
	r.endHeap = make(chan struct{})
	cfg.Server.SetRecording(false)
	cfg.Server.OnReceive(countMisrouted)
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
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					fmt.Fprintf(cfg.Progress, "chaos: %d/%d faults seen\n", r.seen.Load(), cfg.Faults)
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	cfg.Server.SetPlanner(nil)
	cfg.Server.OnReceive(nil)

	rep := &r.report
	rep.Clients = int(nextID.Load())
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
	rep.RepliesMisrouted = misrouted.Load() - misroutedBefore
	rep.StaleReconnects = r.stats.stale.Load()
	rep.StaleActed = r.stats.staleActed.Load()
	rep.DoubleVerdicts = r.stats.doubleVerdicts.Load()
	rep.SlowClients = r.stats.slow.Load()
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

func (r *runner) finished() bool { return r.seen.Load()+r.abandoned.Load() >= int64(r.cfg.Faults) }

// plan is the server's planner: a fault for every connection until enough
// were injected, then healthy echo.
func (r *runner) plan(req *http.Request, index int) resockettest.Script {
	id, _ := strconv.Atoi(req.URL.Query().Get("client"))
	r.mu.Lock()
	defer r.mu.Unlock()
	if id == 0 || r.pending == nil || !r.active[id] || r.injected.Load() >= int64(r.cfg.Faults) {
		return resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Send(welcome), withAppPings(resockettest.Echo())}}
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

// client runs one client until it stops for good or the run ends.
func (r *runner) client(ctx context.Context, id int) {
	defer r.guard()
	c, err := resocket.New(fmt.Sprintf("%s?client=%d", r.url, id),
		resocket.WithHandshake(func(ctx context.Context, s *resocket.Session) error {
			if err := s.Conn.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf("hello %d %v", id, s.Mode))); err != nil {
				return err
			}
			_, b, err := s.Conn.Read(ctx) // the server's welcome: a fault can land before it
			if err == nil && string(b) != welcome {
				err = fmt.Errorf("handshake: got %.20q, want %q", b, welcome)
			}
			return err
		}),
		resocket.WithBackoff(func() backoff.BackOff {
			b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(5*time.Millisecond),
				backoff.WithMaxInterval(50*time.Millisecond), backoff.WithMaxElapsedTime(0))
			return b
		}),
		// Timeouts that a loaded machine (-race, 8 MiB writes, 100
		// clients, every package's tests at once) cannot trip: a late
		// pong or a slow upgrade on a healthy path is not a fault. The
		// faults that must trip them (silent-peer, slow-upgrade,
		// trickle-upgrade) outlast them.
		resocket.WithHeartbeat(250*time.Millisecond, heartbeatTimeout),
		resocket.WithConnectTimeout(connectTimeout),
		resocket.WithCloseTimeout(200*time.Millisecond),
		resocket.WithStableAfter(300*time.Millisecond),
		resocket.WithReadQueue(8),
		resocket.WithReadLimit(2*bigWriteSize), // a large write that lands on a healthy socket comes back
		resocket.WithEventBuffer(4),            // never read: drops are counted, never blocking
		resocket.WithLogger(slog.New(&refusals{n: &r.stats.illegal})),
	)
	if err != nil {
		r.mismatch("client %d: New: %v", id, err)
		return
	}
	r.mu.Lock()
	r.active[id] = true
	r.mu.Unlock()
	events, _ := c.Subscribe(1024)
	var wg sync.WaitGroup
	written := &writeLog{state: map[string]writeState{}}
	wg.Add(3)
	// One client in twenty closes itself at a random moment, so that faults
	// also land during Close.
	var selfClose <-chan time.Time
	if r.randIntN(20) == 0 {
		selfClose = time.After(time.Duration(r.randIntN(500)) * time.Millisecond)
	}
	d := &diag{closesItself: selfClose != nil}
	if r.randIntN(5) == 0 { // a slow consumer: the read queue fills, the pump waits
		d.slow = time.Duration(1+r.randIntN(3)) * time.Millisecond
		r.stats.slow.Add(1)
	}
	go func() { defer wg.Done(); r.watch(id, c, events, d) }()
	go func() { defer wg.Done(); r.read(c, written, &wg, d) }()
	go func() { defer wg.Done(); r.write(ctx, id, c, written, d) }()

	go c.Connect(context.Background())
	for !r.finished() && ctx.Err() == nil {
		select {
		case <-c.Done():
		case <-selfClose:
			r.stats.selfCloses.Add(1)
		case <-time.After(20 * time.Millisecond):
			continue
		}
		break
	}
	if r.finished() && c.State() != resocket.StateClosed {
		r.holdForHeap(ctx)
	}
	r.mu.Lock()
	delete(r.active, id) // a dial still in flight gets a healthy plan, not a fault nobody will report
	r.mu.Unlock()
	c.Close()
	wg.Wait()
	s := c.Stats()
	r.stats.reconnects.Add(s.Reconnects)
	r.stats.dropped.Add(s.EventsDropped)
}

// watch checks every verdict against the fault that caused it.
func (r *runner) watch(id int, c *resocket.Client, events <-chan resocket.Event, d *diag) {
	defer r.guard()
	var (
		last      Fault
		lastDrop  time.Time
		lastOpen  time.Time
		loopGuard bool
		verdicts  int // Disconnected events since the last attempt began: one per socket or attempt
	)
	for e := range events {
		switch e := e.(type) {
		case resocket.StateChanged:
			if !allowed[[2]resocket.State{e.From, e.To}] {
				r.stats.illegal.Add(1)
				r.mismatch("client %d: a move the state table does not allow: %v", id, e)
			}
		case resocket.Retrying:
			verdicts = 0
		case resocket.Disconnected:
			if verdicts++; verdicts > 1 {
				r.stats.doubleVerdicts.Add(1)
				r.mismatch("client %d: a second Disconnected for one socket: %d %v: %v", id, e.Code, e.Action, e.Err)
			}
			f, ok := r.expected(id)
			if !ok {
				r.mismatch("client %d: unplanned disconnect %d/%d %v: %v", id, e.Code, e.HTTPStatus, e.Action, e.Err)
				continue
			}
			r.seen.Add(1)
			last, lastDrop = f, time.Now()
			r.record(func(rep *Report) { rep.ByFault[f.Name]++; rep.Actions[e.Action]++ })
			codeOK := e.Code == f.Code && e.HTTPStatus == f.Status
			switch {
			case codeOK && e.Action == f.Want:
			case codeOK && f.Want == resocket.ActionReidentify && e.Action == resocket.ActionFatal:
				loopGuard = true // checked against Err below
			default:
				r.mismatch("client %d: %s: got code %d status %d %v (%v), want code %d status %d %v (open for %v; %s)",
					id, f.Name, e.Code, e.HTTPStatus, e.Action, e.Err, f.Code, f.Status, f.Want,
					time.Since(lastOpen).Round(time.Millisecond), d)
			}
		case resocket.Connected:
			lastOpen = time.Now()
			if !lastDrop.IsZero() {
				d := time.Since(lastDrop)
				r.record(func(rep *Report) { rep.Recovery = append(rep.Recovery, d) })
				lastDrop = time.Time{}
			}
		}
	}
	r.mu.Lock()
	if left := len(r.pending[id]); left > 0 { // the client closed itself before they landed
		r.abandoned.Add(int64(left))
	}
	delete(r.pending, id)
	r.mu.Unlock()
	err := c.Err()
	if err == resocket.ErrClosed || err == nil {
		return
	}
	var ue *resocket.UpgradeError
	switch {
	case loopGuard:
		if !errors.Is(err, resocket.ErrReidentifyLoop) {
			r.mismatch("client %d: re-identify became fatal without the loop guard: %v", id, err)
		}
		r.record(func(rep *Report) { rep.LoopGuardStops++ })
	case last.Want != resocket.ActionFatal:
		r.mismatch("client %d: stopped after %s, which is not fatal: %v", id, last.Name, err)
	case last.Code != 0 && websocket.CloseStatus(err) != last.Code:
		r.mismatch("client %d: stopped by %s but Err has code %d: %v", id, last.Name, websocket.CloseStatus(err), err)
	case last.Status != 0 && (!errors.As(err, &ue) || ue.Status != last.Status):
		r.mismatch("client %d: stopped by %s but Err has no UpgradeError with that status: %v", id, last.Name, err)
	default:
		r.record(func(rep *Report) { rep.FatalStops++ })
	}
}

// read checks that messages come in order, each once, and that every echo
// is of a write that returned nil.
func (r *runner) read(c *resocket.Client, written *writeLog, wg *sync.WaitGroup, d *diag) {
	defer r.guard()
	lastConn, lastSeq := 0, 0
	for {
		msg, err := c.ReadMessage(context.Background())
		if err != nil {
			return
		}
		r.stats.read.Add(1)
		m := string(msg.Data[:min(len(msg.Data), 256)]) // a large one's number is in its first bytes
		if d.slow > 0 {
			time.Sleep(d.slow)
		}
		switch {
		case strings.HasPrefix(m, "p"): // a server ping: answered on its own socket, whenever that is
			wg.Add(1)
			go func() { defer wg.Done(); r.answer(msg.Session, "r"+m[1:]) }()
			r.staleReconnect(msg.Session)
		case m == bigWrite: // on its own goroutine, so that reading goes on
			wg.Add(1)
			d.bigInFlight.Add(1)
			go func() { defer wg.Done(); defer d.bigInFlight.Add(-1); r.writeBig(c, msg.Attempt) }()
		case strings.HasPrefix(m, "c"):
			connStr, seqStr, _ := strings.Cut(m[1:], ":")
			seqStr, _, _ = strings.Cut(seqStr, "|") // a large one carries padding
			conn, _ := strconv.Atoi(connStr)
			seq, _ := strconv.Atoi(seqStr)
			if conn < lastConn || (conn == lastConn && seq <= lastSeq) {
				r.stats.order.Add(1)
			}
			lastConn, lastSeq = conn, seq
		case strings.HasPrefix(m, "w"):
			switch written.echoed(m) {
			case writeUnknown, writeFailed:
				r.stats.phantom.Add(1)
			case writeEchoed:
				r.stats.order.Add(1) // an echo twice
			}
		}
	}
}

// answer replies to a server ping through the Session it came on. Once
// that socket ended the reply fails (ErrSocketEnded) and goes nowhere; the
// server counts any reply that reaches another socket.
func (r *runner) answer(s *resocket.Session, reply string) {
	defer r.guard()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // a ctx that ends mid-frame cuts the socket
	defer cancel()
	if err := s.Write(ctx, websocket.MessageText, []byte(reply)); err == nil {
		r.stats.pings.Add(1)
	} else if strings.TrimSpace(err.Error()) == "" {
		r.stats.unnamed.Add(1)
	}
}

// staleReconnect acts on a message whose socket has already ended, as a
// consumer that handles a "reconnect" signal late would: the Reconnect
// must do nothing (an unplanned disconnect would show in watch).
func (r *runner) staleReconnect(s *resocket.Session) {
	select {
	case <-s.Done():
	default:
		return
	}
	r.stats.stale.Add(1)
	if s.Reconnect(4000, "stale signal", resocket.ActionRetry) {
		r.stats.staleActed.Add(1)
		r.mismatch("Session.Reconnect on an ended socket (attempt %d) returned true", s.Attempt)
	}
}

// write sends numbered messages; the echo server sends them back.
func (r *runner) write(ctx context.Context, id int, c *resocket.Client, written *writeLog, d *diag) {
	defer r.guard()
	for n := 1; ; n++ {
		select {
		case <-c.Done():
			return
		case <-time.After(time.Duration(5+n%15) * time.Millisecond):
		}
		m := fmt.Sprintf("w%d:%d", id, n)
		written.set(m, writePending) // before the write: the echo can beat Write's return
		// Longer than any wait for the next socket (a 1013's 5 s floor, a
		// slow upgrade): a write whose ctx ends mid-frame cuts its socket,
		// which would be this client's doing, not the fault's.
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.Write(wctx, websocket.MessageText, []byte(m))
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			d.writeTimedOut.Store(time.Now().UnixNano())
		}
		if written.done(m, err == nil) {
			r.stats.phantom.Add(1) // echoed, yet Write said it was not written
		}
		if err == nil {
			r.stats.writesOK.Add(1)
			continue
		}
		r.stats.writesFailed.Add(1)
		if strings.TrimSpace(err.Error()) == "" {
			r.stats.unnamed.Add(1)
		}
	}
}

// writeBig writes a message too large for the TCP buffers of a server
// that stopped reading.
func (r *runner) writeBig(c *resocket.Client, attempt int) {
	defer r.guard()
	if c.Stats().Attempts != int64(attempt) {
		return // the socket that asked is gone already
	}
	r.stats.bigWrites.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // past any fault: a write ctx that ends cuts the socket
	defer cancel()
	if err := c.Write(ctx, websocket.MessageBinary, bigPayload); err != nil && strings.TrimSpace(err.Error()) == "" {
		r.stats.unnamed.Add(1)
	}
}

func (r *runner) randIntN(n int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rng.IntN(n)
}

// withAppPings runs step while pinging the client the way an application
// protocol does ("p<conn>:<n>", every pingEvery). The client answers each
// through the Session its ping came on ("r<conn>:<n>"); countMisrouted
// counts a reply that reached another socket.
func withAppPings(step resockettest.Step) resockettest.Step {
	return func(ctx context.Context, p *resockettest.Peer) error {
		ctx, cancel := context.WithCancel(ctx)
		pinger := make(chan struct{})
		go func() { defer close(pinger); ping(ctx, p) }()
		defer func() { cancel(); <-pinger }()
		return step(ctx, p)
	}
}

// countMisrouted sees every message the server reads (Server.OnReceive):
// a reply to a ping must arrive on the socket the ping came from.
func countMisrouted(c *resockettest.ConnInfo, m []byte) {
	if len(m) == 0 || m[0] != 'r' {
		return
	}
	conn, _, _ := strings.Cut(string(m[1:]), ":")
	if n, err := strconv.Atoi(conn); err != nil || n != c.Index {
		misrouted.Add(1)
	}
}

// pingEvery is how often withAppPings pings the client.
const pingEvery = 25 * time.Millisecond

// misrouted counts replies that reached a socket other than their ping's.
var misrouted atomic.Int64

func ping(ctx context.Context, p *resockettest.Peer) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.Send(ctx, fmt.Sprintf("p%d:%d", p.Info.Index, n)) != nil {
			return
		}
	}
}

// diag is what a mismatch line tells about its client besides the verdict.
type diag struct {
	closesItself  bool
	slow          time.Duration // how long the consumer takes per message
	bigInFlight   atomic.Int32  // large writes not returned yet
	writeTimedOut atomic.Int64  // when a write last ended by its ctx's deadline (unix ns), or 0
}

func (d *diag) String() string {
	s := fmt.Sprintf("large writes in flight %d, closes itself %v, slow %v", d.bigInFlight.Load(), d.closesItself, d.slow)
	if t := d.writeTimedOut.Load(); t != 0 {
		s += fmt.Sprintf(", a write timed out %v ago", time.Since(time.Unix(0, t)).Round(time.Millisecond))
	}
	return s
}

// allFaults is every fault a run draws from: the table's rows and the
// phases.
var allFaults = append(append([]Fault(nil), Faults...), PhaseFaults...)

type writeState int

const (
	writeUnknown writeState = iota
	writePending
	writeOK
	writeFailed
	writeEchoed
)

// writeLog tracks each numbered write: pending, returned nil, failed, or
// echoed back.
type writeLog struct {
	mu    sync.Mutex
	state map[string]writeState
}

func (w *writeLog) set(m string, s writeState) {
	w.mu.Lock()
	w.state[m] = s
	w.mu.Unlock()
}

// echoed marks m echoed and returns its state before.
func (w *writeLog) echoed(m string) writeState {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state[m]
	if s == writePending || s == writeOK {
		w.state[m] = writeEchoed
	}
	return s
}

// done records Write's result for m; it reports a failed write whose echo
// already came back.
func (w *writeLog) done(m string, ok bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.state[m]
	if s == writeEchoed {
		return !ok
	}
	if ok {
		w.state[m] = writeOK
	} else {
		w.state[m] = writeFailed
	}
	return false
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

// allowed is DESIGN's state table: the moves a StateChanged may report.
var allowed = map[[2]resocket.State]bool{
	{resocket.StateConnecting, resocket.StateOpen}:    true,
	{resocket.StateOpen, resocket.StateConnecting}:    true,
	{resocket.StateConnecting, resocket.StateClosing}: true,
	{resocket.StateOpen, resocket.StateClosing}:       true,
	{resocket.StateConnecting, resocket.StateClosed}:  true,
	{resocket.StateClosing, resocket.StateClosed}:     true,
}

// refusals counts the client's refused state transitions, which it logs
// at Error: one is a bug.
type refusals struct{ n *atomic.Int64 }

func (h *refusals) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *refusals) Handle(_ context.Context, rec slog.Record) error {
	if strings.Contains(rec.Message, "refused state transition") {
		h.n.Add(1)
	}
	return nil
}
func (h *refusals) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *refusals) WithGroup(string) slog.Handler      { return h }
