package chaos_test

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/resocket/resocket/internal/chaos"
	"github.com/resocket/resocket/resockettest"
)

func TestMain(m *testing.M) {
	if url := os.Getenv(suspendChildEnv); url != "" { // this binary, run by TestProcessSuspend
		suspendChild(url)
		return
	}
	goleak.VerifyTestMain(m)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// TestChaosSoak injects faults from every row of the table into many
// concurrent clients and checks that nothing crashed, hung, leaked,
// looped or broke message order. The short version always runs; the long
// one is
//
//	RESOCKET_SOAK=1 go test ./internal/chaos -run TestChaosSoak -v -timeout 30m
//
// (100 clients, 10,000 faults; RESOCKET_SOAK_CLIENTS and
// RESOCKET_SOAK_FAULTS change the size).
func TestChaosSoak(t *testing.T) {
	clients, faults, timeout := 20, 400, 50*time.Second
	if os.Getenv("RESOCKET_SOAK") != "" {
		clients, faults, timeout = envInt("RESOCKET_SOAK_CLIENTS", 100), envInt("RESOCKET_SOAK_FAULTS", 10000), 25*time.Minute
	}
	// A round of the same size first: the runtime keeps a goroutine
	// descriptor for every goroutine of its peak, forever, and the HTTP
	// transport sets itself up once; neither is the client's growth.
	soak(t, true, clients, faults, timeout)
	before := chaos.HeapNow()
	soak(t, false, clients, faults, timeout)
	soak(t, true, clients, faults, timeout)
	after := chaos.HeapNow()
	growth := float64(after)/float64(before) - 1
	t.Logf("heap before %d bytes, after both runs with everything closed %d bytes (%+.1f%%)", before, after, 100*growth)
	if growth > 0.10 {
		t.Errorf("heap grew %.1f%% over the runs", 100*growth)
	}
	// Goroutines left after every client closed: goleak in TestMain.
}

func soak(t *testing.T, viaProxy bool, clients, faults int, timeout time.Duration) {
	srv, err := resockettest.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	url := ""
	if viaProxy {
		proxy, err := resockettest.StartProxy(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer proxy.Close()
		proxy.SetDefault(resockettest.Settings{Latency: 2 * time.Millisecond})
		url = proxy.URL
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rep, err := chaos.Run(context.Background(), chaos.Config{
		Clients: clients, Faults: faults, Timeout: timeout, Seed: seed, Server: srv, URL: url, Progress: progress(),
	})
	if rep != nil {
		t.Logf("\n%s", rep)
	}
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case rep.FaultsSeen+rep.FaultsAbandoned < faults:
		t.Errorf("%d of %d faults seen", rep.FaultsSeen, faults)
	case len(rep.Mismatches) > 0:
		t.Errorf("%d verdicts did not match the table", len(rep.Mismatches))
	case rep.IllegalTransitions != 0:
		t.Errorf("%d illegal transitions", rep.IllegalTransitions)
	case rep.Panics != 0:
		t.Errorf("%d panics", rep.Panics)
	case rep.OrderViolations != 0:
		t.Errorf("%d messages out of order or twice", rep.OrderViolations)
	case rep.PhantomEchoes != 0:
		t.Errorf("%d echoes of writes that had failed", rep.PhantomEchoes)
	case rep.WriteErrorsUnnamed != 0:
		t.Errorf("%d write errors said nothing", rep.WriteErrorsUnnamed)
	case rep.RepliesMisrouted != 0:
		t.Errorf("%d replies to a server ping reached a socket other than the ping's", rep.RepliesMisrouted)
	case rep.DoubleVerdicts != 0 || rep.StaleActed != 0:
		t.Errorf("%d sockets judged twice, %d Reconnects on ended sockets acted", rep.DoubleVerdicts, rep.StaleActed)
	case rep.PingsAnswered == 0 || rep.StaleReconnects == 0 || rep.SlowClients == 0:
		t.Errorf("pings answered %d, stale Reconnects %d, slow clients %d: the socket-scoped acts were not exercised",
			rep.PingsAnswered, rep.StaleReconnects, rep.SlowClients)
	case rep.Reconnects == 0 || rep.FatalStops == 0:
		t.Errorf("reconnects %d, fatal stops %d: the chaos did not reach every kind of verdict", rep.Reconnects, rep.FatalStops)
	}
}

// progress is where a long soak says how far it got: RESOCKET_SOAK_PROGRESS
// names a file, else nothing.
func progress() io.Writer {
	name := os.Getenv("RESOCKET_SOAK_PROGRESS")
	if name == "" {
		return nil
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil
	}
	return f
}
