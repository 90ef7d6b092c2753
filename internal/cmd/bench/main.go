// Bench runs every benchmark of the package in alternating rounds (so that
// drift on a shared machine hits raw coder/websocket and resocket alike),
// keeps the raw output for benchstat, and prints one table of ratios
// against the targets.
//
//	go run ./internal/cmd/bench             # 5 rounds
//	go run ./internal/cmd/bench -rounds 1 -short   # what .ci/run does
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
)

type group struct {
	pattern, benchtime string
	dir                string // the module to run in; "" is the library's
}

// compareDir is the comparison module: raw coder/websocket, raw
// gorilla/websocket, resocket's Read and its handler, against a server in
// its own process.
const compareDir = "internal/bench"

var groups = []group{
	{"^BenchmarkStream$", "20000x", ""},
	{"^BenchmarkEcho$", "5000x", ""},
	{"^BenchmarkStream$", "20000x", compareDir},
	{"^BenchmarkEcho$", "5000x", compareDir},
	{"^BenchmarkReconnect$", "300x", ""},
	{"^BenchmarkDeadPeer$", "10x", ""},
	{"^BenchmarkPublish$", "1000000x", ""},
	{"^BenchmarkStorm$", "1x", ""},
	{"^BenchmarkIdle$", "1x", ""},
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	rounds := flag.Int("rounds", 5, "rounds of every benchmark")
	short := flag.Bool("short", false, "tiny benchtimes and 200 idle clients: only checks that the benchmarks run")
	out := flag.String("o", "bench.out", "where to keep the raw output (benchstat reads it)")
	flag.Parse()

	var all bytes.Buffer
	for r := 0; r < *rounds; r++ {
		for i := range groups {
			g := groups[(i+r)%len(groups)] // rotate, so that no group always runs first
			bt := g.benchtime
			if *short {
				bt = "3x"
			}
			cmd := exec.Command("go", "test", "-run", "^$", "-bench", g.pattern, "-benchtime", bt, "-benchmem", "-count", "1", ".")
			cmd.Dir = g.dir
			cmd.Stderr = os.Stderr
			if *short {
				cmd.Env = append(os.Environ(), "RESOCKET_IDLE_N=200")
			}
			b, err := cmd.Output()
			if err != nil {
				os.Stdout.Write(b)
				return fmt.Errorf("%s: %w", g.pattern, err)
			}
			if g.dir != "" { // keep the two modules' names apart
				b = bytes.ReplaceAll(b, []byte("\nBenchmark"), []byte("\nCompare"))
			}
			all.Write(b)
			fmt.Fprintf(os.Stderr, "round %d/%d: %s %s done\n", r+1, *rounds, g.dir, g.pattern)
		}
	}
	if err := os.WriteFile(*out, all.Bytes(), 0o644); err != nil {
		return err
	}
	m := parse(all.Bytes())
	report(m)
	fmt.Printf("\nraw output: %s (benchstat %s)\n", *out, *out)
	return nil
}

