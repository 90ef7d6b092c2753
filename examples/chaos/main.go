// Chaos runs many clients against a local server that injects a random
// fault from the classification table on every connection (close codes,
// upgrade statuses with and without Retry-After, TCP resets, silent peers,
// slow upgrades), then prints what the clients did.
//
//	go run ./examples/chaos
//	go run ./examples/chaos -clients 100 -faults 10000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/resocket/resocket/internal/chaos"
	"github.com/resocket/resocket/resockettest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func run() error {
	clients := flag.Int("clients", 20, "clients connected at once")
	faults := flag.Int("faults", 300, "faults to inject")
	timeout := flag.Duration("timeout", time.Minute, "give up after this long")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed")
	flag.Parse()

	srv, err := resockettest.Start("")
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("seed %d: %d clients, %d faults against %s\n", *seed, *clients, *faults, srv.URL)
	rep, err := chaos.Run(context.Background(), chaos.Config{
		Clients: *clients, Faults: *faults, Timeout: *timeout, Seed: *seed, Server: srv, Progress: os.Stdout,
	})
	if rep != nil {
		fmt.Print(rep)
	}
	if err != nil {
		return err
	}
	if n := len(rep.Mismatches) + int(rep.IllegalTransitions) + int(rep.Panics) + int(rep.OrderViolations) + int(rep.PhantomEchoes); n > 0 {
		return errors.New("the clients did not do what the table says")
	}
	return nil
}
