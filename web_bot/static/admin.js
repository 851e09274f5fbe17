// The operator's page (/admin): the server's own metrics over time, drawn with uPlot (vendored under
// static/vendor/, no CDN). It asks GET api/admin/metrics again after every sample; the words come from
// static/i18n/, and every name the server sends (an error code, an instance id, a model) is written as text.
"use strict";

import { friendlyError } from "./errors.js";
import { request } from "./api.js";
import { formatDate, formatNumber, onLanguageChange, startLanguage, t } from "./i18n.js";
import uPlot from "./vendor/uplot-1.6.32/uPlot.esm.js";

const $ = (id) => document.getElementById(id);
const ui = {
  state: $("admin-state"),
  title: $("admin-title"),
  back: $("back"),
  windowLabel: $("window-label"),
  quantileLabel: $("quantile-label"),
  charts: $("charts"),
  summary: $("summary"),
  window: $("window"),
  quantile: $("quantile"),
};
const WINDOWS = { "15m": "admin.window-15m", "1h": "admin.window-1h", "6h": "admin.window-6h", "24h": "admin.window-24h" };
const QUANTILES = { p50: "admin.quantile-p50", p90: "admin.quantile-p90", p99: "admin.quantile-p99" };
const STATUSES = { ok: "admin.status-ok", error: "admin.status-error", interrupted: "admin.status-interrupted" };
const STAGES = {
  stt: "admin.stage-stt", llm_first_token: "admin.stage-llm-first-token", llm_total: "admin.stage-llm-total",
  tts_first_audio: "admin.stage-tts-first-audio", first_audio: "admin.stage-first-audio", total: "admin.stage-total",
};
const HEALTH = {
  status: "admin.health-status", llm: "admin.health-llm", stt: "admin.health-stt", tts: "admin.health-tts",
  db: "admin.health-db", redis: "admin.health-redis",
};
const COLORS = ["--accent", "--ok", "--warn", "--danger", "--violet", "--teal", "--muted", "--text"];
const CLOCK = { hour: "numeric", minute: "2-digit" };
const CLOCK_SECONDS = { hour: "numeric", minute: "2-digit", second: "2-digit" };
const HEIGHT = 190;
const MIN_REFRESH_MS = 1000;

const charts = new Map(); // id -> { plot, signature, box }
let last = null; // the last answer, redrawn after a language switch
let timer = 0;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function setState(state, text = "") {
  document.body.dataset.state = state;
  ui.state.textContent = text;
}

/** The chart's series from the answer: [{label, values}] (a null in `zero` groups is no event: 0). */
function seriesOf(id, body) {
  const quantile = ui.quantile.value;
  const named = (group, words) => Object.entries(body[group] || {}).map(([name, values]) => ({
    label: words[name] ? t(words[name]) : name, values,
  }));
  if (id === "turns") return named("turns", STATUSES);
  if (id === "errors") {
    return named("errors", {}).map((s) => ({ ...s, values: s.values.map((v) => v ?? 0) }));
  }
  if (id === "connections") return named("connections", {});
  if (id === "first-audio") {
    const stage = body.latency_ms?.first_audio || {};
    return Object.keys(QUANTILES).filter((q) => stage[q]).map((q) => ({ label: t(QUANTILES[q]), values: stage[q] }));
  }
  if (id === "stages") {
    return Object.keys(STAGES).filter((s) => body.latency_ms?.[s]?.[quantile])
      .map((s) => ({ label: t(STAGES[s]), values: body.latency_ms[s][quantile] }));
  }
  // Health: one step line per part, high while it is well, low while it fails; the top row is the server, then
  // the other parts, then each engine of a fallback chain ("llm openai"), named as the server names it.
  const health = body.health || {};
  const parts = [...Object.keys(HEALTH).filter((part) => health[part]),
    ...Object.keys(health).filter((part) => !HEALTH[part]).sort()];
  return parts.map((part, i) => {
    const row = parts.length - 1 - i;
    const label = HEALTH[part] ? t(HEALTH[part]) : part;
    return { label, row, values: health[part].map((v) => (v == null ? null : row + 0.6 * v)) };
  });
}

function titleOf(id) {
  const quantile = t(QUANTILES[ui.quantile.value]);
  const titles = {
    turns: t("admin.turns"), "first-audio": t("admin.first-audio"), stages: t("admin.stages", { quantile }),
    errors: t("admin.errors"), connections: t("admin.connections"), health: t("admin.health"),
  };
  return titles[id];
}