// parse returns, per benchmark name (without the -N suffix) and unit, the
// values of every round.
func parse(out []byte) map[string]map[string][]float64 {
	m := map[string]map[string][]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !(strings.HasPrefix(f[0], "Benchmark") || strings.HasPrefix(f[0], "Compare")) {
			continue
		}
		name := f[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			name = name[:i]
		}
		if m[name] == nil {
			m[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err == nil {
				m[name][f[i+1]] = append(m[name][f[i+1]], v)
			}
		}
	}
	return m
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func report(m map[string]map[string][]float64) {
	get := func(name, unit string) float64 { return median(m[name][unit]) }
	fmt.Printf("%-34s %14s %14s %8s %-22s %s\n", "benchmark", "raw", "resocket", "ratio", "target", "met")
	row := func(what string, raw, res, ratio float64, target string, ok bool) {
		met := "yes"
		if !ok {
			met = "NO"
		}
		fmt.Printf("%-34s %14.4g %14.4g %8.3f %-22s %s\n", what, raw, res, ratio, target, met)
	}
	for _, kind := range []string{"Stream", "Echo"} {
		for _, size := range []string{"16", "1024", "65536"} {
			base := "Benchmark" + kind + "/size=" + size + "/impl="
			raw, res := get(base+"raw", "ns/op"), get(base+"resocket", "ns/op")
			if raw == 0 || res == 0 {
				continue
			}
			if kind == "Stream" {
				row(kind+" "+size+" B throughput", 1, raw/res, raw/res, ">= 0.95", raw/res >= 0.95)
			} else {
				row(kind+" "+size+" B round trip ns", raw, res, res/raw, "<= 1.2", res/raw <= 1.2)
			}
			ra, rs := get(base+"raw", "allocs/op"), get(base+"resocket", "allocs/op")
			row(kind+" "+size+" B allocs/msg", ra, rs, rs-ra, "<= raw+1", rs <= ra+1)
		}
	}
	compare(get, row)
	for _, by := range []string{"drop", "close"} {
		base := "BenchmarkReconnect/by=" + by + "/impl="
		raw, res := get(base+"raw", "ns/op"), get(base+"resocket", "ns/op")
		if raw > 0 && res > 0 {
			row("Reconnect ("+by+") median us", raw/1000, res/1000, res/raw, "<= 1.3", res/raw <= 1.3)
		}
	}
	if v := get("BenchmarkDeadPeer", "x(I+T)"); v > 0 {
		row("Dead peer noticed, x(I+T)", 0, v, v, "<= 1.1", v <= 1.1)
		w := get("BenchmarkDeadPeer", "worst-x(I+T)")
		row("Dead peer worst, x(I+T)", 0, w, w, "(info)", true)
	}
	if g := get("BenchmarkIdle/impl=raw", "goroutines/client"); g > 0 {
		gr := get("BenchmarkIdle/impl=resocket", "goroutines/client")
		row("Idle goroutines/client", g, gr, gr-g, "<= raw+2", gr <= g+2)
		hr, hs := get("BenchmarkIdle/impl=raw", "heap-B/client"), get("BenchmarkIdle/impl=resocket", "heap-B/client")
		row("Idle heap B/client", hr, hs, hs/hr, "<= 1.5", hs/hr <= 1.5)
	}
	if p := get("BenchmarkStorm", "peak/uniform"); p > 0 {
		row("Storm peak per 100ms / uniform", 0, get("BenchmarkStorm", "peak/100ms"), p, "<= 3", p <= 3)
		row("Storm all open again, ms", 0, get("BenchmarkStorm", "all-open-ms"), 0, "(info)", true)
	}
	for _, n := range []string{"1", "8"} {
		name := "BenchmarkPublish/subscribers=" + n
		if ns := get(name, "ns/op"); ns > 0 {
			allocs := get(name, "allocs/op")
			ok, target := true, "(info)"
			if n == "1" { // every client's own subscription, never read
				ok, target = ns < 200 && allocs == 0, "< 200 ns, 0 allocs"
			}
			row("Publish, "+n+" subscribers ns (allocs "+strconv.Itoa(int(allocs))+")", 0, ns, 0, target, ok)
		}
	}
}

// compare reports the comparison module: each implementation against raw
// coder/websocket, with the server in its own process.
func compare(get func(name, unit string) float64, row func(string, float64, float64, float64, string, bool)) {
	for _, size := range []string{"16", "1024", "65536"} {
		echo := "CompareEcho/size=" + size + "/impl="
		stream := "CompareStream/size=" + size + "/impl="
		raw := get(echo+"coder", "ns/op")
		if raw == 0 {
			return
		}
		for _, impl := range []string{"resocket-handler", "resocket-read", "gorilla"} {
			target, cpuTarget, streamTarget := "(info)", "(info)", "(info)"
			limit, cpuLimit, streamLimit := 1e9, 1e9, 0.0
			switch {
			case impl == "resocket-handler":
				target, cpuTarget, streamTarget, limit, cpuLimit, streamLimit = "<= 1.05", "<= 1.05", ">= 1.0", 1.05, 1.05, 1.0
			case impl == "resocket-read" && size != "65536":
				target, cpuTarget, streamTarget, limit, cpuLimit, streamLimit = "<= 1.3", "<= 1.2", ">= 0.95", 1.3, 1.2, 0.95
			case impl == "resocket-read":
				cpuTarget, streamTarget, cpuLimit, streamLimit = "<= 1.2", ">= 0.95", 1.2, 0.95
			}
			res := get(echo+impl, "ns/op")
			row(impl+" echo "+size+" B ns", raw, res, res/raw, target, res/raw <= limit)
			rc, sc := get(echo+"coder", "cpu-ns/msg"), get(echo+impl, "cpu-ns/msg")
			row(impl+" echo "+size+" B cpu-ns/msg", rc, sc, sc/rc, cpuTarget, sc/rc <= cpuLimit)
			rs, ss := get(stream+"coder", "ns/op"), get(stream+impl, "ns/op")
			row(impl+" stream "+size+" B throughput", 1, rs/ss, rs/ss, streamTarget, rs/ss >= streamLimit)
			ra, sa := get(stream+"coder", "allocs/op"), get(stream+impl, "allocs/op")
			allocTarget, allocOK := "(info)", true
			if impl == "resocket-handler" {
				allocTarget, allocOK = "== 0", sa == 0
			}
			row(impl+" stream "+size+" B allocs/msg", ra, sa, sa-ra, allocTarget, allocOK)
		}
	}
}
