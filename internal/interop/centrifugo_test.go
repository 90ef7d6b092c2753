package interop

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/coder/websocket"

	"github.com/resocket/resocket"
)

// Centrifugo v6 as a foreign peer: a real server, with history on a real
// Redis (so that a Centrifugo killed with -9 and started again keeps its
// streams' epoch), driven by a client written on resocket's public API
// the way a user would write one for Centrifugo's JSON protocol.

const (
	cfSecret  = "interop-hmac-secret"
	cfAPIKey  = "interop-api-key"
	cfChannel = "news"
	cfUser    = "alice"
)

// centrifugo is one Centrifugo process, restartable on the same port.
type centrifugo struct {
	t        *testing.T
	bin, dir string
	port     int
	cmd      *exec.Cmd
	URL, API string
}

func needCentrifugo(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("RESOCKET_CENTRIFUGO")
	if bin == "" {
		bin = "centrifugo"
	}
	path, err := exec.LookPath(bin)
	need(t, "Centrifugo v6", "GOBIN=$(mktemp -d) go install github.com/centrifugal/centrifugo/v6@v6.9.1, then set RESOCKET_CENTRIFUGO to $GOBIN/centrifugo", err)
	logVersion(t, "centrifugo", func() (string, error) {
		out, err := output("go", "version", "-m", path)
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" {
				return "Centrifugo " + f[2] + " (" + f[1] + ")", nil
			}
		}
		return out, err
	})
	return path
}

// startCentrifugo starts Redis and Centrifugo on free loopback ports, with
// a generated config: HS256 tokens, history with recovery on every
// channel, and pings every pingEvery.
func startCentrifugo(t *testing.T, pingEvery time.Duration) *centrifugo {
	t.Helper()
	bin := needCentrifugo(t)
	redisBin, err := exec.LookPath("redis-server")
	need(t, "redis-server", "apt-get install -y redis-server", err)
	redisPort := freePort(t)
	redis := exec.Command(redisBin, "--port", strconv.Itoa(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { redis.Process.Kill(); redis.Wait() })
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", redisPort))

	c := &centrifugo{t: t, bin: bin, dir: t.TempDir(), port: freePort(t)}
	c.URL = fmt.Sprintf("ws://127.0.0.1:%d/connection/websocket", c.port)
	c.API = fmt.Sprintf("http://127.0.0.1:%d/api", c.port)
	config := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": c.port},
		"log":         map[string]any{"level": "error"},
		"health":      map[string]any{"enabled": true},
		"client": map[string]any{
			"token":           map[string]any{"hmac_secret_key": cfSecret},
			"allowed_origins": []string{"*"},
			"ping_interval":   pingEvery.String(),
			"pong_timeout":    (pingEvery / 2).String(),
		},
		"http_api": map[string]any{"key": cfAPIKey},
		"channel": map[string]any{"without_namespace": map[string]any{
			"history_size": 10000, "history_ttl": "300s", "force_recovery": true, "allow_subscribe_for_client": true,
		}},
		"engine": map[string]any{"type": "redis", "redis": map[string]any{"address": []string{fmt.Sprintf("redis://127.0.0.1:%d", redisPort)}}},
	}
	b, _ := json.Marshal(config)
	if err := os.WriteFile(filepath.Join(c.dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.start()
	t.Cleanup(c.kill)
	return c
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s within %v", addr, waitLimit)
}

func (c *centrifugo) start() {
	c.t.Helper()
	c.cmd = exec.Command(c.bin, "--config", filepath.Join(c.dir, "config.json"))
	c.cmd.Dir = c.dir
	var logs bytes.Buffer
	c.cmd.Stdout, c.cmd.Stderr = &logs, &logs
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", c.port)); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("Centrifugo did not answer /health within %v: %s", waitLimit, logs.String())
}

// kill stops Centrifugo with SIGKILL: no goodbye to its clients.
func (c *centrifugo) kill() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGKILL)
	c.cmd.Wait()
	c.cmd = nil
}

