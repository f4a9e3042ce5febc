// tierwise dashboard: polls /api/summary (every 10 s) and /api/stream (every 2 s) and draws
// everything with plain DOM and SVG. No libraries, no network beyond this server.
"use strict";

const WINDOWS = ["1h", "6h", "24h", "7d", "30d", "all"];
const TIER_COLORS = { cache: "#8aa0b4", local: "#3fb37f", hpc: "#5aa9e6", cloud: "#e39b4a" };
const PALETTE = ["#b58ae6", "#e6d25a", "#e66f9b", "#5ae0d0", "#c9c9c9"];
const SVG = "http://www.w3.org/2000/svg";
const state = {
  window: WINDOWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "24h",
  paused: false, lastId: 0, updated: 0, error: "", loadedAt: null, colors: {},
};

// ---- formatting ---------------------------------------------------------------------------
const nf = new Intl.NumberFormat("en-US");
function num(n) {
  if (n == null) return "–";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return nf.format(Math.round(n));
}
function usd(x) {
  if (x == null) return "–";
  if (x === 0) return "$0";
  if (Math.abs(x) < 0.01) return "$" + x.toFixed(4);
  if (Math.abs(x) < 100) return "$" + x.toFixed(2);
  return "$" + nf.format(Math.round(x));
}
function ms(x) {
  if (x == null) return "–";
  if (x < 1) return x.toFixed(3) + " ms";
  if (x < 1000) return Math.round(x) + " ms";
  return (x / 1000).toFixed(x < 10000 ? 2 : 1) + " s";
}
function pct(x, digits = 1) { return x == null ? "–" : (100 * x).toFixed(digits) + "%"; }
function clock(ts, withDay, seconds) {
  const d = new Date(ts * 1000);
  const hm = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined, hour12: false });
  return withDay ? d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + hm : hm;
}
function ago(ts) {
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
function color(tier) {
  if (TIER_COLORS[tier]) return TIER_COLORS[tier];
  if (!state.colors[tier]) state.colors[tier] = PALETTE[Object.keys(state.colors).length % PALETTE.length];
  return state.colors[tier];
}

// ---- DOM helpers --------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "style") node.style.cssText = v; else if (v != null) node.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c != null) node.append(c instanceof Node ? c : String(c));
  return node;
}
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children.flat()) if (c != null) node.append(c instanceof Node ? c : String(c));
  return node;
}
function chip(tier) { return el("span", { class: "chip", style: `background:${color(tier)}` }, tier); }

// ---- sections -----------------------------------------------------------------------------
function kpi(label, value, sub, tone) {
  return el("div", { class: "kpi" + (tone ? " " + tone : "") },
    el("div", { class: "label" }, label), el("div", { class: "value" }, value),
    el("div", { class: "sub" }, sub));
}

function renderKpis(s) {
  const t = s.totals, minutes = Math.max(1, (s.until - s.since) / 60);
  const failures = s.tiers.reduce((a, r) => a + r.failures, 0);
  document.getElementById("kpis").replaceChildren(
    kpi("Requests", num(t.requests), `${(t.requests / minutes).toFixed(1)} / min · ${s.hosts.map(h => `${h.host} ${num(h.count)}`).join(" · ")}`),
    kpi("Saved vs all top tier", usd(t.saved_usd), `${pct(t.saved_ratio)} of ${usd(t.top_cost_usd)}`, t.saved_usd > 0 ? "good" : ""),
    kpi("Spend", usd(t.cost_usd), `${num(t.tokens_in)} in · ${num(t.tokens_out)} out tokens`),
    kpi("Cache hit rate", pct(t.cache_hit_rate), `${num(t.cache_hits)} hits · ${num(t.summarized)} summarized`),
    kpi("Time to first token", `${ms(t.ttft_p50_ms)}`, `p95 ${ms(t.ttft_p95_ms)} · decide p50 ${ms(t.decide_p50_ms)}` +
      (t.judged || t.judge_kept ? ` · LLM judge ${num(t.judged)} rated, ${num(t.judge_kept)} kept` : "")),
    kpi("Errors · fallbacks", `${num(t.errors)} · ${num(t.fallbacks)}`, `${num(failures)} failed tier attempts · ${num(t.probes)} probes`, t.error_rate > 0.02 ? "bad" : ""),
  );
}

