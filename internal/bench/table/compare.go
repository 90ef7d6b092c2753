package main

// compareRows reports the comparison package: each implementation against
// raw coder/websocket, with the server in its own process.
func compareRows(m results) {
	for _, size := range sizes {
		if m.get("CompareEcho/size="+size+"/impl=coder", "ns/op") == 0 {
			return
		}
		for _, impl := range []string{"resocket-handler", "resocket-read", "gorilla"} {
			compareImpl(m, impl, size)
		}
		otelRows(m, size)
	}
}

// otelRows compares the handler instrumented with otelresocket with the
// handler alone, in the same round.
func otelRows(m results, size string) {
	echo := "CompareEcho/size=" + size + "/impl="
	stream := "CompareStream/size=" + size + "/impl="
	off, on := m.get(echo+"resocket-handler", "ns/op"), m.get(echo+"resocket-handler-otel", "ns/op")
	row("otel on/off echo "+size+" B ns", off, on, on/off, "<= 1.05", on > 0 && on/off <= 1.05)
	off, on = m.get(stream+"resocket-handler", "ns/op"), m.get(stream+"resocket-handler-otel", "ns/op")
	row("otel on/off stream "+size+" B throughput", 1, off/on, off/on, ">= 0.95", on > 0 && off/on >= 0.95)
	off, on = m.get(stream+"resocket-handler", "allocs/op"), m.get(stream+"resocket-handler-otel", "allocs/op")
	row("otel on/off stream "+size+" B allocs/msg", off, on, on-off, "== 0", on == 0)
}

// targets are one implementation's targets at one size; "(info)" rows
// have no limit.
type targets struct {
	echo, cpu, stream string
	echoLimit         float64 // ratio to raw, at most
	cpuLimit          float64 // ratio to raw, at most
	streamLimit       float64 // throughput ratio to raw, at least
}

func targetsFor(impl, size string) targets {
	switch {
	case impl == "resocket-handler":
		return targets{"<= 1.05", "<= 1.05", ">= 1.0", 1.05, 1.05, 1.0}
	case impl == "resocket-read" && size != "65536":
		return targets{"<= 1.3", "<= 1.2", ">= 0.95", 1.3, 1.2, 0.95}
	case impl == "resocket-read":
		return targets{"(info)", "<= 1.2", ">= 0.95", 1e9, 1.2, 0.95}
	}
	return targets{"(info)", "(info)", "(info)", 1e9, 1e9, 0}
}

func compareImpl(m results, impl, size string) {
	echo := "CompareEcho/size=" + size + "/impl="
	stream := "CompareStream/size=" + size + "/impl="
	t := targetsFor(impl, size)
	raw, res := m.get(echo+"coder", "ns/op"), m.get(echo+impl, "ns/op")
	row(impl+" echo "+size+" B ns", raw, res, res/raw, t.echo, res/raw <= t.echoLimit)
	rc, sc := m.get(echo+"coder", "cpu-ns/msg"), m.get(echo+impl, "cpu-ns/msg")
	row(impl+" echo "+size+" B cpu-ns/msg", rc, sc, sc/rc, t.cpu, sc/rc <= t.cpuLimit)
	rs, ss := m.get(stream+"coder", "ns/op"), m.get(stream+impl, "ns/op")
	row(impl+" stream "+size+" B throughput", 1, rs/ss, rs/ss, t.stream, rs/ss >= t.streamLimit)
	ra, sa := m.get(stream+"coder", "allocs/op"), m.get(stream+impl, "allocs/op")
	allocTarget, allocOK := "(info)", true
	if impl == "resocket-handler" {
		allocTarget, allocOK = "== 0", sa == 0
	}
	row(impl+" stream "+size+" B allocs/msg", ra, sa, sa-ra, allocTarget, allocOK)
}