// call runs a server API method.
func (c *centrifugo) call(method string, params any) error {
	b, _ := json.Marshal(params)
	req, _ := http.NewRequest(http.MethodPost, c.API+"/"+method, bytes.NewReader(b))
	req.Header.Set("X-API-Key", cfAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var reply struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	json.Unmarshal(body, &reply)
	if resp.StatusCode != http.StatusOK || reply.Error != nil {
		return fmt.Errorf("%s: %d %s", method, resp.StatusCode, body)
	}
	return nil
}

func (c *centrifugo) publish(n int) error {
	return c.call("publish", map[string]any{"channel": cfChannel, "data": map[string]int{"n": n}})
}

func (c *centrifugo) disconnect(code int, reason string) error {
	return c.call("disconnect", map[string]any{"user": cfUser, "disconnect": map[string]any{"code": code, "reason": reason}})
}

// hs256 makes a connection token for user, as Centrifugo checks it.
func hs256(user string) string {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"sub": user, "exp": time.Now().Add(time.Hour).Unix()})
	signing := header + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(cfSecret))
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// cfClient is a small Centrifugo client on resocket's public API: connect
// and subscribe (with recovery from the last offset) in the handshake,
// pings answered on the socket they came from, publications counted.
type cfClient struct {
	c         *resocket.Client
	answer    bool // answer the server's pings
	mu        sync.Mutex
	epoch     string
	offset    uint64
	got       []int // publication numbers, in arrival order
	recovered []bool
}