function axisTimes(start, bucket, n, withDay) {
  const ticks = [], step = Math.max(1, Math.round(n / 6));
  for (let i = 0; i < n - step / 2; i += step) ticks.push([i, clock(start + i * bucket, withDay)]);
  return ticks;
}

function renderSplit(s) {
  const sp = s.split, n = sp.cost_usd.length, W = 900, H = 210, L = 44, B = 22, T = 6;
  const totals = Array.from({ length: n }, (_, i) => sp.tiers.reduce((a, t) => a + sp.counts[t][i], 0));
  const max = Math.max(1, ...totals), bw = (W - L) / n, ph = H - B - T;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "routing split over time" });
  for (const f of [0, 0.5, 1]) {
    const y = T + ph * (1 - f);
    root.append(svg("line", { x1: L, x2: W, y1: y, y2: y, class: "gridline" }),
      svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, num(max * f)));
  }
  for (let i = 0; i < n; i++) {
    let y = T + ph;
    for (const tier of sp.tiers) {
      const c = sp.counts[tier][i];
      if (!c) continue;
      const h = ph * c / max;
      y -= h;
      root.append(svg("rect", { x: L + i * bw + 0.5, y, width: Math.max(1, bw - 1), height: h, fill: color(tier) },
        svg("title", {}, `${clock(sp.start + i * sp.bucket_s, true)} · ${tier}: ${num(c)} of ${num(totals[i])}`)));
    }
  }
  const withDay = s.until - s.since > 86400 * 1.01;
  for (const [i, label] of axisTimes(sp.start, sp.bucket_s, n, withDay)) {
    root.append(svg("text", { x: L + i * bw, y: H - 6 }, label));
  }
  document.getElementById("split").replaceChildren(root);
  document.getElementById("split-note").textContent =
    `requests per ${sp.bucket_s >= 3600 ? sp.bucket_s / 3600 + " h" : sp.bucket_s / 60 + " min"}`;
  document.getElementById("legend").replaceChildren(...s.tiers.map(r =>
    el("span", {}, el("i", { style: `background:${color(r.tier)}` }), `${r.tier} ${pct(r.share)}`)));
}

function renderReasons(s) {
  const top = s.reasons[0] ? s.reasons[0].count : 1;
  document.getElementById("reasons").replaceChildren(...s.reasons.map(r =>
    el("div", { class: "reason" },
      el("span", { class: "name", title: r.reason }, r.reason),
      el("span", { class: "n" }, pct(r.share)),
      el("div", { class: "track" }, el("div", { style: `width:${(100 * r.count / top).toFixed(1)}%` })))));
}

function renderTiers(s) {
  const head = el("tr", {}, ["tier", "health (5 min)", "share", "requests", "TTFT p50", "TTFT p95",
    "latency p50", "latency p95", "failed attempts", "fallbacks in", "cost"]
    .map((h, i) => el("th", { class: i < 3 ? "l" : "" }, h)));
  const rows = s.tiers.map(r => el("tr", {},
    el("td", { class: "l" }, chip(r.tier)),
    el("td", { class: "l" }, el("span", { class: "status " + r.status,
      title: `${r.recent_failures} of ${r.recent_attempts} attempts failed in the last 5 minutes` },
      r.status + (r.recent_attempts ? ` · ${r.recent_failures} of ${num(r.recent_attempts)} failed` : ""))),
    el("td", { class: "l" }, el("span", { class: "bar", style: `width:${Math.max(2, 70 * r.share)}px;background:${color(r.tier)}` }), " ", pct(r.share)),
    el("td", {}, num(r.requests)),
    el("td", {}, ms(r.ttft_p50_ms)), el("td", {}, ms(r.ttft_p95_ms)),
    el("td", {}, ms(r.latency_p50_ms)), el("td", {}, ms(r.latency_p95_ms)),
    el("td", {}, r.failures ? `${num(r.failures)} (${pct(r.failure_rate)})` : "0"),
    el("td", {}, num(r.fallbacks_in)),
    el("td", {}, usd(r.cost_usd))));
  document.getElementById("tiers").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  const errors = s.tiers.filter(r => r.last_error);
  document.getElementById("tier-errors").replaceChildren(
    ...(errors.length ? [el("div", { class: "muted" }, "last error per tier")] : []),
    ...errors.map(r => el("div", { class: "err", title: r.last_error },
      chip(r.tier), ` ${ago(r.last_error_ts)} · ${r.last_error}`)));
}

