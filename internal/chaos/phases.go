package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// The faults below land in the phases the table's rows alone would miss:
// before the upgrade, inside the handshake, while a large message is being
// read, while a large write is in flight, while the client's pong waits
// behind that write, and (PhaseFaults' clients closing themselves) during
// Close. On the open socket the server also pings at random, in bursts,
// and sends fragmented and large messages.

// PhaseFaults lists the faults by phase, drawn beside Faults.
var PhaseFaults = []Fault{
	{Name: "dial-reset", Want: resocket.ActionRetry, Weight: 2,
		plan: func(*rand.Rand, int) resockettest.Script { return resockettest.Script{ResetUpgrade: true} }},
	handshakeFault("handshake-reset", websocket.StatusAbnormalClosure, resocket.ActionRetry, resockettest.Reset()),
	handshakeFault("handshake-close-4000", 4000, resocket.ActionRetry, resockettest.Close(4000, "chaos")),
	handshakeFault("handshake-close-4004", 4004, resocket.ActionFatal, resockettest.Close(4004, "chaos")),
	{Name: "mid-read-reset", Want: resocket.ActionRetry, Code: websocket.StatusAbnormalClosure, Weight: 3,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			return resockettest.Script{Steps: append(preamble(rng, conn), halfMessageThenReset(rng))}
		}},
	{Name: "mid-write-reset", Want: resocket.ActionRetry, Code: websocket.StatusAbnormalClosure, Weight: 3,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			return resockettest.Script{Steps: append(preamble(rng, conn), bigWriteThen(rng, 0))}
		}},
	// The bug that hid from 10,000 faults: a peer that dies while the
	// client's pong waits behind a large write is a drop, not a 1002.
	{Name: "mid-pong-reset", Want: resocket.ActionRetry, Code: websocket.StatusAbnormalClosure, Weight: 4,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			return resockettest.Script{Steps: append(preamble(rng, conn), bigWriteThen(rng, 1+rng.IntN(4)))}
		}},
	// A real protocol violation, on purpose: the client reports 1002.
	{Name: "bad-frame", Want: resocket.ActionReidentify, Code: websocket.StatusProtocolError, Weight: 2,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			bad := [][]byte{
				resockettest.Frame(0x3, nil),                     // a reserved opcode
				{0x09, 0x00},                                     // a fragmented ping
				resockettest.Frame(0x9, make([]byte, 126)),       // a control frame over 125 bytes
				append([]byte{0x80, 0x01}, 'x'),                  // a continuation with nothing to continue
				resockettest.Frame(0x8, []byte{0x03, 0xe7, 'x'}), // close code 999
			}[rng.IntN(5)]
			return resockettest.Script{Steps: append(preamble(rng, conn), resockettest.Raw(bad), resockettest.Sleep(500*time.Millisecond))}
		}},
}

// welcome ends the server's side of the chaos handshake: the client reads
// it before it counts as OPEN.
const welcome = "welcome"

func handshakeFault(name string, code websocket.StatusCode, want resocket.Action, fault resockettest.Step) Fault {
	return Fault{Name: name, Want: want, Code: code, Weight: 2,
		plan: func(*rand.Rand, int) resockettest.Script {
			return resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), fault}}
		}}
}

// halfMessageThenReset starts a large message, numbered like the others,
// and resets the connection halfway through it.
func halfMessageThenReset(rng *rand.Rand) resockettest.Step {
	size := 64<<10 + rng.IntN(512<<10)
	return func(ctx context.Context, p *resockettest.Peer) error {
		w, err := p.Conn.Writer(ctx, websocket.MessageBinary)
		if err != nil {
			return err
		}
		w.Write(make([]byte, size/2))
		return resockettest.Reset()(ctx, p)
	}
}

// bigWriteThen asks the client for a large write, stops reading so that
// the write stalls in the TCP buffers, sends pings pings (whose pongs then
// wait behind the write), and resets the connection.
func bigWriteThen(rng *rand.Rand, pings int) resockettest.Step {
	stall := time.Duration(20+rng.IntN(60)) * time.Millisecond
	return func(ctx context.Context, p *resockettest.Peer) error {
		if err := p.Conn.Write(ctx, websocket.MessageText, []byte(bigWrite)); err != nil {
			return err
		}
		resockettest.Sleep(stall)(ctx, p)
		for i := 0; i < pings; i++ {
			if _, err := p.TCP.Write(resockettest.Frame(0x9, []byte(fmt.Sprint(i)))); err != nil {
				return err
			}
		}
		resockettest.Sleep(stall)(ctx, p)
		return resockettest.Reset()(ctx, p)
	}
}

// bigWrite asks the client's reader to write a large message.
const bigWrite = "bigwrite"

// bigWriteSize is the client's large write: well past what loopback
// buffers take, so that a server that stops reading stalls it.
const bigWriteSize = 8 << 20

// bigPayload is every large write's content, shared: Write does not change
// what it is given (coder/websocket masks a copy), and a run makes
// thousands of them.
var bigPayload = make([]byte, bigWriteSize)

// padding fills the large numbered messages, shared for the same reason.
var padding = []byte(strings.Repeat("x", 192<<10))

// pinging runs step while pinging the client at random, sometimes many
// times in a row.
func pinging(rng *rand.Rand, step resockettest.Step) resockettest.Step {
	bursts, gap := 1+rng.IntN(5), time.Duration(rng.IntN(20))*time.Millisecond
	return func(ctx context.Context, p *resockettest.Peer) error {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < bursts; i++ {
				if resockettest.Sleep(gap)(pctx, p) != nil {
					return
				}
				for k := 0; k <= i; k++ { // a growing burst
					tctx, tcancel := context.WithTimeout(pctx, time.Second)
					err := p.Conn.Ping(tctx)
					tcancel()
					if err != nil {
						return
					}
				}
			}
		}()
		err := step(ctx, p)
		cancel()
		<-done
		return err
	}
}

// fragmented sends n numbered messages, each in two or three frames, and
// a large one, continuing the connection's sequence from first.
func fragmented(rng *rand.Rand, conn, first, n int) resockettest.Step {
	var b []byte
	for i := 0; i < n; i++ {
		msg := fmt.Sprintf("c%d:%d", conn, first+i)
		cut := 1 + rng.IntN(len(msg)-1)
		b = append(b, 0x01, byte(cut)) // text, not final
		b = append(b, msg[:cut]...)
		b = append(b, 0x80, byte(len(msg)-cut)) // continuation, final
		b = append(b, msg[cut:]...)
	}
	prefix, pad := fmt.Sprintf("c%d:%d|", conn, first+n), padding[:64<<10+rng.IntN(128<<10)]
	return func(ctx context.Context, p *resockettest.Peer) error {
		if _, err := p.TCP.Write(b); err != nil {
			return err
		}
		w, err := p.Conn.Writer(ctx, websocket.MessageText) // sent in pieces, as written
		if err != nil {
			return err
		}
		w.Write([]byte(prefix))
		w.Write(pad)
		return w.Close()
	}
}
