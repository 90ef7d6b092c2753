// prom.js reads the Prometheus text exposition format (version 0.0.4):
// the samples, their labels, counters summed by a label, and quantiles
// of a histogram's buckets.
"use strict";

const prom = (() => {
  const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/;
  const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?/g;

  function number(s) {
    switch (s) {
      case "+Inf": return Infinity;
      case "-Inf": return -Infinity;
      case "NaN": return NaN;
      default: return Number(s);
    }
  }

  function unescape(s) {
    return s.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
  }

  function labels(s) {
    const out = {};
    for (const m of (s || "").matchAll(LABEL)) out[m[1]] = unescape(m[2]);
    return out;
  }

  // parse returns every sample of text as {name, labels, value}; comment
  // lines (# HELP, # TYPE) and blank lines are skipped.
  function parse(text) {
    const samples = [];
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) continue;
      const m = SAMPLE.exec(line);
      if (!m) throw new Error("metrics: cannot read line: " + line.slice(0, 80));
      samples.push({ name: m[1], labels: labels(m[2]), value: number(m[3]) });
    }
    return samples;
  }

  // sumBy adds up the samples called name by the value of key(labels),
  // whatever their other labels: a Map from that value to the sum.
  function sumBy(samples, name, key) {
    const out = new Map();
    for (const s of samples) {
      if (s.name !== name) continue;
      const k = key(s.labels);
      out.set(k, (out.get(k) || 0) + s.value);
    }
    return out;
  }

  // histogram gathers base_bucket, base_sum and base_count over all label
  // sets into {buckets: [[le, cumulative count]] by le, sum, count}.
  function histogram(samples, base) {
    const byLe = sumBy(samples, base + "_bucket", (l) => number(l.le));
    const total = (suffix) => sumBy(samples, base + suffix, () => "").get("") || 0;
    const buckets = [...byLe.entries()].sort((a, b) => a[0] - b[0]);
    return { buckets, sum: total("_sum"), count: total("_count") };
  }

  // since is what was observed between the histogram then and now.
  function since(now, then) {
    if (!then) return now;
    const before = new Map(then.buckets);
    return {
      buckets: now.buckets.map(([le, n]) => [le, n - (before.get(le) || 0)]),
      sum: now.sum - then.sum,
      count: now.count - then.count,
    };
  }

  // quantile estimates the q-quantile (0 to 1) as Prometheus's
  // histogram_quantile does: linearly within the bucket that holds it.
  // It is NaN for an empty histogram; in the +Inf bucket it is the
  // highest finite bound.
  function quantile(h, q) {
    const b = h.buckets;
    if (b.length === 0 || h.count <= 0) return NaN;
    const rank = q * b[b.length - 1][1];
    let lower = 0, below = 0;
    for (const [le, n] of b) {
      if (n >= rank) {
        if (le === Infinity) return lower;
        return lower + (le - lower) * (n === below ? 0 : (rank - below) / (n - below));
      }
      lower = le;
      below = n;
    }
    return lower;
  }

  return { parse, sumBy, histogram, since, quantile };
})();
