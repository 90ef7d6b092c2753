package chaos

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/resocket/resocket/resockettest"
)

// withAppPings runs step while pinging the client the way an application
// protocol does ("p<conn>:<n>", every pingEvery). The client answers each
// through the Session its ping came on ("r<conn>:<n>"); countMisrouted
// counts a reply that reached another socket.
func withAppPings(step resockettest.Step) resockettest.Step { return alongside(step, ping) }

// alongside runs step while bg runs on a goroutine of its own; bg's ctx
// ends when step returns, and the step returns once bg has.
func alongside(step resockettest.Step, bg func(ctx context.Context, p *resockettest.Peer)) resockettest.Step {
	return func(ctx context.Context, p *resockettest.Peer) error {
		bctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			bg(bctx, p)
		}()
		defer func() { cancel(); <-done }()
		return step(ctx, p)
	}
}

// countMisrouted sees every reply the chaos echo reads (echoText): a
// reply to a ping must arrive on the socket the ping came from.
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

// echoText is the chaos server's echo: text comes back (but for the
// replies to its pings, which countMisrouted checks), and a large binary
// write that lands on a healthy socket is read and dropped, as a
// gateway drops what it does not expect. The kit's Echo would send
// 8 MiB back, and a client starved by a loaded machine then cannot even
// write its pong behind its own next large write: coder/websocket cuts
// such a socket after 5 s, a 1006 where the plan said otherwise.
func echoText(ctx context.Context, p *resockettest.Peer) error {
	for {
		typ, r, err := p.Conn.Reader(ctx)
		if err != nil {
			return err
		}
		if typ == websocket.MessageBinary {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return err
			}
			continue
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if len(b) > 0 && b[0] == 'r' {
			countMisrouted(p.Info, b)
			continue
		}
		if err := p.Conn.Write(ctx, typ, b); err != nil {
			return err
		}
	}
}

// echoTextThen is echoText for d, then fault.
func echoTextThen(d time.Duration, fault resockettest.Step) resockettest.Step {
	return alongside(func(ctx context.Context, p *resockettest.Peer) error {
		resockettest.Sleep(d)(ctx, p)
		err := fault(ctx, p)
		p.Conn.CloseNow()
		return err
	}, func(ctx context.Context, p *resockettest.Peer) { echoText(ctx, p) })
}
