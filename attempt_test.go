package resocket_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/resocket/resocket"
	"github.com/resocket/resocket/examples/gateway/shard"
	"github.com/resocket/resocket/resockettest"
)

// Resume attempts dial the session's resume URL; a re-identify clears it
// and identifies at New's URL.
func TestResumeURL(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayRules)
	_, rec := runShard(t, g, shard.Config{IdentifyLimiter: resocket.NewLimiter(1, 300*time.Millisecond)})
	g.Drop(0)
	if r := waitRecords(t, g, "resume", 1)[0]; r.Path != "/resume" {
		t.Fatalf("resumed at %q, want the resume URL's /resume", r.Path)
	}
	g.InvalidateSession(0, false)
	if r := waitRecords(t, g, "identify", 2)[1]; r.Path != "/" {
		t.Fatalf("identified again at %q, want New's URL", r.Path)
	}
	rec.connected(t, 3) // READY came: there is a session to resume (a drop before it identifies again)
	g.Drop(0)
	if r := waitRecords(t, g, "resume", 2)[1]; r.Path != "/resume" {
		t.Fatalf("the new session resumed at %q", r.Path)
	}
	if n := len(g.Records("resume-refused")); n != 0 {
		t.Fatalf("%d resumes refused", n)
	}
}

func TestResumeURLBadInputAndSecrets(t *testing.T) {
	t.Parallel()
	c, err := resocket.New("ws://127.0.0.1:9/", fast()...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, bad := range []string{"::not a url", "ftp://host/", "ws:///no-host", "relative/path"} {
		if err := c.SetResumeURL(bad); err == nil || !strings.Contains(err.Error(), "resocket: SetResumeURL: invalid URL") {
			t.Fatalf("SetResumeURL(%q) = %v", bad, err)
		}
		if _, err := resocket.New("ws://127.0.0.1:9/", resocket.WithResume(bad)); err == nil || !strings.Contains(err.Error(), "WithResume: invalid URL") {
			t.Fatalf("WithResume(%q) = %v", bad, err)
		}
	}
	if err := c.SetResumeURL(""); err != nil {
		t.Fatalf("clearing: %v", err)
	}

	// A resume URL's token never shows, in errors, events or logs.
	const secret = "resume-s3cret-value"
	srv := resockettest.NewServer(t, resockettest.Script{Steps: []resockettest.Step{resockettest.Sleep(100 * time.Millisecond), resockettest.Reset()}})
	var logs bytes.Buffer
	var mu sync.Mutex
	c2, rec := newRecorded(t, srv.URL, fast(resocket.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))))...)
	if err := c2.Connect(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if err := c2.SetResumeURL(refusedURL(t) + "?token=" + secret); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "a failed resume", func(e resocket.Event) bool {
		d, ok := e.(resocket.Disconnected)
		return ok && d.Code == 0
	})
	c2.Close()
	mu.Lock()
	defer mu.Unlock()
	for _, e := range rec.all() {
		if strings.Contains(fmt.Sprintf("%+v", e), secret) {
			t.Fatalf("event leaks the resume token: %+v", e)
		}
	}
	if strings.Contains(logs.String(), secret) || !strings.Contains(logs.String(), "token=REDACTED") {
		t.Fatalf("logs leak the resume token, or never name the resume URL:\n%s", logs.String())
	}
}

// A throttled, slow-trickle upgrade hits the connect timeout and is
// retried; with bandwidth back the client opens.
func TestThrottledUpgradeRetried(t *testing.T) {
	t.Parallel()
	srv := resockettest.NewServer(t)
	proxy := startProxy(t, srv)
	proxy.SetDefault(resockettest.Settings{Bandwidth: 20})
	c, rec := newRecorded(t, proxy.URL, fast(resocket.WithConnectTimeout(300*time.Millisecond))...)
	connected := make(chan error, 1)
	go func() { connected <- c.Connect(bounded(t)) }()
	d := rec.disconnected(t)
	if d.Action != resocket.ActionRetry || !strings.Contains(d.Err.Error(), "connect timeout") {
		t.Fatalf("got %v %v", d.Action, d.Err)
	}
	proxy.SetDefault(resockettest.Settings{})
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
}
