package chaos

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// Fault is one row of the classification table, as something a server
// can do to a connection, with the action the client must take.
type Fault struct {
	Name   string
	Want   resocket.Action
	Code   websocket.StatusCode // the close code the client must report, or 0
	Status int                  // the upgrade status it must report, or 0
	Weight int                  // how often it is drawn, relative to the others
	plan   func(rng *rand.Rand, conn int) resockettest.Script
}

// Faults lists every row the chaos run draws from.
var Faults = []Fault{
	closeFault(1000, resocket.ActionReidentify, 2),
	closeFault(1001, resocket.ActionRetry, 3),
	closeFault(1002, resocket.ActionReidentify, 1),
	closeFault(1003, resocket.ActionFatal, 1),
	closeFault(1005, resocket.ActionRetry, 2),
	closeFault(1007, resocket.ActionFatal, 1),
	closeFault(1008, resocket.ActionReidentify, 1),
	closeFault(1009, resocket.ActionFatal, 1),
	closeFault(1010, resocket.ActionFatal, 1),
	closeFault(1011, resocket.ActionRetry, 3),
	closeFault(1012, resocket.ActionRetry, 3),
	closeFault(1013, resocket.ActionRetry, 1),
	closeFault(1014, resocket.ActionRetry, 2),
	closeFault(4000, resocket.ActionRetry, 3),
	closeFault(4001, resocket.ActionRetry, 1),
	closeFault(4002, resocket.ActionRetry, 1),
	closeFault(4003, resocket.ActionReidentify, 2),
	closeFault(4004, resocket.ActionFatal, 1),
	closeFault(4005, resocket.ActionReidentify, 1),
	closeFault(4007, resocket.ActionReidentify, 1),
	closeFault(4008, resocket.ActionRetry, 2),
	closeFault(4009, resocket.ActionReidentify, 1),
	closeFault(4010, resocket.ActionFatal, 1),
	closeFault(4011, resocket.ActionFatal, 1),
	closeFault(4012, resocket.ActionFatal, 1),
	closeFault(4013, resocket.ActionFatal, 1),
	closeFault(4014, resocket.ActionFatal, 1),
	closeFault(3000, resocket.ActionRetry, 1),
	closeFault(4100, resocket.ActionRetry, 1),
	openFault("tcp-reset", websocket.StatusAbnormalClosure, 6, resockettest.Reset()),
	openFault("tcp-fin", websocket.StatusAbnormalClosure, 3, resockettest.Hangup()),
	{Name: "silent-peer", Want: resocket.ActionRetry, Code: websocket.StatusAbnormalClosure, Weight: 3,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			return resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), resockettest.Send(welcome), resockettest.Silent(heartbeatTimeout + time.Second)}}
		}},
	statusFault(500, "", resocket.ActionRetry, 1),
	statusFault(502, "", resocket.ActionRetry, 2),
	statusFault(503, "", resocket.ActionRetry, 1),
	statusFault(503, "0", resocket.ActionRetry, 1),
	statusFault(503, "1", resocket.ActionRetry, 1),
	statusFault(504, "", resocket.ActionRetry, 1),
	statusFault(520, "", resocket.ActionRetry, 1),
	statusFault(522, "0", resocket.ActionRetry, 1),
	statusFault(524, "", resocket.ActionRetry, 1),
	statusFault(599, "", resocket.ActionRetry, 1),
	statusFault(408, "0", resocket.ActionRetry, 1),
	statusFault(429, "1", resocket.ActionRetry, 1),
	statusFault(429, "", resocket.ActionRetry, 1),
	statusFault(428, "", resocket.ActionRetry, 1),
	statusFault(401, "", resocket.ActionFatal, 1),
	statusFault(403, "", resocket.ActionFatal, 1),
	statusFault(404, "", resocket.ActionFatal, 1),
	statusFault(426, "", resocket.ActionFatal, 1),
	{Name: "bad-accept", Want: resocket.ActionFatal, Status: 101, Weight: 1,
		plan: func(*rand.Rand, int) resockettest.Script { return resockettest.Script{BadAccept: true} }},
	{Name: "slow-upgrade", Want: resocket.ActionRetry, Weight: 2,
		plan: func(*rand.Rand, int) resockettest.Script {
			return resockettest.Script{Delay: connectTimeout + time.Second}
		}},
	{Name: "trickle-upgrade", Want: resocket.ActionRetry, Weight: 1,
		plan: func(*rand.Rand, int) resockettest.Script { return resockettest.Script{Trickle: trickle} }},
}

// preamble plays the server's side of the handshake (reads hello, sends
// welcome) and sends numbered messages, "c<conn>:<seq>" for seq from 1:
// a burst of whole ones, then a few in fragments and a large one.
func preamble(rng *rand.Rand, conn int) []resockettest.Step {
	n := rng.IntN(30)
	return []resockettest.Step{
		resockettest.Read(1), resockettest.Send(welcome),
		resockettest.SendN(n, fmt.Sprintf("c%d:%%d", conn)),
		fragmented(rng, conn, n+1, rng.IntN(4)),
	}
}

func closeFault(code websocket.StatusCode, want resocket.Action, weight int) Fault {
	return Fault{Name: fmt.Sprintf("close-%d", code), Want: want, Code: code, Weight: weight,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			steps := preamble(rng, conn)
			up := time.Duration(rng.IntN(60)) * time.Millisecond
			return resockettest.Script{Steps: append(steps, pinging(rng, withAppPings(echoTextThen(up, resockettest.Close(code, "chaos")))))}
		}}
}

func openFault(name string, code websocket.StatusCode, weight int, fault resockettest.Step) Fault {
	return Fault{Name: name, Want: resocket.ActionRetry, Code: code, Weight: weight,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			steps := preamble(rng, conn)
			up := time.Duration(rng.IntN(60)) * time.Millisecond
			return resockettest.Script{Steps: append(steps, pinging(rng, withAppPings(echoTextThen(up, fault))))}
		}}
}

func statusFault(status int, retryAfter string, want resocket.Action, weight int) Fault {
	name := fmt.Sprintf("upgrade-%d", status)
	h := http.Header{}
	if retryAfter != "" {
		name += "-retry-after-" + retryAfter
		h.Set("Retry-After", retryAfter)
	}
	return Fault{Name: name, Want: want, Status: status, Weight: weight,
		plan: func(*rand.Rand, int) resockettest.Script {
			return resockettest.Script{Status: status, Header: h}
		}}
}

// The chaos clients' timeouts, and the faults that must outlast them.
const (
	heartbeatTimeout = 6 * time.Second
	connectTimeout   = 3 * time.Second
	// The trickled upgrade (about 130 bytes, one every 50 ms) takes 6.5 s.
	trickle = 50 * time.Millisecond
)

// draw picks a fault by weight.
func draw(rng *rand.Rand, faults []Fault) Fault {
	total := 0
	for _, f := range faults {
		total += f.Weight
	}
	n := rng.IntN(total)
	for _, f := range faults {
		if n -= f.Weight; n < 0 {
			return f
		}
	}
	return faults[len(faults)-1]
}
