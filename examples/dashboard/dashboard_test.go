// The page in a real headless browser: Debian's chromium (apt-get install
// -y chromium). Without it the test skips, except under CI=true, where it
// fails.
//
// The test also writes a screenshot; to refresh the README's:
//
//	go test -run TestPageInChromium -screenshot ../../docs/dashboard.png
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var screenshot = flag.String("screenshot", "", "write a screenshot of the page, after 30 s of polling, to this PNG file")

// plots are the page's plots, by the id of their <svg class="plot">.
var plots = []string{"states", "drops", "reconnect", "rtt"}

const clients = 40

func TestPageInChromium(t *testing.T) {
	browser := chromium(t)
	url := startDashboard(t)
	waitForChaos(t, url)

	first := readPage(t, browser, url)
	time.Sleep(3 * time.Second) // the second read must see a later picture
	second := readPage(t, browser, url)
	for _, p := range []page{first, second} {
		checkPage(t, p)
	}
	valuesChanged := false
	for _, id := range plots {
		if reflect.DeepEqual(first.points(id), second.points(id)) {
			t.Errorf("plot %q shows the same points in two reads 3 s apart: %v", id, first.points(id))
		}
		valuesChanged = valuesChanged || !reflect.DeepEqual(values(first.points(id)), values(second.points(id)))
	}
	if !valuesChanged {
		t.Error("no plot shows a value that changed between the two reads, only later times")
	}

	path, hold := filepath.Join(t.TempDir(), "dashboard.png"), 2*time.Second
	if *screenshot != "" {
		path, hold = *screenshot, 30*time.Second
	}
	takeScreenshot(t, browser, url, path, hold)
}

// checkPage asserts that the page reported no script error, that every
// plot has data points, and that the clients per state add up.
func checkPage(t *testing.T, p page) {
	t.Helper()
	if p.errors != "" {
		t.Errorf("#errors: %s", p.errors)
	}
	for _, id := range plots {
		if len(p.points(id)) == 0 {
			t.Errorf("plot %q has no data points", id)
		}
	}
	sum := 0.0
	for _, s := range p.series["states"] {
		if n := len(s.points); n > 0 {
			sum += s.points[n-1].v
		}
	}
	if sum != clients {
		t.Errorf("the states at the last poll add up to %v clients, want %d", sum, clients)
	}
}

// chromium finds the browser, or skips the test (fails it under CI=true).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed, and CI=true: apt-get install -y chromium")
	}
	t.Skip("chromium is not installed: apt-get install -y chromium")
	return ""
}

// startDashboard runs the dashboard until the test ends, on a free port.
func startDashboard(t *testing.T) string {
	ctx, cancel := context.WithCancel(context.Background())
	urls, done := make(chan string, 1), make(chan error, 1)
	cfg := config{addr: "127.0.0.1:0", clients: clients, seed: 1}
	go func() { done <- dashboard(ctx, cfg, func(url string) { urls <- url }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dashboard: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the dashboard did not stop within a minute of its ctx ending")
		}
	})
	select {
	case url := <-urls:
		return url
	case err := <-done:
		t.Fatalf("dashboard: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("the dashboard did not serve its page within a minute")
	}
	return ""
}

// waitForChaos waits until /metrics shows drops, reconnects and heartbeat
// round trips.
func waitForChaos(t *testing.T, url string) {
	want := []string{"resocket_client_disconnects_total{", "resocket_client_reconnect_duration_seconds_count{", "resocket_client_heartbeat_rtt_seconds_count{"}
	deadline := time.Now().Add(time.Minute)
	var body []byte
	for i := 0; i < 240 && time.Now().Before(deadline); i++ {
		if res, err := http.Get(url + "metrics"); err == nil {
			body, _ = io.ReadAll(res.Body)
			res.Body.Close()
		}
		if containsAll(string(body), want) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("after a minute, /metrics still lacks one of %q:\n%s", want, body)
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// runChromium runs the headless browser with args, in a profile of its own.
func runChromium(t *testing.T, browser string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append([]string{"--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir=" + t.TempDir()}, args...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, browser, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// readPage loads the page, lets it poll for five seconds of the browser's
// virtual time, and reads what it shows.
func readPage(t *testing.T, browser, url string) page {
	t.Helper()
	dom := runChromium(t, browser, "--virtual-time-budget=5000", "--dump-dom", url)
	p, err := parsePage(string(dom))
	if err != nil {
		t.Fatalf("%v\n%s", err, dom)
	}
	return p
}

// takeScreenshot writes a PNG of the page once it has polled for hold in
// real time. A screenshot is taken when the page has loaded, so a frame
// around it holds the load with an image that takes hold to arrive: the
// browser's virtual time (readPage) would compress the history shown.
func takeScreenshot(t *testing.T, browser, url, path string, hold time.Duration) {
	t.Helper()
	frame := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			select {
			case <-time.After(hold):
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		fmt.Fprintf(w, `<!doctype html><body style="margin:0"><iframe src=%q style="border:0;width:100vw;height:100vh"></iframe><img src="/hold" hidden></body>`, url)
	}))
	defer frame.Close()
	runChromium(t, browser, "--hide-scrollbars", "--window-size=1280,900", "--screenshot="+path, frame.URL)
	png, err := os.ReadFile(path)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("the screenshot %s is not a PNG: %v", path, err)
	}
}

// page is what a read of the page showed.
type page struct {
	errors string              // the text of #errors
	series map[string][]series // by plot id
	raw    map[string][]point  // every data point, by plot id
}

type series struct {
	name   string
	points []point
}

type point struct{ t, v float64 }

func (p page) points(id string) []point { return p.raw[id] }

func values(pts []point) []float64 {
	vs := make([]float64, len(pts))
	for i, pt := range pts {
		vs[i] = pt.v
	}
	return vs
}

var (
	errorsBox = regexp.MustCompile(`(?s)<pre id="errors"[^>]*>(.*?)</pre>`)
	svgPlot   = regexp.MustCompile(`(?s)<svg class="plot" id="([^"]+)"[^>]*>(.*?)</svg>`)
	seriesG   = regexp.MustCompile(`(?s)<g class="series" data-series="([^"]*)">(.*?)</g>`)
	dataTag   = regexp.MustCompile(`<[a-z]+ [^>]*\bdata-t="([^"]*)" data-v="([^"]*)"`)
)

// parsePage reads the DOM as chromium's --dump-dom serializes it.
func parsePage(dom string) (page, error) {
	m := errorsBox.FindStringSubmatch(dom)
	if m == nil {
		return page{}, fmt.Errorf("the page has no #errors")
	}
	p := page{errors: strings.TrimSpace(m[1]), series: map[string][]series{}, raw: map[string][]point{}}
	for _, svg := range svgPlot.FindAllStringSubmatch(dom, -1) {
		id := svg[1]
		for _, g := range seriesG.FindAllStringSubmatch(svg[2], -1) {
			s := series{name: g[1]}
			for _, d := range dataTag.FindAllStringSubmatch(g[2], -1) {
				tv, errT := strconv.ParseFloat(d[1], 64)
				v, errV := strconv.ParseFloat(d[2], 64)
				if errT != nil || errV != nil {
					return page{}, fmt.Errorf("plot %q, series %q: a data point is not numbers: data-t=%q data-v=%q", id, s.name, d[1], d[2])
				}
				s.points = append(s.points, point{tv, v})
			}
			p.series[id] = append(p.series[id], s)
			p.raw[id] = append(p.raw[id], s.points...)
		}
	}
	return p, nil
}
