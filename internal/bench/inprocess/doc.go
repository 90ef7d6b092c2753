// Package inprocess measures resocket against raw github.com/coder/websocket
// with the command server (package command) in the same process, whose
// goroutines share the machine's cores with the client's: streaming, echo
// round trips, reconnects after a drop, noticing a dead peer, the
// footprint of idle clients and a reconnect storm. Each benchmark has a
// raw twin on the same server where one makes sense; ../table runs them
// in alternating rounds and prints the ratios.
//
// BenchmarkIdle counts the client side alone against a server in its own
// process when RESOCKET_IDLE_URL names one (see ../server), and connects
// RESOCKET_IDLE_N clients (5,000 when unset).
package inprocess
