// plot.js draws time series into an inline SVG: grid, axes, a line per
// series, a legend, and one <circle data-t data-v> per data point.
"use strict";

const plot = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 680, H = 280;
  const AREA = { left: 52, right: 480, top: 12, bottom: 252 };

  function el(tag, attrs, parent, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  // niceMax rounds up to 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function label(v) {
    if (v >= 1000) return (v / 1000).toPrecision(3).replace(/\.?0+$/, "") + "k";
    return String(Number(v.toPrecision(3)));
  }

  // frame draws the grid and the axes' labels for values 0..top over the
  // last span milliseconds, and returns the functions mapping to pixels.
  function frame(svg, top, now, span) {
    const x = (t) => AREA.left + ((t - (now - span)) / span) * (AREA.right - AREA.left);
    const y = (v) => AREA.bottom - (v / top) * (AREA.bottom - AREA.top);
    const g = el("g", { class: "frame" }, svg);
    const lead = Math.round(top / Math.pow(10, Math.floor(Math.log10(top))));
    const rows = lead === 2 ? 4 : 5; // steps of 1, 2 or 5 times a power of ten
    for (let i = 0; i <= rows; i++) {
      const v = (top * i) / rows;
      el("line", { x1: AREA.left, x2: AREA.right, y1: y(v), y2: y(v) }, g);
      el("text", { x: AREA.left - 6, y: y(v) + 4, "text-anchor": "end" }, g, label(v));
    }
    const step = 1000 * ([5, 10, 15, 30, 60].find((s) => span / 1000 / s <= 6) || 60);
    for (let ago = 0; ago <= span; ago += step) {
      el("text", { x: x(now - ago), y: H - 8, "text-anchor": "middle" }, g,
        ago === 0 ? "now" : "-" + ago / 1000 + "s");
    }
    return { x, y };
  }

  // line draws one series: a polyline and its points.
  function line(svg, s, color, px) {
    const g = el("g", { class: "series", "data-series": s.name }, svg);
    const xy = s.points.map(([t, v]) => px.x(t).toFixed(1) + "," + px.y(v).toFixed(1));
    el("polyline", { points: xy.join(" "), stroke: color, fill: "none" }, g);
    for (const [t, v] of s.points) {
      el("circle", { class: "pt", "data-t": t, "data-v": Number(v.toPrecision(6)),
        cx: px.x(t).toFixed(1), cy: px.y(v).toFixed(1), r: 1.6, fill: color }, g);
    }
  }

  function legend(svg, series, colors) {
    const g = el("g", { class: "legend" }, svg);
    series.slice(0, 13).forEach((s, i) => {
      const y = AREA.top + 6 + i * 18;
      el("rect", { x: AREA.right + 14, y: y - 8, width: 10, height: 10, fill: colors[i] }, g);
      const last = s.points.length ? label(s.points[s.points.length - 1][1]) : "";
      el("text", { x: AREA.right + 30, y: y + 1 }, g, s.name + "  " + last);
    });
  }

  // draw replaces what svg shows with series, a list of {name, points:
  // [[t ms, v]]}, over the last span milliseconds before now; colors
  // gives each series its color by position.
  function draw(svg, series, colors, now, span) {
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    let top = 0;
    for (const s of series) for (const [, v] of s.points) top = Math.max(top, v);
    const px = frame(svg, niceMax(top), now, span);
    series.forEach((s, i) => line(svg, s, colors[i % colors.length], px));
    legend(svg, series, series.map((_, i) => colors[i % colors.length]));
    if (series.every((s) => s.points.length === 0)) {
      el("text", { x: (AREA.left + AREA.right) / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, svg, "no data yet");
    }
  }

  return { draw };
})();
