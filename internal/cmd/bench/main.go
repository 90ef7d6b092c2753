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
}

var groups = []group{
	{"^BenchmarkStream$", "20000x"},
	{"^BenchmarkEcho$", "5000x"},
	{"^BenchmarkReconnect$", "300x"},
	{"^BenchmarkDeadPeer$", "10x"},
	{"^BenchmarkPublish$", "1000000x"},
	{"^BenchmarkStorm$", "1x"},
	{"^BenchmarkIdle$", "1x"},
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
			cmd.Stderr = os.Stderr
			if *short {
				cmd.Env = append(os.Environ(), "RESOCKET_IDLE_N=200")
			}
			b, err := cmd.Output()
			if err != nil {
				os.Stdout.Write(b)
				return fmt.Errorf("%s: %w", g.pattern, err)
			}
			all.Write(b)
			fmt.Fprintf(os.Stderr, "round %d/%d: %s done\n", r+1, *rounds, g.pattern)
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
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
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
