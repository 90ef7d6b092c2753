// Server is the benchmarks' command server (package command) in a process
// of its own, so that a benchmark measures its client's CPU time,
// allocations and heap alone. It prints its URL on the first line of its
// output and serves until interrupted, or until its standard input ends
// with -exit-on-eof (how the comparison benchmarks stop the server they
// start):
//
//	go run ./server -addr 127.0.0.1:9001
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/resocket/resocket/internal/bench/command"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on (port 0: any free port)")
	exitOnEOF := flag.Bool("exit-on-eof", false, "exit when standard input ends: a parent process stops the server by closing it")
	flag.Parse()
	srv, err := command.Start(*addr)
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Println(srv.URL)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	if *exitOnEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			stop <- syscall.SIGTERM
		}()
	}
	<-stop
	return nil
}
