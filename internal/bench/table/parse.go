package main

import (
	"bufio"
	"bytes"
	"sort"
	"strconv"
	"strings"
)

// results holds, per benchmark name (without the -N suffix) and unit, the
// values of every round.
type results map[string]map[string][]float64

// parse reads go test -bench output (with the comparison's names as
// Compare...).
func parse(out []byte) results {
	m := results{}
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

// get returns the median over the rounds of name's unit, 0 when absent.
func (m results) get(name, unit string) float64 {
	return median(m[name][unit])
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
