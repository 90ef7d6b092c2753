// Table runs every benchmark in alternating rounds (so that drift on a
// shared machine hits raw coder/websocket and resocket alike), keeps the
// raw output for benchstat, and prints one table of ratios against the
// targets. From internal/bench:
//
//	go run ./table                        # 5 rounds
//	go run ./table -rounds 1 -short       # what .ci/run does
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// The packages whose benchmarks make the table.
const (
	// comparePkg: raw coder/websocket, raw gorilla/websocket, resocket's
	// Read and its handler, against the command server in its own process.
	// Its names are reported as Compare... to keep them apart from
	// inprocessPkg's.
	comparePkg = "github.com/resocket/resocket/internal/bench"
	// inprocessPkg: raw coder/websocket and resocket with the server in
	// the same process.
	inprocessPkg = "github.com/resocket/resocket/internal/bench/inprocess"
	// libraryPkg: BenchmarkPublish, beside the unexported event delivery
	// it measures.
	libraryPkg = "github.com/resocket/resocket"
)

type group struct {
	pattern, benchtime, pkg string
}

var groups = []group{
	{"^BenchmarkStream$", "20000x", inprocessPkg},
	{"^BenchmarkEcho$", "5000x", inprocessPkg},
	{"^BenchmarkStream$", "20000x", comparePkg},
	{"^BenchmarkEcho$", "5000x", comparePkg},
	{"^BenchmarkReconnect$", "300x", inprocessPkg},
	{"^BenchmarkDeadPeer$", "10x", inprocessPkg},
	{"^BenchmarkPublish$", "1000000x", libraryPkg},
	{"^BenchmarkStorm$", "1x", inprocessPkg},
	{"^BenchmarkIdle$", "1x", inprocessPkg},
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
}

func run() error {
	rounds := flag.Int("rounds", 5, "rounds of every benchmark")
	short := flag.Bool("short", false, "tiny benchtimes and 200 idle clients: only checks that the benchmarks run")
	out := flag.String("o", "bench.out", "where to keep the raw output (benchstat reads it)")
	flag.Parse()

	dirs, err := packageDirs(comparePkg, inprocessPkg, libraryPkg)
	if err != nil {
		return err
	}
	var all bytes.Buffer
	for r := 0; r < *rounds; r++ {
		for i := range groups {
			g := groups[(i+r)%len(groups)] // rotate, so that no group always runs first
			b, err := runGroup(g, dirs[g.pkg], *short)
			if err != nil {
				return err
			}
			all.Write(b)
			fmt.Fprintf(os.Stderr, "round %d/%d: %s %s done\n", r+1, *rounds, g.pkg, g.pattern)
		}
	}
	if err := os.WriteFile(*out, all.Bytes(), 0o644); err != nil {
		return err
	}
	report(parse(all.Bytes()))
	fmt.Printf("\nraw output: %s (benchstat %s)\n", *out, *out)
	return nil
}

// runGroup runs one group's benchmarks once, in the package's directory
// (so that the library's own benchmark runs in the library's module).
func runGroup(g group, dir string, short bool) ([]byte, error) {
	bt := g.benchtime
	if short {
		bt = "3x"
	}
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", g.pattern, "-benchtime", bt, "-benchmem", "-count", "1", ".")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	if short {
		cmd.Env = append(os.Environ(), "RESOCKET_IDLE_N=200")
	}
	b, err := cmd.Output()
	if err != nil {
		os.Stdout.Write(b)
		return nil, fmt.Errorf("%s %s: %w", g.pkg, g.pattern, err)
	}
	if g.pkg == comparePkg {
		b = bytes.ReplaceAll(b, []byte("\nBenchmark"), []byte("\nCompare"))
	}
	return b, nil
}

// packageDirs returns each package's directory, as the go command finds
// it from here (the library through the module's replace directive).
func packageDirs(pkgs ...string) (map[string]string, error) {
	out, err := exec.Command("go", append([]string{"list", "-f", "{{.Dir}}"}, pkgs...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %w (run from internal/bench)", strings.Join(pkgs, " "), err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(pkgs) {
		return nil, fmt.Errorf("go list: %d directories for %d packages", len(lines), len(pkgs))
	}
	dirs := map[string]string{}
	for i, p := range pkgs {
		dirs[p] = lines[i]
	}
	return dirs, nil
}
