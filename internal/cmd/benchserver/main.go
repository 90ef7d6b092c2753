// Benchserver runs the benchmark's command server in its own process, so
// that BenchmarkIdle can count the client side alone:
//
//	go run ./internal/cmd/benchserver -addr 127.0.0.1:9001 &
//	RESOCKET_IDLE_URL=ws://127.0.0.1:9001/ RESOCKET_IDLE_N=10000 go test -run '^$' -bench Idle -benchtime 1x .
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"

	"github.com/resocket/resocket/resockettest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9001", "loopback address to listen on")
	flag.Parse()
	srv, err := resockettest.Start(*addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchserver:", err)
		os.Exit(1)
	}
	defer srv.Close()
	// Idle clients: read until they leave, answering pings.
	srv.SetDefault(resockettest.Script{})
	fmt.Println("listening on", srv.URL)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt)
	<-stop
}
