package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
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

// PhaseFaults lists the faults by phase, drawn beside Faults. Each phase
// gets the four ways a socket ends: a reset, a FIN, a close frame, and
// silence (found by the heartbeat or the connect timeout).
var PhaseFaults = []Fault{
	{Name: "dial-reset", Want: resocket.ActionRetry, Weight: 2,
		plan: func(*rand.Rand, int) resockettest.Script { return resockettest.Script{ResetUpgrade: true} }},
	handshakeFault("handshake-reset", websocket.StatusAbnormalClosure, resocket.ActionRetry, 2, resockettest.Reset()),
	handshakeFault("handshake-fin", websocket.StatusAbnormalClosure, resocket.ActionRetry, 1, resockettest.Hangup()),
	handshakeFault("handshake-close-4000", 4000, resocket.ActionRetry, 2, resockettest.Close(4000, "chaos")),
	handshakeFault("handshake-close-4004", 4004, resocket.ActionFatal, 2, resockettest.Close(4004, "chaos")),
	handshakeFault("handshake-silent", websocket.StatusAbnormalClosure, resocket.ActionRetry, 1, resockettest.Silent(connectTimeout+time.Second)),
	midRead("mid-read-reset", 3, resockettest.Reset()),
	midRead("mid-read-fin", 1, resockettest.Hangup()),
	midRead("mid-read-silent", 1, resockettest.Silent(heartbeatTimeout+time.Second)),
	// A control frame may come between the fragments of a message: a
	// close frame there ends the socket with its code.
	{Name: "mid-read-close-1001", Want: resocket.ActionRetry, Code: websocket.StatusGoingAway, Weight: 2,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			first := append([]byte{0x01, 100}, padding[:100]...) // a text fragment, not final
			return resockettest.Script{Steps: append(preamble(rng, conn),
				resockettest.Raw(first), closeThenHangUp(websocket.StatusGoingAway))}
		}},
	midWrite("mid-write-reset", websocket.StatusAbnormalClosure, resocket.ActionRetry, 3, resockettest.Reset()),
	// The close frame comes while the write is stalled: the client's
	// answer waits behind it, and the frame decides the verdict.
	midWrite("mid-write-close-4000", 4000, resocket.ActionRetry, 2, closeThenHangUp(4000)),
	// The ping cannot even be written behind the stalled write: the
	// heartbeat's deadline still finds the silence.
	midWrite("mid-write-silent", websocket.StatusAbnormalClosure, resocket.ActionRetry, 1, resockettest.Silent(heartbeatTimeout+time.Second)),
	// The bug that hid from 10,000 faults: a peer that dies while the
	// client's pong waits behind a large write is a drop, not a 1002.
	// (No close frame here: one sent after the pings waits behind a pong
	// that cannot be written, and whether it is read before the reset
	// fails that pong depends on timing; either verdict would be right.)
	{Name: "mid-pong-reset", Want: resocket.ActionRetry, Code: websocket.StatusAbnormalClosure, Weight: 4,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			return resockettest.Script{Steps: append(preamble(rng, conn), bigWriteThen(rng, 1+rng.IntN(4), resockettest.Reset()))}
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

func midRead(name string, weight int, end resockettest.Step) Fault {
	return Fault{Name: name, Want: resocket.ActionRetry, Code: websocket.StatusAbnormalClosure, Weight: weight,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			return resockettest.Script{Steps: append(preamble(rng, conn), halfMessageThen(rng, end))}
		}}
}

func midWrite(name string, code websocket.StatusCode, want resocket.Action, weight int, end resockettest.Step) Fault {
	return Fault{Name: name, Want: want, Code: code, Weight: weight,
		plan: func(rng *rand.Rand, conn int) resockettest.Script {
			return resockettest.Script{Steps: append(preamble(rng, conn), bigWriteThen(rng, 0, end))}
		}}
}

// closeThenHangUp sends a close frame with code without waiting for the
// client's answer, half-closes (the FIN follows the frame), reads and
// drops whatever the client still sends until it hangs up (at most 3 s),
// and resets. A reset straight after the frame could throw it away
// unsent, in the server's kernel or in the proxy.
func closeThenHangUp(code websocket.StatusCode) resockettest.Step {
	frame := resockettest.Frame(0x8, append([]byte{byte(code >> 8), byte(code)}, "chaos"...))
	return func(ctx context.Context, p *resockettest.Peer) error {
		if err := resockettest.Raw(frame)(ctx, p); err != nil {
			return err
		}
		if tc, ok := p.TCP.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		p.TCP.SetReadDeadline(time.Now().Add(3 * time.Second))
		io.Copy(io.Discard, p.TCP)
		return resockettest.Reset()(ctx, p)
	}
}

// welcome ends the server's side of the chaos handshake: the client reads
// it before it counts as OPEN.
const welcome = "welcome"

func handshakeFault(name string, code websocket.StatusCode, want resocket.Action, weight int, fault resockettest.Step) Fault {
	return Fault{Name: name, Want: want, Code: code, Weight: weight,
		plan: func(*rand.Rand, int) resockettest.Script {
			return resockettest.Script{Steps: []resockettest.Step{resockettest.Read(1), fault}}
		}}
}

// halfMessageThen starts a large message, sends half of it, and ends the
// connection with end while the client is inside the frame.
func halfMessageThen(rng *rand.Rand, end resockettest.Step) resockettest.Step {
	size := 64<<10 + rng.IntN(512<<10)
	return func(ctx context.Context, p *resockettest.Peer) error {
		w, err := p.Conn.Writer(ctx, websocket.MessageBinary)
		if err != nil {
			return err
		}
		w.Write(make([]byte, size/2))
		return end(ctx, p)
	}
}

// bigWriteThen asks the client for a large write, stops reading so that
// the write stalls in the TCP buffers, sends pings pings (whose pongs then
// wait behind the write), and ends the connection with end.
func bigWriteThen(rng *rand.Rand, pings int, end resockettest.Step) resockettest.Step {
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
		return end(ctx, p)
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
	return alongside(step, func(ctx context.Context, p *resockettest.Peer) {
		for i := 0; i < bursts; i++ {
			if resockettest.Sleep(gap)(ctx, p) != nil {
				return
			}
			for k := 0; k <= i; k++ { // a growing burst
				tctx, tcancel := context.WithTimeout(ctx, time.Second)
				err := p.Conn.Ping(tctx)
				tcancel()
				if err != nil {
					return
				}
			}
		}
	})
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