// frame is one reply or push of Centrifugo's JSON protocol.
type frame struct {
	ID      int `json:"id"`
	Connect *struct {
		Ping int  `json:"ping"`
		Pong bool `json:"pong"`
	} `json:"connect"`
	Subscribe *struct {
		Epoch        string          `json:"epoch"`
		Offset       uint64          `json:"offset"`
		Recovered    bool            `json:"recovered"`
		Publications []cfPublication `json:"publications"`
	} `json:"subscribe"`
	Push *struct {
		Pub *cfPublication `json:"pub"`
	} `json:"push"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

type cfPublication struct {
	Data   struct{ N int } `json:"data"`
	Offset uint64          `json:"offset"`
}

// frames splits a WebSocket message into Centrifugo's frames (one JSON
// object per line).
func frames(b []byte) []frame {
	var out []frame
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var f frame
		if json.Unmarshal(line, &f) == nil {
			out = append(out, f)
		}
	}
	return out
}

func (cf *cfClient) handshake(ctx context.Context, s *resocket.Session) error {
	if err := s.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"id":1,"connect":{"token":%q,"name":"resocket-interop"}}`, hs256(cfUser)))); err != nil {
		return err
	}
	f, err := cf.reply(ctx, s, 1)
	if err != nil {
		return err
	}
	if f.Connect.Ping > 0 { // Centrifugo pings every Ping seconds and wants a pong within its pong timeout
		s.SetIdleTimeout(time.Duration(f.Connect.Ping)*time.Second + 2*time.Second)
	}
	cf.mu.Lock()
	sub := fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q}}`, cfChannel)
	if cf.epoch != "" {
		sub = fmt.Sprintf(`{"id":2,"subscribe":{"channel":%q,"recover":true,"epoch":%q,"offset":%d}}`, cfChannel, cf.epoch, cf.offset)
	}
	cf.mu.Unlock()
	if err := s.Write(ctx, websocket.MessageText, []byte(sub)); err != nil {
		return err
	}
	f, err = cf.reply(ctx, s, 2)
	if err != nil {
		return err
	}
	cf.mu.Lock()
	defer cf.mu.Unlock()
	if cf.epoch != "" {
		cf.recovered = append(cf.recovered, f.Subscribe.Recovered && f.Subscribe.Epoch == cf.epoch)
	}
	cf.epoch = f.Subscribe.Epoch
	if cf.offset < f.Subscribe.Offset && len(f.Subscribe.Publications) == 0 {
		cf.offset = f.Subscribe.Offset
	}
	for _, p := range f.Subscribe.Publications {
		cf.add(p)
	}
	return nil
}

// reply reads until the reply with id, answering pings meanwhile.
func (cf *cfClient) reply(ctx context.Context, s *resocket.Session, id int) (frame, error) {
	for {
		_, b, err := s.Conn.Read(ctx)
		if err != nil {
			return frame{}, err
		}
		for _, f := range frames(b) {
			switch {
			case f.ID == id && f.Error != nil:
				return frame{}, fmt.Errorf("centrifugo refused command %d: %d %s", id, f.Error.Code, f.Error.Message)
			case f.ID == id:
				return f, nil
			case f.ID == 0 && f.Push == nil && cf.answer:
				s.Write(ctx, websocket.MessageText, []byte("{}"))
			}
		}
	}
}

// add records a publication. The caller holds cf.mu.
func (cf *cfClient) add(p cfPublication) {
	if p.Offset > cf.offset {
		cf.offset = p.Offset
	}
	cf.got = append(cf.got, p.Data.N)
}

// run reads until the client closes: pings answered through the message's
// Session (never on a later socket), publications recorded.
func (cf *cfClient) run() {
	for {
		m, err := cf.c.ReadMessage(context.Background())
		if err != nil {
			return
		}
		for _, f := range frames(m.Data) {
			switch {
			case f.Push != nil && f.Push.Pub != nil:
				cf.mu.Lock()
				cf.add(*f.Push.Pub)
				cf.mu.Unlock()
			case f.ID == 0 && f.Push == nil && cf.answer:
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				m.Session.Write(ctx, websocket.MessageText, []byte("{}"))
				cancel()
			}
		}
	}
}

func (cf *cfClient) numbers() []int {
	cf.mu.Lock()
	defer cf.mu.Unlock()
	return append([]int(nil), cf.got...)
}

// dialCentrifugo connects a cfClient with CentrifugoPolicy.
func dialCentrifugo(t *testing.T, srv *centrifugo, answer bool) (*cfClient, *eventLog) {
	t.Helper()
	cf := &cfClient{answer: answer}
	c, err := resocket.New(srv.URL,
		resocket.WithHandshake(cf.handshake),
		resocket.WithPolicy(resocket.CentrifugoPolicy),
		resocket.WithHeartbeat(0, 0), // Centrifugo's own pings are the liveness signal (SetIdleTimeout)
		resocket.WithCloseTimeout(500*time.Millisecond),
		resocket.WithBackoff(func() backoff.BackOff { return backoff.NewConstantBackOff(100 * time.Millisecond) }))
	if err != nil {
		t.Fatal(err)
	}
	cf.c = c
	log := watch(c)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); cf.run() }()
	t.Cleanup(func() { c.Close(); <-done; log.wait() })
	return cf, log
}

// eventLog keeps a client's disconnects and opens.
type eventLog struct {
	mu     sync.Mutex
	events []resocket.Event
	done   chan struct{}
}

func watch(c *resocket.Client) *eventLog {
	l := &eventLog{done: make(chan struct{})}
	ch, _ := c.Subscribe(1024)
	go func() {
		defer close(l.done)
		for e := range ch {
			l.mu.Lock()
			l.events = append(l.events, e)
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *eventLog) wait() { <-l.done }

// until waits for a Disconnected matching ok, and then for n opens in all.
func (l *eventLog) until(t *testing.T, what string, ok func(resocket.Disconnected) bool, opens int) resocket.Disconnected {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		var found *resocket.Disconnected
		n := 0
		for _, e := range l.events {
			switch e := e.(type) {
			case resocket.Disconnected:
				if found == nil && ok(e) {
					found = &e
				}
			case resocket.Connected:
				n++
			}
		}
		l.mu.Unlock()
		if found != nil && n >= opens {
			return *found
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("no %s within %v; events: %v", what, waitLimit, l.events)
	return resocket.Disconnected{}
}

// waitNumbers waits until publications 1..n were all received.
func (cf *cfClient) waitNumbers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for time.Now().Before(deadline) {
		if got := cf.numbers(); complete(got, n) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	got := cf.numbers()
	t.Fatalf("publications 1..%d not all received: %d received, missing %v", n, len(got), missing(got, n))
}

func complete(got []int, n int) bool { return len(missing(got, n)) == 0 }

func missing(got []int, n int) []int {
	seen := map[int]bool{}
	for _, g := range got {
		seen[g] = true
	}
	var out []int
	for i := 1; i <= n; i++ {
		if !seen[i] {
			out = append(out, i)
		}
	}
	return out
}

// TestCentrifugo drives a real Centrifugo v6 through what a client of it
// meets: publications, pings, its restart after kill -9, its disconnects
// with a reconnect code and a terminal one, an unanswered ping, and
// publications that land while the client is away.
func TestCentrifugo(t *testing.T) {
	srv := startCentrifugo(t, time.Second)

	t.Run("publications-and-pings", func(t *testing.T) {
		cf, log := dialCentrifugo(t, srv, true)
		for i := 1; i <= 20; i++ {
			if err := srv.publish(i); err != nil {
				t.Fatal(err)
			}
		}
		cf.waitNumbers(t, 20)
		time.Sleep(2500 * time.Millisecond) // two of Centrifugo's pings, answered
		if st := cf.c.Stats(); st.Disconnects != 0 {
			log.mu.Lock()
			t.Fatalf("%d disconnects while pings were answered: %v", st.Disconnects, log.events)
		}
	})

	t.Run("kill-9-and-restart-recovers", func(t *testing.T) {
		cf, log := dialCentrifugo(t, srv, true)
		for i := 1; i <= 10; i++ {
			srv.publish(i)
		}
		cf.waitNumbers(t, 10)
		srv.kill()
		start := time.Now()
		log.until(t, "a drop after kill -9", func(d resocket.Disconnected) bool { return d.Action == resocket.ActionRetry }, 1)
		srv.start()
		for i := 11; i <= 30; i++ { // published before the client is back: recovered on its resubscribe
			if err := srv.publish(i); err != nil {
				t.Fatal(err)
			}
		}
		log.until(t, "the reconnect", func(resocket.Disconnected) bool { return true }, 2)
		cf.waitNumbers(t, 30)
		t.Logf("back and recovered %v after kill -9", time.Since(start).Round(time.Millisecond))
		cf.mu.Lock()
		defer cf.mu.Unlock()
		if len(cf.recovered) == 0 || !cf.recovered[len(cf.recovered)-1] {
			t.Fatalf("the resubscribe did not recover on the same epoch: %v", cf.recovered)
		}
	})

	t.Run("disconnect-with-a-reconnect-code", func(t *testing.T) {
		cf, log := dialCentrifugo(t, srv, true)
		if err := srv.disconnect(4001, "reconnect later"); err != nil {
			t.Fatal(err)
		}
		d := log.until(t, "the 4001", func(d resocket.Disconnected) bool { return d.Code == 4001 }, 2)
		if d.Action != resocket.ActionRetry {
			t.Fatalf("4001: %v", d.Action)
		}
		srv.publish(1)
		cf.waitNumbers(t, 1)
	})

	t.Run("disconnect-with-a-terminal-code", func(t *testing.T) {
		cf, _ := dialCentrifugo(t, srv, true)
		if err := srv.disconnect(4501, "go away for good"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-cf.c.Done():
		case <-time.After(waitLimit):
			t.Fatal("the client did not stop on 4501")
		}
		var ce websocket.CloseError
		if !errors.As(cf.c.Err(), &ce) || ce.Code != 4501 || !errors.Is(cf.c.Err(), resocket.ErrClosed) {
			t.Fatalf("Err %v, want a CloseError 4501 wrapping ErrClosed", cf.c.Err())
		}
	})

	t.Run("unanswered-ping-is-3012-and-reconnects", func(t *testing.T) {
		_, log := dialCentrifugo(t, srv, false)
		d := log.until(t, "3012 no pong", func(d resocket.Disconnected) bool { return d.Code == 3012 }, 2)
		if d.Action != resocket.ActionRetry {
			t.Fatalf("3012: %v", d.Action)
		}
	})

	t.Run("publications-during-disconnects-none-lost", func(t *testing.T) {
		cf, log := dialCentrifugo(t, srv, true)
		const total = 300
		stop := make(chan struct{})
		go func() { // a disconnect every 150 ms while publications flow
			for {
				select {
				case <-stop:
					return
				case <-time.After(150 * time.Millisecond):
					srv.disconnect(3001, "shutdown") // Centrifugo's reconnect code
				}
			}
		}()
		for i := 1; i <= total; i++ {
			if err := srv.publish(i); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Millisecond)
		}
		close(stop)
		cf.waitNumbers(t, total)
		log.mu.Lock()
		drops := 0
		for _, e := range log.events {
			if _, ok := e.(resocket.Disconnected); ok {
				drops++
			}
		}
		log.mu.Unlock()
		if drops == 0 {
			t.Fatal("no disconnect happened: the test proved nothing")
		}
		t.Logf("%d publications through %d disconnects, none lost", total, drops)
	})
}
