// Package bench is the home of resocket's benchmarks, a module of its own
// so that the library's go.mod keeps its two dependencies:
//
//   - this package compares resocket (its Read and its handler) with raw
//     github.com/coder/websocket and raw github.com/gorilla/websocket,
//     against the command server in its own process (built and started by
//     the benchmarks, or the one RESOCKET_BENCH_URL names), so that the
//     client's CPU time (cpu-ns/msg, from getrusage) and allocations are
//     its own;
//   - inprocess measures the client against raw coder/websocket with the
//     server in the same process: streaming, echo, reconnects, a dead peer,
//     idle clients and a reconnect storm;
//   - command is the command protocol, written once, that the benchmark
//     clients send and the server answers;
//   - server is the command server in its own process;
//   - table runs every benchmark in alternating rounds and prints the table
//     of ratios in BENCHMARKS.md.
//
// From this directory:
//
//	go test -run '^$' -bench . -benchmem   # the comparison alone
//	go run ./table                         # 5 rounds of everything, then the table
//	go run ./table -rounds 1 -short        # every benchmark once, tiny benchtimes
package bench
