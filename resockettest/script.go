package resockettest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// Script is what the server does with one connection: answer the upgrade
// (after Delay, with Status, Header and Body instead of upgrading, or with
// a reset or a broken 101), then run Steps on the socket. The zero Script
// upgrades and holds the socket, answering pings, until the client leaves.
// The fields are the Peer's upgrade methods, set in advance.
type Script struct {
	// Delay waits before answering the upgrade.
	Delay time.Duration
	// Status, when not 0, answers the upgrade with this HTTP status,
	// Header and Body instead of upgrading (Peer.Reject).
	Status int
	Header http.Header
	Body   string
	// BadAccept answers 101 with a wrong Sec-WebSocket-Accept
	// (Peer.BadAccept).
	BadAccept bool
	// ResetUpgrade answers the upgrade request with a TCP reset: the
	// client sees a network error and no response (Peer.Reset).
	ResetUpgrade bool
	// Trickle answers a valid 101 one byte per Trickle: a slow-trickle
	// upgrade (Peer.Trickle).
	Trickle time.Duration
	// Steps run in order on the upgraded socket: the server side of a
	// handshake (ReadMode, or any func), messages (Send), and an ending
	// (Close, Reset, Hangup, Silent, Echo). When they end with the socket
	// still open, the server holds it, reading (answering pings, recording
	// nothing) until the client goes away. A Step that returns an error
	// ends the socket.
	Steps []Step
}

// serve plays the Script on p: it is the handler a queued or default
// Script runs as.
func (s Script) serve(ctx context.Context, p *Peer) error {
	if !sleep(ctx, s.Delay) {
		return ctx.Err()
	}
	switch {
	case s.Status != 0:
		return ended(p.Reject(s.Status, s.Header, s.Body))
	case s.ResetUpgrade:
		return ended(p.Reset())
	case s.BadAccept:
		return ended(p.BadAccept())
	case s.Trickle > 0:
		return ended(p.Trickle(ctx, s.Trickle))
	}
	if err := p.Accept(); err != nil {
		return err
	}
	for _, step := range s.Steps {
		if err := step(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// Step is one scripted action on an upgraded socket. Any
// func(ctx, *Peer) error is a Step, and a handler may call any Step on its
// Peer; ctx ends when the server closes.
type Step func(ctx context.Context, p *Peer) error

// errEnded is what a Step that ends the connection returns, so that the
// Steps after it do not run.
var errEnded = errors.New("resockettest: connection ended by the script")

// ended returns err, or errEnded if err is nil.
func ended(err error) error {
	if err != nil {
		return err
	}
	return errEnded
}

// Send sends each message as text.
func Send(msgs ...string) Step {
	return func(ctx context.Context, p *Peer) error { return p.Send(ctx, msgs...) }
}

// SendN sends n text messages, fmt.Sprintf(format, i) for i from 1 to n.
func SendN(n int, format string) Step {
	return func(ctx context.Context, p *Peer) error {
		for i := 1; i <= n; i++ {
			if err := p.Send(ctx, fmt.Sprintf(format, i)); err != nil {
				return err
			}
		}
		return nil
	}
}

// SendLarge sends one binary message of n zero bytes, streamed in frames
// from a small buffer so that the server itself holds little memory.
func SendLarge(n int) Step {
	return func(ctx context.Context, p *Peer) error {
		conn, err := p.socket()
		if err != nil {
			return err
		}
		w, err := conn.Writer(ctx, websocket.MessageBinary)
		if err != nil {
			return err
		}
		buf := make([]byte, 32<<10)
		for n > 0 {
			k := min(n, len(buf))
			if _, err := w.Write(buf[:k]); err != nil {
				return err
			}
			n -= k
		}
		return w.Close()
	}
}

// ReadMode reads one message, the client's handshake saying which mode it
// identifies in, and records it as the connection's mode (see Modes).
func ReadMode() Step {
	return func(ctx context.Context, p *Peer) error {
		_, b, err := p.Read(ctx)
		if err != nil {
			return err
		}
		p.Info.SetMode(string(b))
		return nil
	}
}

// Read reads n messages from the client and records them.
func Read(n int) Step {
	return func(ctx context.Context, p *Peer) error {
		for i := 0; i < n; i++ {
			if _, _, err := p.Read(ctx); err != nil {
				return err
			}
		}
		return nil
	}
}

// Close sends a close frame with code and reason, waits briefly for the
// client's answer, and ends the script (Peer.Close).
func Close(code websocket.StatusCode, reason string) Step {
	return func(ctx context.Context, p *Peer) error {
		p.Close(code, reason) // an unanswered close frame still ends the socket
		return errEnded
	}
}

// Reset drops the TCP connection with an RST, without a close frame
// (Peer.Reset).
func Reset() Step {
	return func(ctx context.Context, p *Peer) error { return ended(p.Reset()) }
}

// Hangup closes the TCP connection with a FIN, without a close frame
// (Peer.Hangup).
func Hangup() Step {
	return func(ctx context.Context, p *Peer) error { return ended(p.Hangup()) }
}

// Silent stops reading, so that pings are never answered, and keeps the
// TCP connection open for d (until the server closes when d is 0), then
// hangs up (Peer.Silent).
func Silent(d time.Duration) Step {
	return func(ctx context.Context, p *Peer) error { return ended(p.Silent(ctx, d)) }
}

// Sleep waits d while not reading: a stall, after which the next step
// runs.
func Sleep(d time.Duration) Step {
	return func(ctx context.Context, p *Peer) error {
		if !sleep(ctx, d) {
			return ctx.Err()
		}
		return nil
	}
}

// Raw writes bytes straight to the TCP connection, for frames that break
// the protocol (Peer.Raw, Frame).
func Raw(b []byte) Step {
	return func(ctx context.Context, p *Peer) error { return p.Raw(b) }
}

// Echo records and sends back every message until the client goes away.
func Echo() Step { return EchoN(-1) }

// EchoN echoes n messages (all of them when n < 0), recording them, then
// goes on to the next step.
func EchoN(n int) Step {
	return func(ctx context.Context, p *Peer) error {
		for i := 0; n < 0 || i < n; i++ {
			typ, b, err := p.Read(ctx)
			if err != nil {
				return err
			}
			if err := p.Conn.Write(ctx, typ, b); err != nil {
				return err
			}
		}
		return nil
	}
}

// EchoThen echoes (and records) messages for d, then runs fault, which is
// expected to end the socket (Close, Reset, Hangup); the socket ends with
// it either way. The echo goes on reading while fault runs, answering
// pings: Silent is no silence here.
func EchoThen(d time.Duration, fault Step) Step {
	return func(ctx context.Context, p *Peer) error {
		done := make(chan struct{})
		go func() {
			defer close(done)
			Echo()(ctx, p)
		}()
		sleep(ctx, d)
		err := fault(ctx, p)
		if conn, _ := p.socket(); conn != nil {
			conn.CloseNow()
		}
		<-done
		return ended(err)
	}
}

// Frame returns a single unmasked server frame with FIN set, for Raw.
func Frame(opcode byte, payload []byte) []byte {
	b := []byte{0x80 | opcode}
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n < 1<<16:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, payload...)
}
