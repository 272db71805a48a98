// A bar chart of a time series ([{bucket, count, burst}]) as SVG, plus the same data as a table for screen
// readers. Buckets the API leaves out (no documents) are drawn as empty days or hours, so the axis is time;
// burst buckets (the API's `burst`: the trend lifecycle's rule, read at each bucket's end) are marked.

import { h, formatDate } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

// Every bucket from the first to the last, those without documents as zeros (at most `limit`: a longer
// span is drawn as given).
export function dense(series, stepMs, limit = 2000) {
  if (series.length < 2) return series;
  const first = Date.parse(series[0].bucket);
  const span = Math.round((Date.parse(series[series.length - 1].bucket) - first) / stepMs) + 1;
  if (!(span > series.length) || span > limit) return series;
  const byTime = new Map(series.map((p) => [Date.parse(p.bucket), p]));
  return Array.from({ length: span }, (_, i) => byTime.get(first + i * stepMs) || { bucket: new Date(first + i * stepMs).toISOString(), count: 0, burst: false });
}

export function seriesChart(given, { title, lang, hourly = false }) {
  const series = dense(given, hourly ? 3600e3 : 86400e3);
  const width = 760;
  const height = 220;
  const pad = { top: 12, right: 12, bottom: 28, left: 40 };
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const max = Math.max(1, ...series.map((p) => p.count));
  const marked = new Set(series.map((p, i) => (p.burst ? i : -1)).filter((i) => i >= 0));
  const label = (p) => (hourly ? new Date(p.bucket).toISOString().slice(0, 13).replace("T", " ") + "h" : formatDate(p.bucket, lang));
  const svg = s("svg", {
    class: "chart",
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": `${title}: ${series.length} points, peak ${max}`,
    "data-points": series.length,
    "data-bursts": marked.size,
  });
  svg.append(s("line", { class: "axis", x1: pad.left, y1: pad.top + innerH, x2: pad.left + innerW, y2: pad.top + innerH }));
  for (const tick of [0, Math.ceil(max / 2), max]) {
    const y = pad.top + innerH - (tick / max) * innerH;
    svg.append(s("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" }, tick));
  }
  const step = series.length ? innerW / series.length : innerW;
  series.forEach((p, i) => {
    const barH = (p.count / max) * innerH;
    const rect = s("rect", {
      class: marked.has(i) ? "burst" : "bar-rect",
      x: pad.left + i * step + step * 0.1,
      y: pad.top + innerH - barH,
      width: Math.max(1, step * 0.8),
      height: barH,
    });
    rect.append(s("title", {}, `${label(p)}: ${p.count}`));
    svg.append(rect);
  });
  const every = Math.max(1, Math.ceil(series.length / 6));
  series.forEach((p, i) => {
    if (i % every) return;
    svg.append(s("text", { x: pad.left + i * step + step / 2, y: height - 8, "text-anchor": "middle" }, label(p)));
  });
  const table = h(
    "table",
    { class: "visually-hidden" },
    h("caption", {}, title),
    h("tbody", {}, series.map((p, i) => h("tr", {}, h("th", { scope: "row" }, label(p)), h("td", {}, p.count, marked.has(i) ? " (burst)" : "")))),
  );
  return h("figure", { class: "chart-figure" }, svg, table);
}