function renderSpend(s) {
  const sp = s.split, n = sp.cost_usd.length, W = 420, H = 210, L = 52, B = 22, T = 6;
  let a = 0, b = 0;
  const spent = sp.cost_usd.map(x => (a += x)), top = sp.top_cost_usd.map(x => (b += x));
  const max = Math.max(1e-9, b), ph = H - B - T, dx = (W - L) / Math.max(1, n - 1);
  const pts = arr => arr.map((v, i) => `${(L + i * dx).toFixed(1)},${(T + ph * (1 - v / max)).toFixed(1)}`);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "cumulative spend" });
  for (const f of [0, 0.5, 1]) {
    const y = T + ph * (1 - f);
    root.append(svg("line", { x1: L, x2: W, y1: y, y2: y, class: "gridline" }),
      svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, usd(max * f)));
  }
  const topPts = pts(top), spentPts = pts(spent);
  root.append(svg("polygon", { points: [...topPts, ...spentPts.slice().reverse()].join(" "), fill: "#3fb37f", opacity: 0.18 }),
    svg("polyline", { points: topPts.join(" "), fill: "none", stroke: "#e5534b", "stroke-width": 2, "stroke-dasharray": "5 4" }),
    svg("polyline", { points: spentPts.join(" "), fill: "none", stroke: "#e3e9ef", "stroke-width": 2 }));
  const withDay = s.until - s.since > 86400 * 1.01, step = Math.max(1, Math.round(n / 3));
  for (let i = 0; i < n - step / 2; i += step) {
    root.append(svg("text", { x: L + i * dx, y: H - 6 }, clock(sp.start + i * sp.bucket_s, withDay)));
  }
  document.getElementById("spend").replaceChildren(root);
  document.getElementById("spend-legend").replaceChildren(
    el("span", {}, el("i", { style: "background:#e3e9ef" }), `spent ${usd(a)}`),
    el("span", {}, el("i", { style: "background:#e5534b" }), `all on top tier ${usd(b)}`),
    el("span", {}, el("i", { style: "background:#3fb37f" }), `saved ${usd(b - a)}`));
}

function flags(r) {
  const out = [];
  if (!r.ok) out.push(el("span", { class: "flag bad" }, "error"));
  if (r.fallback) out.push(el("span", { class: "flag warn", title: `decided ${r.routed_tier}` }, `fallback from ${r.routed_tier}`));
  if (r.cache_hit) out.push(el("span", { class: "flag" }, "cache"));
  if (r.summarized) out.push(el("span", { class: "flag" }, "summarized"));
  if (r.probe) out.push(el("span", { class: "flag" }, "probe"));
  return out;
}

function streamRow(r, fresh) {
  return el("tr", { class: fresh ? "new" : null, "data-id": r.id },
    el("td", { class: "l" }, clock(r.ts, false, true)),
    el("td", { class: "l" }, r.host),
    el("td", { class: "l" }, chip(r.tier)),
    el("td", { class: "l" }, r.model),
    el("td", {}, r.score == null ? "–" : `${r.score.toFixed(2)} ${r.band}`),
    el("td", { class: "l" }, r.reason),
    el("td", {}, ms(r.ttft_ms)), el("td", {}, ms(r.latency_ms)),
    el("td", {}, `${num(r.tokens_in)} → ${num(r.tokens_out)}`),
    el("td", {}, usd(r.cost_usd)),
    el("td", { class: "l" }, flags(r)));
}

