package chaos_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/resockettest"
)

// The suspended client: this test binary again, in client mode.
const (
	suspendChildEnv = "RESOCKET_SUSPEND_CHILD"
	suspendInterval = 100 * time.Millisecond // heartbeat interval, and timeout
	serverIdleCut   = 300 * time.Millisecond // the server cuts a socket silent this long
)

// suspendChild connects to url, writes a numbered message every 20 ms,
// and prints every event and failed write with the time it happened,
// until stdin closes.
func suspendChild(url string) {
	c, err := resocket.New(url, resocket.WithHeartbeat(suspendInterval, suspendInterval))
	if err != nil {
		fmt.Println("error", err)
		return
	}
	events := c.Events()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for e := range events {
			fmt.Printf("%d %T %+v\n", time.Now().UnixNano(), e, e)
		}
	}()
	go func() {
		defer wg.Done()
		for n := 1; c.State() != resocket.StateClosed; n++ {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf("w%d", n))); err != nil {
				fmt.Printf("%d write: %v\n", time.Now().UnixNano(), err)
			}
			cancel()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	go c.Connect(context.Background())
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
	c.Close()
	wg.Wait()
}

// A client process stopped (SIGSTOP) for longer than the server's idle cut
// and continued: it notices the dead socket within interval+timeout of
// continuing and resumes, with one disconnect and no burst of stale
// writes. Twice: the server's cut reaches the client as a FIN it finds on
// waking; and the path went silent (a black hole, no FIN ever), which only
// the heartbeat can find.
func TestProcessSuspend(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	t.Run("server-cut", func(t *testing.T) { suspend(t, false) })
	t.Run("silent-path", func(t *testing.T) { suspend(t, true) })
}

func suspend(t *testing.T, silent bool) {
	var mu sync.Mutex
	var arrivals []time.Time // of the messages, on every socket
	srv := resockettest.NewServer(t)
	srv.SetDefault(resockettest.Script{Steps: []resockettest.Step{func(ctx context.Context, p *resockettest.Peer) error {
		for { // an idle cut, like a proxy's read timeout
			rctx, cancel := context.WithTimeout(ctx, serverIdleCut)
			_, _, err := p.Conn.Read(rctx)
			cancel()
			if err != nil {
				return err
			}
			mu.Lock()
			arrivals = append(arrivals, time.Now())
			mu.Unlock()
		}
	}}})

	url := srv.URL
	var proxy *resockettest.Proxy
	if silent {
		proxy = resockettest.NewProxy(t, srv.Addr())
		url = proxy.URL
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), suspendChildEnv+"="+url)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Process.Signal(syscall.SIGCONT); cmd.Wait() }()
	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string // the client's lines, shown when the test fails
	defer func() {
		if t.Failed() {
			t.Logf("the client printed:\n%s", strings.Join(seen, "\n"))
		}
	}()
	next := func(what string) (time.Time, string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the client ended before %s", what)
				}
				seen = append(seen, l)
				if strings.Contains(l, what) {
					ns, _ := strconv.ParseInt(strings.Fields(l)[0], 10, 64)
					return time.Unix(0, ns), l
				}
			case <-deadline:
				t.Fatalf("no %s from the client", what)
			}
		}
	}
	next("resocket.Connected")
	time.Sleep(200 * time.Millisecond) // writes flowing, heartbeats answered

	cmd.Process.Signal(syscall.SIGSTOP)
	if silent {
		proxy.Last().Blackhole(true) // nothing reaches the client any more, not even a FIN
	}
	time.Sleep(3 * serverIdleCut) // the server cuts the silent socket meanwhile
	cont := time.Now()
	cmd.Process.Signal(syscall.SIGCONT)

	at, line := next("resocket.Disconnected")
	if took := at.Sub(cont); took > 2*suspendInterval+100*time.Millisecond {
		t.Fatalf("noticed %v after continuing, want within interval+timeout (%v): %s", took, 2*suspendInterval, line)
	}
	t.Logf("noticed %v after continuing: %s", at.Sub(cont).Round(time.Millisecond), line)
	if !strings.Contains(line, "Action:retry") || (silent && !strings.Contains(line, "heartbeat timeout")) {
		t.Fatalf("the dead socket's verdict: %s", line)
	}
	_, line = next("resocket.Connected")
	if !strings.Contains(line, "Mode:resume") {
		t.Fatalf("reconnected with %s, want a resume", line)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	burst := 0
	for _, a := range arrivals {
		if a.After(cont) && a.Before(cont.Add(100*time.Millisecond)) {
			burst++
		}
	}
	mu.Unlock()
	t.Logf("messages in the 100 ms after continuing: %d", burst)
	// One write every 20 ms: five in 100 ms, and the writes the stop held
	// were never queued, so none can pile up.
	if burst > 7 {
		t.Fatalf("%d messages arrived within 100 ms of continuing: a burst of stale writes", burst)
	}
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, "resocket.Disconnected") {
				t.Fatalf("a second disconnect after continuing: %s", l)
			}
			continue
		default:
		}
		break
	}
}
