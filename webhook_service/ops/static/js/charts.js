// Small SVG charts, drawn here rather than by a library: a gauge (how much of a
// budget is used) and a line chart of per-minute counts. Colours come from CSS
// classes (the page's policy allows no inline styles); each chart has role="img",
// an accessible name saying what it shows, and a <title> per point for hovering.

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

const title = (text) => svg("title", {}, text);

// A half-circle gauge of `used` out of `limit` (null: unknown). Amber past 60%, red
// past 85%.
export function gauge({ label, used, limit, caption }) {
  const known = typeof used === "number" && typeof limit === "number" && limit > 0;
  const share = known ? Math.min(1, Math.max(0, used / limit)) : 0;
  const level = !known ? "unknown" : share > 0.85 ? "high" : share > 0.6 ? "mid" : "low";
  const [cx, cy, r] = [60, 56, 44];
  const point = (fraction) => {
    const angle = Math.PI * (1 - fraction);
    return [cx + r * Math.cos(angle), cy - r * Math.sin(angle)];
  };
  const arc = (to) => {
    const [x0, y0] = point(0);
    const [x1, y1] = point(to);
    return `M ${x0.toFixed(2)} ${y0.toFixed(2)} A ${r} ${r} 0 0 1 ${x1.toFixed(2)} ${y1.toFixed(2)}`;
  };
  const text = known ? `${Math.round(share * 100)}%` : "—";
  const summary = known
    ? `${label}: ${used} of ${limit} used (${text})`
    : `${label}: not known yet`;
  return svg(
    "svg",
    { viewBox: "0 0 120 86", class: `gauge gauge-${level}`, role: "img", "aria-label": summary },
    title(summary),
    svg("path", { d: arc(1), class: "gauge-track", fill: "none", "stroke-width": 10 }),
    share > 0
      ? svg("path", { d: arc(share), class: "gauge-fill", fill: "none", "stroke-width": 10 })
      : null,
    svg("text", { x: cx, y: cy - 4, "text-anchor": "middle", class: "gauge-value" }, text),
    svg(
      "text",
      { x: cx, y: 80, "text-anchor": "middle", class: "gauge-caption" },
      caption || (known ? `${used} / ${limit}` : "no data"),
    ),
  );
}

// Minute buckets from `from` to `to` (ISO times) with the counts of `points`
// ([[minute, value], ...], sparse: a missing minute is 0).
export function minutes(from, to, points) {
  const start = Math.floor(Date.parse(from) / 60000) * 60000;
  const end = Math.floor(Date.parse(to) / 60000) * 60000;
  const values = new Map();
  for (const [minute, value] of points || []) {
    const at = Math.floor(Date.parse(minute) / 60000) * 60000;
    values.set(at, (values.get(at) || 0) + Number(value));
  }
  const out = [];
  for (let at = start; at <= end && out.length < 24 * 60 + 1; at += 60000) {
    out.push([at, values.get(at) || 0]);
  }
  return out;
}

function niceMax(value) {
  if (value <= 4) return 4;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

const hhmm = (ms) => new Date(ms).toTimeString().slice(0, 5);

// A line per series ({name, className, points: [[ms, value], ...]}, the same minutes
// in each), with a y axis from 0 and time along x.
export function lineChart({ label, series, width = 640, height = 200 }) {
  const pad = { left: 40, right: 12, top: 10, bottom: 24 };
  const xs = series.length ? series[0].points.map(([at]) => at) : [];
  const top = niceMax(Math.max(0, ...series.flatMap((s) => s.points.map(([, v]) => v))));
  const x0 = xs[0] || 0;
  const span = Math.max(1, (xs[xs.length - 1] || 0) - x0);
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const x = (at) => pad.left + ((at - x0) / span) * innerW;
  const y = (v) => pad.top + innerH - (v / top) * innerH;
  const totals = series.map((s) => `${s.name} ${s.points.reduce((sum, [, v]) => sum + v, 0)}`);
  const summary = `${label}: ${totals.join(", ") || "no data"} in ${xs.length} minutes`;
  const chart = svg(
    "svg",
    {
      viewBox: `0 0 ${width} ${height}`,
      class: "chart",
      role: "img",
      "aria-label": summary,
      preserveAspectRatio: "xMidYMid meet",
    },
    title(summary),
  );
  for (let i = 0; i <= 4; i += 1) {
    const v = (top / 4) * i;
    chart.append(
      svg("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v), class: "grid-line" }),
      svg(
        "text",
        { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end", class: "axis" },
        String(Math.round(v * 10) / 10),
      ),
    );
  }
  const ticks = Math.min(6, xs.length);
  for (let i = 0; i < ticks; i += 1) {
    const at = xs[Math.round((i * (xs.length - 1)) / Math.max(1, ticks - 1))];
    chart.append(
      svg("text", { x: x(at), y: height - 6, "text-anchor": "middle", class: "axis" }, hhmm(at)),
    );
  }
  for (const s of series) {
    const d = s.points
      .map(([at, v], i) => `${i ? "L" : "M"} ${x(at).toFixed(1)} ${y(v).toFixed(1)}`)
      .join(" ");
    const group = svg(
      "g",
      { class: `series ${s.className}` },
      svg("path", { d, fill: "none", class: "line", "stroke-width": 2 }),
    );
    for (const [at, v] of s.points) {
      if (v > 0)
        group.append(
          svg(
            "circle",
            { cx: x(at), cy: y(v), r: 2.5, class: "dot" },
            title(`${s.name} at ${hhmm(at)}: ${v}`),
          ),
        );
    }
    chart.append(group);
  }
  return chart;
}

// The key to a chart's lines, as an HTML list.
export function legend(series) {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const s of series) {
    const item = document.createElement("li");
    item.className = s.className;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.setAttribute("aria-hidden", "true");
    const total = s.points.reduce((sum, [, v]) => sum + v, 0);
    item.append(swatch, `${s.name} (${total})`);
    list.append(item);
  }
  return list;
}
