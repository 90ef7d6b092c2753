package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"
	"github.com/resocket/resocket"
)

// client runs one client until it stops for good or the run ends.
func (r *runner) client(ctx context.Context, id int) {
	defer r.guard()
	c, err := r.newClient(id)
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
	r.live(ctx, c, selfClose)
	r.mu.Lock()
	delete(r.active, id) // a dial still in flight gets a healthy plan, not a fault nobody will report
	r.mu.Unlock()
	c.Close()
	wg.Wait()
	s := c.Stats()
	r.stats.reconnects.Add(s.Reconnects)
	r.stats.dropped.Add(s.EventsDropped)
}

// live lets c run until the run is over, it ends by itself, or its time
// to close itself comes.
func (r *runner) live(ctx context.Context, c *resocket.Client, selfClose <-chan time.Time) {
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
}

// newClient makes client id, with a handshake the server checks.
func (r *runner) newClient(id int) (*resocket.Client, error) {
	return resocket.New(fmt.Sprintf("%s?client=%d", r.url, id),
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
		resocket.WithReadLimit(2*bigWriteSize), // room for the largest message
		resocket.WithEventBuffer(4),            // never read: drops are counted, never blocking
		resocket.WithLogger(slog.New(&refusals{n: &r.stats.illegal})),
	)
}

// watch checks every verdict against the fault that caused it.
func (r *runner) watch(id int, c *resocket.Client, events <-chan resocket.Event, d *diag) {
	defer r.guard()
	w := &watcher{r: r, id: id, d: d}
	for e := range events {
		switch e := e.(type) {
		case resocket.StateChanged:
			if !allowed[[2]resocket.State{e.From, e.To}] {
				r.stats.illegal.Add(1)
				r.mismatch("client %d: a move the state table does not allow: %v", id, e)
			}
		case resocket.Retrying:
			w.verdicts = 0
		case resocket.Disconnected:
			w.disconnected(e)
		case resocket.Connected:
			w.connected()
		}
	}
	r.mu.Lock()
	if left := len(r.pending[id]); left > 0 { // the client closed itself before they landed
		r.abandoned.Add(int64(left))
	}
	delete(r.pending, id)
	r.mu.Unlock()
	w.ended(c.Err())
}

// watcher is what watch knows of one client's verdicts so far.
type watcher struct {
	r                  *runner
	id                 int
	d                  *diag
	last               Fault
	lastDrop, lastOpen time.Time
	loopGuard          bool
	verdicts           int // Disconnected events since the last attempt began: one per socket or attempt
}

// disconnected checks a verdict against the fault planned for it.
func (w *watcher) disconnected(e resocket.Disconnected) {
	r, id := w.r, w.id
	if w.verdicts++; w.verdicts > 1 {
		r.stats.doubleVerdicts.Add(1)
		r.mismatch("client %d: a second Disconnected for one socket: %d %v: %v", id, e.Code, e.Action, e.Err)
	}
	f, ok := r.expected(id)
	if !ok {
		r.mismatch("client %d: unplanned disconnect %d/%d %v: %v", id, e.Code, e.HTTPStatus, e.Action, e.Err)
		return
	}
	r.seen.Add(1)
	w.last, w.lastDrop = f, time.Now()
	r.record(func(rep *Report) { rep.ByFault[f.Name]++; rep.Actions[e.Action]++ })
	codeOK := e.Code == f.Code && e.HTTPStatus == f.Status
	switch {
	case codeOK && e.Action == f.Want:
	case codeOK && f.Want == resocket.ActionReidentify && e.Action == resocket.ActionFatal:
		w.loopGuard = true // checked against Err when the client ends
	default:
		r.mismatch("client %d: %s: got code %d status %d %v (%v), want code %d status %d %v (open for %v; %s)",
			id, f.Name, e.Code, e.HTTPStatus, e.Action, e.Err, f.Code, f.Status, f.Want,
			time.Since(w.lastOpen).Round(time.Millisecond), w.d)
	}
}

// connected records how long the client took to recover.
func (w *watcher) connected() {
	w.lastOpen = time.Now()
	if !w.lastDrop.IsZero() {
		d := time.Since(w.lastDrop)
		w.r.record(func(rep *Report) { rep.Recovery = append(rep.Recovery, d) })
		w.lastDrop = time.Time{}
	}
}

// ended checks the client's Err against the last fault it saw.
func (w *watcher) ended(err error) {
	r, id, last := w.r, w.id, w.last
	if err == resocket.ErrClosed || err == nil {
		return
	}
	var ue *resocket.UpgradeError
	switch {
	case w.loopGuard:
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

func (h *refusals) WithGroup(string) slog.Handler { return h }
