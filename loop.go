package resocket

import (
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// The connection loop owns the lifecycle. Close, the Connect ctx, a fatal
// verdict and Reconnect are requests to it; it alone calls transition
// (Close before Connect, when there is no loop, is the one exception).
//
// Every way a socket or an attempt ends becomes one outcome, and every
// outcome goes through judge: classify, loop guard, schedule, log, publish.
//
// One reconnect cycle reads in two files: run and try (here), then
// connect, dial and the handshake (attempt.go), open (here), serve and
// readFailed (attempt.go), then judge and wait (here) before the next try.
// How a socket ends is decided in ending.go; closing it is close.go's.

// outcome is how a socket, an attempt at one, or a wait ended.
type outcome struct {
	d      Disconnect
	forced *Action // chosen by the handshake (Fatal, Reidentify) or by Reconnect
	stable bool    // the socket stayed OPEN for the stable period
	opened bool    // the socket had reached OPEN
	// byRequest marks a Reconnect's outcome: on a socket, its close frame
	// is d.Code and d.Reason. delay, when set, replaces the schedule: a
	// Reconnect during the wait, which ends no socket or attempt.
	byRequest bool
	delay     *time.Duration
}

// loop is the connection loop's own state; only its goroutine touches it.
type loop struct {
	c            *Client
	sched        *schedule
	attempt      int
	mode         Mode
	hasSession   bool
	reidentifies int
	repeats      int     // disconnects in a row with the same code and status, no stable socket between
	lastCode     [2]int  // the code and status of the last disconnect
	lastErr      error   // the last outcome's cause, for Connect's error
	fatal        error   // set when a verdict was fatal
	sock         *socket // a socket still to close when the loop ends

	delay      time.Duration // the wait before the next attempt
	waitAction Action        // the verdict that wait carries out
	waitByReq  bool          // that verdict came from a Reconnect
}

// run is the connection loop: one goroutine per client, the only user of
// the schedule.
func (c *Client) run() {
	l := &loop{c: c, sched: newSchedule(c.backoff, c.cfg.clock.Now), mode: ModeIdentify}
	if c.cfg.resume { // a session kept by an earlier process
		l.mode, l.hasSession = ModeResume, true
	}
	defer l.finish()
	for {
		o, ok := l.try()
		for ok && o != nil {
			if !l.judge(*o) {
				return
			}
			o, ok = l.wait()
		}
		if !ok {
			return
		}
	}
}

// try makes one attempt and, when it opens, serves the socket until it
// ends. It returns false when the client is stopping.
func (l *loop) try() (*outcome, bool) {
	c := l.c
	l.attempt++
	c.stats.attempts.Add(1)
	publish(&c.events, Dialing{Attempt: l.attempt, Mode: l.mode})
	s, o := l.connect()
	if c.life.Err() != nil {
		l.sock = s
		return nil, false
	}
	if o != nil {
		return o, true
	}
	if !l.open(s) {
		l.sock = s
		return nil, false
	}
	l.hasSession = true
	return l.serve(s)
}

// open moves the client to OPEN with s, unless a stop request got there
// first, and publishes Connected; the first one releases Connect.
func (l *loop) open(s *socket) bool {
	c := l.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.life.Err() != nil {
		return false
	}
	// Before the transition publishes: whoever sees OPEN may move the clock.
	s.openedAt = c.cfg.clock.Now()
	if !c.transition(StateOpen, s, nil) {
		return false
	}
	c.stats.opens.Add(1)
	c.log.Debug("resocket: open", "attempt", l.attempt, "mode", l.mode)
	publish(&c.events, Connected{Attempt: l.attempt, Mode: l.mode})
	if !c.opened { // after the events, so that Connect returns with them published
		c.opened = true
		close(c.firstOpen)
	}
	return true
}

// judge is the one verdict step. It returns false when the verdict ended
// the client.
func (l *loop) judge(o outcome) bool {
	c := l.c
	if c.life.Err() != nil {
		return false // Close or an ended Connect ctx: no verdict to report
	}
	o.d.Repeats = l.count(o)
	action, cause := l.classify(o)
	action, cause = l.guard(action, cause, o.d.Err)
	var delay time.Duration
	if action != ActionFatal {
		if delay = l.next(o); delay == backoff.Stop {
			action, delay = ActionFatal, 0
			cause = fmt.Errorf("%w after %d attempts; last cause: %w", ErrRetriesExhausted, l.attempt, o.d.Err)
		}
	}
	c.log.Debug("resocket: disconnected", "code", int(o.d.Code), "reason", o.d.Reason,
		"status", o.d.HTTPStatus, "err", o.d.Err, "action", action, "next", delay)
	attempt := l.attempt
	if o.delay != nil { // a Reconnect during the wait: its Disconnected names no attempt
		attempt = 0
	}
	publish(&c.events, Disconnected{Disconnect: o.d, Action: action, Next: delay, Attempt: attempt, Opened: o.opened})
	if action != ActionRetry { // the session is over: so is its resume URL
		l.hasSession = false
		c.mu.Lock()
		c.resumeURL = ""
		c.mu.Unlock()
	}
	if action == ActionFatal {
		l.fatal = cause
		return false
	}
	l.mode = ModeIdentify
	if l.hasSession {
		l.mode = ModeResume
	}
	l.delay, l.waitAction, l.waitByReq = delay, action, o.byRequest
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.State() == StateOpen {
		c.transition(StateConnecting, nil, nil)
	}
	return true
}

// count records a disconnect: a stable socket before it resets the
// schedule and the loop guard. It returns how many disconnects in a row
// had o's code and status.
func (l *loop) count(o outcome) int {
	l.c.stats.disconnects.Add(1)
	l.lastErr = o.d.Err
	if o.stable {
		l.sched.reset()
		l.reidentifies = 0
		l.repeats = 0
	}
	if code := [2]int{int(o.d.Code), o.d.HTTPStatus}; code == l.lastCode && l.repeats > 0 {
		l.repeats++
	} else {
		l.lastCode, l.repeats = code, 1
	}
	return l.repeats
}

// classify asks the policy, unless the outcome's action was forced. It
// returns the action and, for a fatal one, the cause.
func (l *loop) classify(o outcome) (a Action, cause error) {
	if o.forced != nil {
		return *o.forced, o.d.Err
	}
	defer func() {
		if p := recover(); p != nil {
			a, cause = ActionFatal, fmt.Errorf("policy panicked: %v (classifying: %w)", p, o.d.Err)
		}
	}()
	a = l.c.cfg.policy.Classify(o.d)
	if !a.valid() {
		return ActionFatal, fmt.Errorf("policy returned invalid %v (classifying: %w)", a, o.d.Err)
	}
	return a, o.d.Err
}

// guard applies the loop guard: re-identifies in a row, with no stable
// socket between them, turn fatal at WithMaxReidentify.
func (l *loop) guard(a Action, cause, last error) (Action, error) {
	if a != ActionReidentify {
		return a, cause
	}
	if l.reidentifies++; l.reidentifies >= l.c.cfg.maxReidentify {
		return ActionFatal, fmt.Errorf("%w: %d re-identifies in a row with no socket stable for %v; last cause: %w",
			ErrReidentifyLoop, l.reidentifies, l.c.cfg.stableAfter, last)
	}
	l.c.stats.reidentifies.Add(1)
	return a, cause
}

// next is the delay before the next attempt: the outcome's own, or the
// schedule's.
func (l *loop) next(o outcome) time.Duration {
	if o.delay != nil {
		return *o.delay
	}
	return l.sched.next(o.d)
}

// wait publishes Retrying and sleeps before the next attempt. A Reconnect
// made meanwhile is returned as an outcome: it cuts a wait that followed a
// disconnect, and it joins a wait that followed another Reconnect (its
// delay is kept, so racing Reconnects never skip the backoff; one that
// asks for nothing stronger is satisfied by the pending attempt). It
// returns false when the client is stopping.
func (l *loop) wait() (*outcome, bool) {
	c := l.c
	clk := c.cfg.clock
	deadline := clk.Now().Add(l.delay)
	t := clk.NewTimer(l.delay)
	defer t.Stop()
	// After the timer is armed: whoever sees Retrying may move the clock.
	publish(&c.events, Retrying{Attempt: l.attempt + 1, Delay: l.delay, Mode: l.mode})
	for {
		select {
		case <-t.C():
			return nil, true
		case r := <-c.reconnects:
			if l.waitByReq && r.action <= l.waitAction {
				c.log.Debug("resocket: reconnect already pending", "action", r.action)
				continue
			}
			o := r.outcome()
			var delay time.Duration // cut the wait
			if l.waitByReq {
				delay = max(deadline.Sub(clk.Now()), 0)
			}
			o.delay = &delay
			return &o, true
		case <-c.life.Done():
			return nil, false
		}
	}
}

// finish runs when the loop ends: it winds down what is left and moves
// the client to CLOSED. A Close passes through CLOSING from any state; a
// client that ends by itself (a fatal verdict, Connect's ctx) passes
// through CLOSING only from OPEN, since OPEN→CLOSED is not a transition.
func (l *loop) finish() {
	c := l.c
	c.mu.Lock()
	req, cause := l.endCause()
	if st := c.State(); st == StateOpen || (st == StateConnecting && req != nil && req.byClose) {
		c.transition(StateClosing, nil, cause)
	}
	c.mu.Unlock()
	c.stop()
	if s := l.sock; s != nil {
		code, reason := closeCode(req)
		s.close(code, reason)
		if s.pumpDone != nil {
			select {
			case <-s.pumpDone: // with WithOnMessage: the handler's last call returned
			case <-c.handlerClosed: // unless the handler is what is closing the client
			}
		}
	}
	if c.transport != nil {
		c.transport.CloseIdleConnections()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cause == ErrClosed { // the caller asked: unread messages go with the client
		for len(c.queue) > 0 {
			<-c.queue
		}
	}
	c.log.Debug("resocket: closed", "err", cause)
	c.transition(StateClosed, nil, cause)
}

// endCause is why the loop ended: a fatal verdict, or the first stop
// request. The caller holds c.mu.
func (l *loop) endCause() (*stopRequest, error) {
	req := l.c.stopReq
	switch {
	case l.fatal != nil:
		return req, &closedError{cause: l.fatal}
	case req == nil: // cannot happen: the loop ends by a verdict or a request
		return nil, ErrClosed
	case req.byClose:
		return req, ErrClosed
	case l.lastErr != nil:
		return req, &closedError{cause: fmt.Errorf("connect: %w (last failure: %w)", req.ctxErr, l.lastErr)}
	}
	return req, &closedError{cause: fmt.Errorf("connect: %w", req.ctxErr)}
}