function options(id, series, width) {
  const axis = { stroke: css("--muted"), grid: { stroke: css("--border"), width: 1 }, ticks: { stroke: css("--border") } };
  const health = id === "health";
  const y = { ...axis, size: health ? 110 : 56 };
  if (health) {
    y.splits = () => series.map((s) => s.row + 0.3);
    y.values = (u, splits) => splits.map((v) => series.find((s) => s.row + 0.3 === v)?.label ?? "");
  } else {
    y.values = (u, splits) => splits.map((v) => formatNumber(v, { maximumFractionDigits: 1 }));
  }
  return {
    width, height: health ? Math.max(HEIGHT, 24 * series.length + 50) : HEIGHT,
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: health ? { range: [-0.2, Math.max(1, series.length) - 0.2] } : { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
    axes: [{ ...axis, values: (u, splits) => splits.map((v) => formatDate(new Date(v * 1000), CLOCK)) }, y],
    series: [
      { value: (u, v) => (v == null ? "–" : formatDate(new Date(v * 1000), CLOCK_SECONDS)) },
      ...series.map((s, i) => ({
        label: s.label,
        stroke: css(COLORS[i % COLORS.length]),
        width: 1.5,
        points: { show: false },
        paths: health ? uPlot.paths.stepped({ align: 1 }) : undefined,
        value: health
          ? (u, v) => (v == null ? "–" : t(v - s.row > 0.3 ? "admin.ready" : "admin.not-ready"))
          : (u, v) => (v == null ? "–" : formatNumber(v, { maximumFractionDigits: 1 })),
      })),
    ],
  };
}

function draw(id, body) {
  const series = seriesOf(id, body);
  let chart = charts.get(id);
  if (!chart) {
    const box = el("figure", "chart");
    box.dataset.chart = id;
    box.append(el("figcaption", "chart-title"), el("div", "chart-plot"), el("p", "chart-empty"));
    ui.charts.append(box);
    chart = { box, plot: null, signature: "" };
    charts.set(id, chart);
  }
  const [caption, holder, empty] = chart.box.children;
  caption.textContent = titleOf(id);
  empty.textContent = t("admin.no-data");
  const hasData = series.some((s) => s.values.some((v) => v != null));
  empty.hidden = hasData;
  holder.hidden = !hasData;
  chart.box.dataset.series = String(series.length);
  const data = [body.t, ...series.map((s) => s.values)];
  const signature = JSON.stringify(series.map((s) => s.label)) + css("--text");
  if (chart.plot && chart.signature === signature) {
    chart.plot.setData(data);
    return;
  }
  chart.plot?.destroy();
  chart.plot = hasData ? new uPlot(options(id, series, Math.max(240, holder.clientWidth || 600)), data, holder) : null;
  chart.signature = chart.plot ? signature : "";
}

function summary(body) {
  const now = body.now || {};
  const box = ui.summary;
  box.hidden = !now.status;
  if (!now.status) return;
  const engine = (info) => {
    if (!info || !info.engine || info.engine === "none") return t("admin.off");
    const name = [info.engine, info.model].filter(Boolean).join(" · ");
    return name + " — " + t(info.ready ? "admin.ready" : "admin.not-ready");
  };
  const redis = now.redis?.configured ? t(now.redis.connected ? "admin.ready" : "admin.not-ready") : t("admin.off");
  const cards = [
    ["admin.summary-status", t(now.status === "ok" ? "admin.summary-ok" : "admin.summary-degraded"), now.status],
    ["admin.summary-version", now.version],
    ["admin.summary-uptime", t("admin.summary-hours", { hours: formatNumber((now.uptime_s || 0) / 3600, { maximumFractionDigits: 1 }) })],
    ["admin.summary-connections", formatNumber(now.active_connections ?? 0)],
    ["admin.summary-instances", formatNumber(now.instances ?? 1)],
    ["admin.health-llm", engine(now.llm)],
    ["admin.health-stt", engine(now.stt)],
    ["admin.health-tts", engine(now.tts)],
    ["admin.health-db", t(now.db_connected ? "admin.ready" : "admin.not-ready")],
    ["admin.health-redis", redis],
  ];
  box.replaceChildren(...cards.map(([label, value, state]) => {
    const card = el("div", "card");
    if (state) card.dataset.state = state;
    card.append(el("span", "card-label", t(label)), el("span", "card-value", value ?? "–"));
    return card;
  }));
}

function render(body) {
  last = body;
  summary(body);
  for (const id of ["turns", "first-audio", "stages", "errors", "connections", "health"]) draw(id, body);
  const updated = formatDate(new Date(), CLOCK_SECONDS);
  setState("ready", t("admin.updated", { time: updated, seconds: body.interval_s, points: body.t.length }));
}

async function refresh() {
  clearTimeout(timer);
  if (document.hidden) return; // the next visibilitychange asks again
  const result = await request("GET", "api/admin/metrics?window=" + encodeURIComponent(ui.window.value));
  if (result.status === 200) {
    render(result.body);
    timer = setTimeout(refresh, Math.max(MIN_REFRESH_MS, (result.body.interval_s || 10) * 1000));
    return;
  }
  if (result.status === 401) setState("denied", t("admin.sign-in"));
  else if (result.status === 403) setState("denied", t("admin.not-admin"));
  else {
    setState("failed", friendlyError(result.body.code || "network", result.body.detail));
    timer = setTimeout(refresh, 10000);
  }
}

function words() {
  document.title = t("admin.title");
  ui.title.textContent = t("admin.title");
  ui.back.textContent = t("admin.back");
  ui.windowLabel.textContent = t("admin.window");
  ui.quantileLabel.textContent = t("admin.quantile");
  for (const [select, choices] of [[ui.window, WINDOWS], [ui.quantile, QUANTILES]]) {
    const picked = select.value;
    select.replaceChildren(...Object.entries(choices).map(([value, key]) => new Option(t(key), value)));
    select.value = picked || select.options[1]?.value;
  }
  if (last) render(last);
}

await startLanguage();
words();
onLanguageChange(() => words());
setState("loading", t("admin.loading"));
ui.window.addEventListener("change", () => refresh());
ui.quantile.addEventListener("change", () => last && render(last));
document.addEventListener("visibilitychange", () => !document.hidden && refresh());
new ResizeObserver(() => {
  for (const { plot, box } of charts.values()) {
    const width = box.querySelector(".chart-plot").clientWidth;
    if (plot && width && Math.abs(plot.width - width) > 4) plot.setSize({ width, height: plot.height });
  }
}).observe(ui.charts);
// For tests and the curious: what the page drew last.
window.webBotAdmin = { last: () => last, charts: () => [...charts.keys()].filter((id) => charts.get(id).plot) };
refresh();
