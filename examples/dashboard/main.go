// Dashboard runs many resocket clients against a local server that drops,
// refuses and silences their sockets at random, instruments them with
// otelresocket, exports the metrics for Prometheus on /metrics, and serves
// a page at / that plots them live: clients per state, drops by cause,
// reconnect time and heartbeat round trip. The page is embedded and needs
// no network.
//
//	cd examples/dashboard && go run .
//	go run . -clients 100 -for 0 -addr 127.0.0.1:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/resocket/resocket/otelresocket"
	"github.com/resocket/resocket/resockettest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	addr     string        // where the page and /metrics are served: loopback only
	clients  int           // clients connected at once
	duration time.Duration // how long to run; 0 until interrupted
	seed     uint64        // the faults' random draw
}

func run() error {
	var cfg config
	flag.StringVar(&cfg.addr, "addr", "127.0.0.1:0", "serve the page and /metrics on this loopback address (a free port by default)")
	flag.IntVar(&cfg.clients, "clients", 40, "clients connected at once")
	flag.DurationVar(&cfg.duration, "for", time.Minute, "run this long; 0 runs until interrupted")
	flag.Uint64Var(&cfg.seed, "seed", uint64(time.Now().UnixNano()), "random seed of the faults")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return dashboard(ctx, cfg, func(url string) {
		fmt.Printf("dashboard: open %s (metrics at %smetrics)\n", url, url)
	})
}

// dashboard runs the server, the clients and the page until ctx ends or
// cfg.duration has passed, calling ready with the page's URL once it is
// served.
func dashboard(ctx context.Context, cfg config, ready func(url string)) error {
	ln, err := listenLoopback(cfg.addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	mp, metrics, err := newMetrics()
	if err != nil {
		return err
	}
	defer mp.Shutdown(context.Background())
	in, err := otelresocket.New(otelresocket.WithMeterProvider(mp))
	if err != nil {
		return err
	}
	srv, err := resockettest.Start("")
	if err != nil {
		return err
	}
	defer srv.Close()
	srv.SetRecording(false) // a long run must not grow with its connections
	srv.SetPlanner(newPlanner(cfg.seed).plan)

	page := &http.Server{Handler: routes(metrics), ReadHeaderTimeout: 10 * time.Second}
	go page.Serve(ln)
	defer page.Close()
	ready(fmt.Sprintf("http://%s/", ln.Addr()))

	if cfg.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	(&fleet{url: srv.URL, in: in}).run(ctx, cfg.clients)
	return nil
}

// listenLoopback listens on addr, which must be a loopback address: the
// page shows what the clients do and is for this machine only.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, errors.New("-addr must be a loopback address (127.0.0.1:PORT, [::1]:PORT or localhost:PORT)")
	}
	return net.Listen("tcp", addr)
}
