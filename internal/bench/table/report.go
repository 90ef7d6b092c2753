package main

import (
	"fmt"
	"strconv"
)

var sizes = []string{"16", "1024", "65536"}

// report prints the table: one row per measurement, raw beside resocket,
// their ratio, the target and whether the median met it.
func report(m results) {
	fmt.Printf("%-34s %14s %14s %8s %-22s %s\n", "benchmark", "raw", "resocket", "ratio", "target", "met")
	inprocessRows(m)
	compareRows(m)
	reconnectRows(m)
	deadPeerRows(m)
	idleRows(m)
	stormRows(m)
	publishRows(m)
}

func row(what string, raw, res, ratio float64, target string, ok bool) {
	met := "yes"
	if !ok {
		met = "NO"
	}
	fmt.Printf("%-34s %14.4g %14.4g %8.3f %-22s %s\n", what, raw, res, ratio, target, met)
}

// inprocessRows: the Read path against raw with the server in process.
func inprocessRows(m results) {
	for _, kind := range []string{"Stream", "Echo"} {
		for _, size := range sizes {
			base := "Benchmark" + kind + "/size=" + size + "/impl="
			raw, res := m.get(base+"raw", "ns/op"), m.get(base+"resocket", "ns/op")
			if raw == 0 || res == 0 {
				continue
			}
			if kind == "Stream" {
				row(kind+" "+size+" B throughput", 1, raw/res, raw/res, ">= 0.95", raw/res >= 0.95)
			} else {
				row(kind+" "+size+" B round trip ns", raw, res, res/raw, "<= 1.2", res/raw <= 1.2)
			}
			ra, rs := m.get(base+"raw", "allocs/op"), m.get(base+"resocket", "allocs/op")
			row(kind+" "+size+" B allocs/msg", ra, rs, rs-ra, "<= raw+1", rs <= ra+1)
		}
	}
}

func reconnectRows(m results) {
	for _, by := range []string{"drop", "close"} {
		base := "BenchmarkReconnect/by=" + by + "/impl="
		raw, res := m.get(base+"raw", "ns/op"), m.get(base+"resocket", "ns/op")
		if raw > 0 && res > 0 {
			row("Reconnect ("+by+") median us", raw/1000, res/1000, res/raw, "<= 1.3", res/raw <= 1.3)
		}
	}
}

func deadPeerRows(m results) {
	if v := m.get("BenchmarkDeadPeer", "x(I+T)"); v > 0 {
		row("Dead peer noticed, x(I+T)", 0, v, v, "<= 1.1", v <= 1.1)
		w := m.get("BenchmarkDeadPeer", "worst-x(I+T)")
		row("Dead peer worst, x(I+T)", 0, w, w, "(info)", true)
	}
}

func idleRows(m results) {
	const raw, res = "BenchmarkIdle/impl=raw", "BenchmarkIdle/impl=resocket"
	if g := m.get(raw, "goroutines/client"); g > 0 {
		gr := m.get(res, "goroutines/client")
		row("Idle goroutines/client", g, gr, gr-g, "<= raw+2", gr <= g+2)
		hr, hs := m.get(raw, "heap-B/client"), m.get(res, "heap-B/client")
		row("Idle heap B/client", hr, hs, hs/hr, "<= 1.5", hs/hr <= 1.5)
	}
}

func stormRows(m results) {
	if p := m.get("BenchmarkStorm", "peak/uniform"); p > 0 {
		row("Storm peak per 100ms / uniform", 0, m.get("BenchmarkStorm", "peak/100ms"), p, "<= 3", p <= 3)
		row("Storm all open again, ms", 0, m.get("BenchmarkStorm", "all-open-ms"), 0, "(info)", true)
	}
}

func publishRows(m results) {
	for _, n := range []string{"1", "8"} {
		name := "BenchmarkPublish/subscribers=" + n
		if ns := m.get(name, "ns/op"); ns > 0 {
			allocs := m.get(name, "allocs/op")
			ok, target := true, "(info)"
			if n == "1" { // every client's own subscription, never read
				ok, target = ns < 200 && allocs == 0, "< 200 ns, 0 allocs"
			}
			row("Publish, "+n+" subscribers ns (allocs "+strconv.Itoa(int(allocs))+")", 0, ns, 0, target, ok)
		}
	}
}
