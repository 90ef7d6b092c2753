package main

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket/resockettest"
)

// welcome is the server's answer to a client's hello: the end of the
// handshake.
const welcome = "welcome"

// fault is one thing the server can do to a connection, drawn by weight.
type fault struct {
	weight int
	script func(rng *rand.Rand) resockettest.Script
}

// faults is a small picture of production: most sockets are healthy for a
// while, then end in one of the ways a real gateway ends them.
var faults = []fault{
	{6, func(rng *rand.Rand) resockettest.Script { return upFor(rng, 4, 12, closeWith(1001, "going away")) }},
	{4, func(rng *rand.Rand) resockettest.Script { return upFor(rng, 1, 6, resockettest.Reset()) }},
	{1, func(rng *rand.Rand) resockettest.Script { return upFor(rng, 1, 6, resockettest.Hangup()) }},
	{2, func(rng *rand.Rand) resockettest.Script { return upFor(rng, 1, 4, closeWith(1011, "internal error")) }},
	{2, func(rng *rand.Rand) resockettest.Script { return upFor(rng, 1, 4, closeWith(4000, "unknown error")) }},
	{1, func(rng *rand.Rand) resockettest.Script {
		return upFor(rng, 2, 6, closeWith(4009, "session timed out"))
	}},
	{1, func(rng *rand.Rand) resockettest.Script { return silentPeer() }},
	{1, func(*rand.Rand) resockettest.Script { return refuse(http.StatusServiceUnavailable, "") }},
	{1, func(*rand.Rand) resockettest.Script { return refuse(http.StatusServiceUnavailable, "1") }},
	{1, func(*rand.Rand) resockettest.Script { return refuse(http.StatusTooManyRequests, "1") }},
}

// The clients' heartbeat: a ping every heartbeatInterval, a socket whose
// pong is later than heartbeatTimeout is dead. The timeout is generous so
// that a loaded machine does not cut healthy sockets.
const (
	heartbeatInterval = 300 * time.Millisecond
	heartbeatTimeout  = 2 * time.Second
)

// planner draws a fault for every new connection.
type planner struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newPlanner(seed uint64) *planner {
	return &planner{rng: rand.New(rand.NewPCG(seed, 1))}
}

// plan is the server's planner (resockettest.Server.SetPlanner).
func (p *planner) plan(*http.Request, int) resockettest.Script {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	for _, f := range faults {
		total += f.weight
	}
	n := p.rng.IntN(total)
	for _, f := range faults {
		if n -= f.weight; n < 0 {
			return f.script(p.rng)
		}
	}
	return faults[0].script(p.rng)
}

// handshake is the server's side of the clients' handshake: read the
// hello, answer welcome.
func handshake() []resockettest.Step {
	return []resockettest.Step{resockettest.Read(1), resockettest.Send(welcome)}
}

// upFor echoes for a random time between minSec and maxSec seconds, then
// ends the socket with end.
func upFor(rng *rand.Rand, minSec, maxSec int, end resockettest.Step) resockettest.Script {
	d := time.Duration(minSec)*time.Second + time.Duration(rng.Int64N(int64(maxSec-minSec)*int64(time.Second)+1))
	return resockettest.Script{Steps: append(handshake(), resockettest.EchoThen(d, end))}
}

// silentPeer completes the handshake, then never answers again: only the
// heartbeat can tell.
func silentPeer() resockettest.Script {
	return resockettest.Script{Steps: append(handshake(), resockettest.Silent(heartbeatTimeout+3*time.Second))}
}

func closeWith(code websocket.StatusCode, reason string) resockettest.Step {
	return resockettest.Close(code, reason)
}

// refuse answers the upgrade with status, and Retry-After when given.
func refuse(status int, retryAfter string) resockettest.Script {
	h := http.Header{}
	if retryAfter != "" {
		h.Set("Retry-After", retryAfter)
	}
	return resockettest.Script{Status: status, Header: h, Body: strconv.Itoa(status) + " " + http.StatusText(status)}
}