function renderStream(rows, fresh) {
  const table = document.getElementById("stream");
  if (!table.tHead) {
    table.append(el("thead", {}, el("tr", {}, ["time", "host", "tier", "model", "score", "reason",
      "TTFT", "latency", "tokens in → out", "cost", ""].map((h, i) =>
      el("th", { class: [0, 1, 2, 3, 5, 10].includes(i) ? "l" : "" }, h)))), el("tbody"));
  }
  const body = table.tBodies[0];
  body.prepend(...rows.map(r => streamRow(r, fresh)));
  while (body.rows.length > 40) body.deleteRow(-1);
}

// ---- polling ------------------------------------------------------------------------------
async function getJson(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error + (body.hint ? " — " + body.hint : ""));
  return body;
}

function showProblem(message) {
  const box = document.getElementById("problem");
  box.hidden = !message;
  box.textContent = message || "";
}

async function refreshSummary() {
  try {
    const s = await getJson(`/api/summary?window=${state.window}`);
    document.getElementById("db").textContent = s.db;
    renderKpis(s); renderSplit(s); renderReasons(s); renderTiers(s); renderSpend(s);
    state.updated = Date.now(); state.error = ""; showProblem("");
  } catch (err) {
    state.error = String(err.message || err); showProblem(state.error);
  }
}

function renderAdapt(a) {
  const sources = Object.entries(a.by_source).map(([k, v]) => `${k} ${num(v)}`).join(" · ") || "none yet";
  const version = a.error ? el("span", { class: "bad" }, a.error)
    : a.version ? `version ${a.version} (parent ${a.parent}) · fitted on ${num(a.fitted_on)} outcomes · ` +
      `held-back gain ${a.gain >= 0 ? "+" : ""}${a.gain.toFixed(4)} on ${num(a.held_back)}`
    : "none: the scorer's score as it is";
  document.getElementById("adapt").replaceChildren(
    el("p", {}, el("b", {}, "outcomes received "), `${num(a.outcomes)} (${num(a.outcomes_24h)} in 24 h) · ${sources}`),
    el("p", {}, el("b", {}, "in service "), version),
    el("p", { class: "muted" }, `versions kept in ${a.dir}: ${a.versions.join(", ") || "none"} · roll back: `,
      el("code", {}, a.rollback)),
  );
}

async function refreshAdapt() {
  try { renderAdapt(await getJson("/api/adapt")); } catch (err) { /* the summary shows log problems */ }
}

async function refreshStream() {
  try {
    const { rows } = await getJson(`/api/stream?after=${state.lastId}&limit=40`);
    if (rows.length) {
      renderStream(rows, state.lastId > 0);
      state.lastId = rows[0].id;
    }
    state.error = "";
  } catch (err) {
    state.error = String(err.message || err);
  }
}

function renderLive() {
  const dot = document.getElementById("live-dot"), text = document.getElementById("live-text");
  if (state.error) { dot.className = "dot bad"; text.textContent = "cannot read the log"; return; }
  if (state.paused) { dot.className = "dot idle"; text.textContent = "paused"; return; }
  dot.className = "dot ok";
  text.textContent = state.updated ? `live · summary ${Math.round((Date.now() - state.updated) / 1000)} s old` : "loading…";
}

function renderWindows() {
  document.getElementById("windows").replaceChildren(...WINDOWS.map(w => {
    const b = el("button", { type: "button", class: w === state.window ? "on" : "" }, w);
    b.onclick = () => { state.window = w; location.hash = w; renderWindows(); refreshSummary(); };
    return b;
  }));
}

async function start() {
  renderWindows();
  document.getElementById("pause").onclick = e => {
    state.paused = !state.paused; e.target.textContent = state.paused ? "resume" : "pause"; renderLive();
  };
  await Promise.all([refreshSummary(), refreshStream(), refreshAdapt()]);
  state.loadedAt = performance.now();
  document.body.dataset.ready = "1";
  document.body.dataset.loadMs = state.loadedAt.toFixed(0);
  renderLive();
  setInterval(() => { if (!state.paused) refreshStream().then(renderLive); }, 2000);
  setInterval(() => { if (!state.paused) refreshSummary().then(renderLive); }, 10000);
  setInterval(() => { if (!state.paused) refreshAdapt(); }, 10000);
  setInterval(renderLive, 1000);
}

start();
