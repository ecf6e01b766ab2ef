// rl-gym dashboard: a hash-routed single page over the public HTTP API.
// No framework and no build step: the file is embedded in the binary as written.

const TOKEN_KEY = "rl-gym.token";
const STATES = ["pending", "running", "verifying", "completed", "failed", "cancelled"];
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
// The events that change a run's counts; the runs list listens to these only.
const LIFECYCLE = [
  "RunLaunched", "RunCancelRequested", "RunDeleted", "RolloutStarted",
  "RolloutVerified", "RolloutCompleted", "RolloutFailed", "RolloutCancelled",
  "RunPaused", "RunResumed",
];
const SVG_NS = "http://www.w3.org/2000/svg";

let token = localStorage.getItem(TOKEN_KEY) || "";

// ---------- DOM helpers ----------

/** h("tag.class", {attrs}, ...children): children may be strings, nodes, arrays or null. */
function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  append(el, children);
  return el;
}

const main = () => document.getElementById("main");

function setLive(text, on) {
  const live = document.getElementById("live");
  live.textContent = text;
  live.classList.toggle("on", !!on);
}

// ---------- formatting ----------

const fmtScore = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(2));
const fmtInt = (x) => (x === null || x === undefined ? "–" : Number(x).toLocaleString("en-US"));

function fmtSeconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 90) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" });
}

function badge(state) {
  return h(`span.badge.${state}`, {}, state.replace("_", " "));
}

/** A tool result for reading: JSON laid out as indented `key: value` lines with
 *  strings unquoted and their line breaks kept; any other text as it is. */
function readable(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return text;
  }
  const lines = [];
  const walk = (v, indent, prefix) => {
    const pad = "  ".repeat(indent);
    if (Array.isArray(v) && v.length && v.some((x) => x && typeof x === "object")) {
      lines.push(`${pad}${prefix}`.trimEnd());
      v.forEach((x) => walk(x, indent + 1, "- "));
    } else if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length) {
      if (prefix) lines.push(`${pad}${prefix}`.trimEnd());
      for (const [k, x] of Object.entries(v)) walk(x, prefix ? indent + 1 : indent, `${k}: `);
    } else if (typeof v === "string" && v.includes("\n")) {
      lines.push(`${pad}${prefix}`.trimEnd());
      for (const line of v.split("\n")) lines.push(`${pad}    ${line}`);
    } else {
      lines.push(`${pad}${prefix}${typeof v === "string" ? v : JSON.stringify(v)}`);
    }
  };
  walk(value, 0, "");
  return lines.join("\n");
}

/** Pretty JSON when the text is JSON, the text itself otherwise. */
function pretty(text) {
  if (typeof text !== "string") return JSON.stringify(text, null, 2);
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}${detail ? `: ${JSON.stringify(detail)}` : ""}`);
    this.status = status;
  }
}

let asking = null;

/** Shows the token dialog (once, however many requests were refused) and resolves with the new token. */
function askToken(reason) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-reason").textContent = reason;
  input.value = "";
  asking = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    const onSubmit = () => {
      const value = input.value.trim();
      if (!value) return;
      form.removeEventListener("submit", onSubmit);
      token = value;
      localStorage.setItem(TOKEN_KEY, token);
      document.getElementById("forget-token").hidden = false;
      asking = null;
      resolve(token);
    };
    form.addEventListener("submit", onSubmit);
  });
  // Without a token nothing works, so Escape does not close the dialog.
  dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true });
  if (!dialog.open) dialog.showModal();
  input.focus();
  return asking;
}

function authHeaders(extra) {
  const headers = new Headers(extra || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return headers;
}

/** fetch() with the token; a 401 asks for the token and tries again. */
async function request(path, options = {}) {
  for (;;) {
    const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
    if (response.status !== 401) return response;
    await askToken(token ? "The server refused that token; enter another." : "This server needs an API token.");
  }
}

async function api(path, options) {
  const response = await request(path, options);
  if (!response.ok) {
    let detail = null;
    try {
      detail = (await response.json()).detail;
    } catch {
      // not JSON: the status says enough
    }
    throw new ApiError(response.status, detail);
  }
  return response.status === 204 ? null : response.json();
}

/**
 * Reads server-sent events through fetch(), because EventSource cannot send the token
 * header. Calls onEvent({id, event, data}) for each; reconnects after a dropped
 * connection with Last-Event-ID, so nothing is missed or seen twice. Resolves when the
 * server ends the stream on purpose (`endsByItself`) or the signal aborts.
 */
async function streamEvents(path, { signal, onEvent, onState, endsByItself = false }) {
  let lastId = null;
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (lastId !== null) headers["Last-Event-ID"] = String(lastId);
      const response = await request(path, { headers, signal });
      if (response.status === 404) return;
      if (!response.ok || !response.body) throw new ApiError(response.status);
      onState?.(true);
      delay = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let frame = { id: null, event: "message", data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let newline;
        while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
          if (line === "") {
            if (frame.data.length) {
              if (frame.id !== null) lastId = frame.id;
              let data = frame.data.join("\n");
              try {
                data = JSON.parse(data);
              } catch {
                // keep the text
              }
              onEvent({ id: frame.id, event: frame.event, data });
            }
            frame = { id: null, event: "message", data: [] };
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            let value = colon < 0 ? "" : line.slice(colon + 1);
            if (value.startsWith(" ")) value = value.slice(1);
            if (field === "id") frame.id = Number(value);
            else if (field === "event") frame.event = value;
            else if (field === "data") frame.data.push(value);
          }
        }
      }
      onState?.(false);
      if (endsByItself) return;
    } catch (err) {
      onState?.(false);
      if (signal.aborted) return;
      console.warn("event stream dropped", err);
    }
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
  }
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** Calls fn at most once per `ms`, however often it is asked: live updates never storm the API. */
function debounced(fn, ms, signal) {
  let timer = null;
  let running = false;
  let again = false;
  const run = async () => {
    timer = null;
    if (signal.aborted) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } catch (err) {
      console.warn(err);
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (timer === null) timer = setTimeout(run, ms);
  };
  return schedule;
}

// ---------- progress bars ----------

/** Counts by state from a RunStatus: `in_progress` is running plus verifying. */
function counts(run) {
  return {
    pending: run.pending,
    running: run.running,
    verifying: Math.max(0, run.in_progress - run.running),
    completed: run.completed,
    failed: run.failed,
    cancelled: run.cancelled,
  };
}

function progressBar(run, big) {
  const c = counts(run);
  const total = run.total || 1;
  const described = STATES.filter((s) => c[s]).map((s) => `${c[s]} ${s}`).join(", ") || "no rollouts";
  const bar = h(`div.bar${big ? ".big" : ""}`, {
    role: "img",
    "aria-label": `${run.total} rollouts: ${described}`,
    title: described,
    dataset: { completed: c.completed, done: c.completed + c.failed + c.cancelled, total: run.total },
  });
  for (const state of STATES) {
    if (!c[state]) continue;
    const seg = h(`span.${state}`);
    seg.style.width = `${(100 * c[state]) / total}%`;
    bar.append(seg);
  }
  return bar;
}

function progressText(run) {
  const c = counts(run);
  const done = c.completed + c.failed + c.cancelled;
  const active = c.running + c.verifying;
  return h("div.bar-text", {}, `${done}/${run.total} done`, active ? ` · ${active} active` : "", c.failed ? ` · ${c.failed} failed` : "");
}

function legend(run) {
  const c = counts(run);
  return h("ul.legend", {}, STATES.map((s) => h(`li.${s}`, {}, `${s} ${c[s]}`)));
}

// ---------- the router ----------

let current = null;

function route() {
  current?.abort();
  current = new AbortController();
  const signal = current.signal;
  const hash = location.hash || "#/runs";
  let m;
  setLive("", false);
  if ((m = hash.match(/^#\/runs\/([^/?]+)$/))) show(runPage(decodeURIComponent(m[1]), signal), signal);
  else if ((m = hash.match(/^#\/rollouts\/([^/?]+)$/))) show(rolloutPage(decodeURIComponent(m[1]), signal), signal);
  else {
    const page = Number((hash.match(/[?&]page=(\d+)/) || [])[1] || 1);
    show(runsPage(Math.max(1, page), signal), signal);
  }
}

async function show(promise, signal) {
  try {
    await promise;
  } catch (err) {
    if (signal.aborted) return;
    const status = err instanceof ApiError && err.status === 404 ? "Not found." : "";
    main().replaceChildren(
      h("p.error", { role: "alert" }, status || `Could not load this page: ${err.message}`),
      h("p", {}, h("a", { href: "#/runs" }, "Back to the runs")),
    );
  }
}

function render(title, ...children) {
  document.title = `${title} · rl-gym`;
  const m = main();
  m.replaceChildren(...children.flat().filter(Boolean));
  window.scrollTo(0, 0);
  m.focus({ preventScroll: true });
}

// ---------- runs list ----------

const PAGE = 25;

async function runsPage(page, signal) {
  // The log position first, then the list: events between the two are applied twice,
  // which is harmless, and none is missed.
  const health = await api("/healthz");
  const list = await api(`/runs?limit=${PAGE}&offset=${(page - 1) * PAGE}`);
  if (signal.aborted) return;

  const rows = new Map();
  const tbody = h("tbody");
  const summary = h("p.muted", { id: "runs-summary" });
  const rowFor = (run) =>
    h("tr", { dataset: { runId: run.run_id } },
      h("td", {}, h("a.mono", { href: `#/runs/${encodeURIComponent(run.run_id)}` }, run.run_id)),
      h("td", {}, run.scenario_id),
      h("td", {}, `${run.model_config.provider}/${run.model_config.model}`),
      h("td", {}, badge(run.status)),
      h("td", {}, progressBar(run), progressText(run)),
      h("td.num", {}, fmtInt(run.usage.total_tokens)),
      h("td", {}, fmtTime(run.created_at)),
    );
  const fill = (runs, total) => {
    rows.clear();
    tbody.replaceChildren(...runs.map((run) => {
      const tr = rowFor(run);
      rows.set(run.run_id, tr);
      return tr;
    }));
    if (!runs.length) tbody.append(h("tr", {}, h("td", { colspan: 7 }, h("span.muted", {}, "No runs yet. Launch one with POST /runs or `rl-gym runs launch`."))));
    summary.textContent = `${total} run${total === 1 ? "" : "s"}` +
      (total > PAGE ? `, showing ${(page - 1) * PAGE + 1}–${(page - 1) * PAGE + runs.length}` : "");
  };
  fill(list.runs, list.total);

  const pager = h("nav.pager", { "aria-label": "Pages" },
    page > 1 ? h("a", { href: `#/runs?page=${page - 1}` }, "← Newer") : null,
    (page * PAGE < list.total) ? h("a", { href: `#/runs?page=${page + 1}` }, "Older →") : null,
  );

  render("Runs",
    h("h1", {}, "Runs"),
    summary,
    h("div.table-wrap", {}, h("table.runs", {},
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Run"), h("th", { scope: "col" }, "Scenario"), h("th", { scope: "col" }, "Model"),
        h("th", { scope: "col" }, "Status"), h("th", { scope: "col" }, "Progress"),
        h("th.num", { scope: "col" }, "Tokens"), h("th", { scope: "col" }, "Created"))),
      tbody)),
    pager,
  );

  // Live: one stream of lifecycle events; the runs it touches are re-read, each at
  // most once per flush.
  const dirty = new Set();
  let relist = false;
  const runOf = new Map();
  const flush = debounced(async () => {
    if (relist) {
      relist = false;
      dirty.clear();
      const fresh = await api(`/runs?limit=${PAGE}&offset=${(page - 1) * PAGE}`);
      if (!signal.aborted) fill(fresh.runs, fresh.total);
      return;
    }
    const ids = [...dirty];
    dirty.clear();
    await Promise.all(ids.map(async (id) => {
      const old = rows.get(id);
      if (!old) return;
      try {
        const run = await api(`/runs/${encodeURIComponent(id)}`);
        if (signal.aborted || rows.get(id) !== old) return;
        const tr = rowFor(run);
        old.replaceWith(tr);
        rows.set(id, tr);
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) relist = true;
        else throw err;
      }
    }));
    if (relist) flush();
  }, 300, signal);

  const touch = async (event) => {
    const d = event.data && event.data.data;
    if (!d) return;
    if (event.event === "RunLaunched" || event.event === "RunDeleted") {
      for (const r of d.rollouts || []) runOf.set(r.rollout_id, d.run_id);
      if (page === 1 || rows.has(d.run_id)) relist = true;
      flush();
      return;
    }
    let runId = d.run_id || runOf.get(d.rollout_id);
    if (!runId && d.rollout_id) {
      // A rollout launched before this page opened: ask once which run it belongs to.
      try {
        runId = (await api(`/rollouts/${encodeURIComponent(d.rollout_id)}`)).run_id;
      } catch {
        return;
      }
    }
    if (!runId) return;
    if (d.rollout_id) runOf.set(d.rollout_id, runId);
    if (rows.has(runId)) {
      dirty.add(runId);
      flush();
    }
  };
  const after = health.events > 0 ? `&after=${health.events - 1}` : "";
  streamEvents(`/events?types=${LIFECYCLE.join(",")}${after}`, {
    signal,
    onEvent: touch,
    onState: (on) => setLive(on ? "live" : "reconnecting…", on),
  });
}

// ---------- one run ----------

async function runPage(runId, signal) {
  const id = encodeURIComponent(runId);
  const load = () => Promise.all([api(`/runs/${id}?expand=rollouts`), api(`/runs/${id}/stats`)]);
  let [run, stats] = await load();
  if (signal.aborted) return;

  const head = h("div");
  const overview = h("section", { "aria-label": "Progress and totals" });
  const tasks = h("section", { "aria-labelledby": "tasks-title" });
  const histogram = h("section.panel", { "aria-labelledby": "hist-title" });
  const rollouts = h("section", { "aria-labelledby": "rollouts-title" });
  const cancelButton = h("button", { type: "button", id: "cancel-run", onclick: () => confirmThen(
    `Cancel run ${runId}? Its pending and running rollouts stop; finished ones keep their results.`, "Cancel run",
    async () => {
      await api(`/runs/${id}/cancel`, { method: "POST" });
      refresh();
    }) }, "Cancel run…");
  const deleteButton = h("button.danger", { type: "button", id: "delete-run", onclick: () => confirmThen(
    `Delete run ${runId} and every rollout of it? This cannot be undone.`, "Delete run",
    async () => {
      await api(`/runs/${id}`, { method: "DELETE" });
      location.hash = "#/runs";
    }) }, "Delete run…");

  const draw = () => {
    const model = run.model_config;
    cancelButton.disabled = TERMINAL.has(run.status);
    head.replaceChildren(
      h("div.crumbs", {}, h("a", { href: "#/runs" }, "Runs"), " / run"),
      h("h1", {}, runId),
      h("div.meta", {},
        h("span", {}, "Status ", badge(run.status)),
        h("span", {}, "Scenario ", h("b", {}, run.scenario_id)),
        h("span", {}, "Model ", h("b", {}, `${model.provider}/${model.model}`)),
        h("span", {}, "Source ", h("b", {}, run.source)),
        h("span", {}, "Created ", h("b", {}, fmtTime(run.created_at))),
        run.finished_at ? h("span", {}, "Finished ", h("b", {}, fmtTime(run.finished_at))) : null,
      ),
    );
    const o = stats.overall;
    const t = o.time;
    overview.replaceChildren(
      h("div.panel", {}, progressBar(run, true), legend(run)),
      h("div.cards", {},
        card("Mean score", fmtScore(o.mean_score),
          o.mean_score_ci ? `95% CI ${fmtScore(o.mean_score_ci.low)}–${fmtScore(o.mean_score_ci.high)}` : `${o.attempts} attempts`),
        card("Full credit", `${o.successes}/${o.attempts}`, `${o.failed} failed · ${o.cancelled} cancelled · ${o.unfinished} unfinished`),
        card("Tokens", fmtInt(o.usage.total_tokens), `${fmtInt(o.usage.prompt_tokens)} prompt · ${fmtInt(o.usage.completion_tokens)} completion`),
        card("Wall time", fmtSeconds(t.wall_seconds), `${fmtSeconds(t.rollout_seconds)} summed over rollouts`),
        card("Model calls", fmtInt(t.model_calls), t.mean_model_latency_ms === null ? "" : `mean ${t.mean_model_latency_ms.toFixed(1)} ms each`),
      ),
    );
    tasks.replaceChildren(h("h2", { id: "tasks-title" }, "Per task"), taskTable(stats));
    histogram.replaceChildren(h("h2", { id: "hist-title" }, "Score histogram"), ...scoreHistogram(run.rollouts || []));
    rollouts.replaceChildren(h("h2", { id: "rollouts-title" }, `Rollouts (${run.total})`), rolloutTable(run.rollouts || []));
  };

  const refresh = debounced(async () => {
    [run, stats] = await load();
    if (!signal.aborted) draw();
  }, 400, signal);

  draw();
  render(runId,
    head,
    h("div.actions", {}, cancelButton, deleteButton),
    overview,
    tasks,
    h("div.split", {}, rollouts, histogram),
  );

  if (!TERMINAL.has(run.status)) {
    await streamEvents(`/runs/${id}/events`, {
      signal,
      endsByItself: true,
      onEvent: () => refresh(),
      onState: (on) => setLive(on ? "live" : "", on),
    });
    setLive("", false);
    refresh();
  }
}

function card(label, value, sub) {
  return h("div.card", {}, h("div.label", {}, label), h("div.value", {}, value), sub ? h("div.sub", {}, sub) : null);
}

function taskTable(stats) {
  const ks = [...new Set(stats.tasks.flatMap((t) => Object.keys(t.pass_hat_k || {})))].map(Number).sort((a, b) => a - b);
  return h("div.table-wrap", {}, h("table.tasks", {},
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Task"),
      h("th.num", { scope: "col" }, "Rollouts"),
      h("th.num", { scope: "col", title: "Attempts with full credit / attempts (a failed rollout is an attempt scoring 0)" }, "Full credit"),
      h("th.num", { scope: "col" }, "Mean score"),
      ks.map((k) => h("th.num", { scope: "col", title: `pass^${k}: the chance that ${k} attempts all succeed` }, `pass^${k}`)),
      h("th.num", { scope: "col" }, "Tokens"),
      h("th.num", { scope: "col" }, "Time"),
    )),
    h("tbody", {}, stats.tasks.map((t) => h("tr", { dataset: { taskId: t.task_id } },
      h("th", { scope: "row" }, h("span.mono", {}, t.task_id)),
      h("td.num", {}, t.rollouts),
      h("td.num", {}, `${t.successes}/${t.attempts}`),
      h("td.num", {}, fmtScore(t.mean_score)),
      ks.map((k) => h("td.num", {}, fmtScore((t.pass_hat_k || {})[k]))),
      h("td.num", {}, fmtInt(t.usage.total_tokens)),
      h("td.num", {}, fmtSeconds(t.time.rollout_seconds)),
    ))),
  ));
}

/** Scores of scored rollouts in ten bins, [0, 0.1) … [0.9, 1]; an inline SVG with a text fallback. */
function scoreHistogram(rollouts) {
  const scores = rollouts.filter((r) => r.score !== null && r.score !== undefined).map((r) => r.score);
  const bins = new Array(10).fill(0);
  for (const s of scores) bins[Math.min(9, Math.max(0, Math.floor(s * 10)))] += 1;
  const max = Math.max(1, ...bins);
  const W = 360, H = 160, left = 28, bottom = 22, top = 16;
  const bw = (W - left - 6) / bins.length;
  const described = bins.map((n, i) => `${(i / 10).toFixed(1)}–${((i + 1) / 10).toFixed(1)}: ${n}`).join("; ");
  const chart = svg("svg", {
    class: "histogram", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Scores of ${scores.length} scored rollouts. ${described}`,
  });
  chart.append(svg("line", { class: "axis", x1: left, y1: H - bottom, x2: W - 4, y2: H - bottom }));
  chart.append(svg("text", { x: left - 4, y: top + 4, "text-anchor": "end" }, String(max)));
  chart.append(svg("text", { x: left - 4, y: H - bottom, "text-anchor": "end" }, "0"));
  bins.forEach((n, i) => {
    const height = ((H - bottom - top) * n) / max;
    const x = left + i * bw + 2;
    const rect = svg("rect", { class: "bin", x, y: H - bottom - height, width: bw - 4, height, "data-count": n });
    rect.append(svg("title", {}, `${(i / 10).toFixed(1)}–${((i + 1) / 10).toFixed(1)}: ${n} rollout${n === 1 ? "" : "s"}`));
    chart.append(rect);
    if (n) chart.append(svg("text", { x: x + (bw - 4) / 2, y: H - bottom - height - 2, "text-anchor": "middle" }, String(n)));
    if (i % 2 === 0) chart.append(svg("text", { x: left + i * bw, y: H - 6, "text-anchor": "middle" }, (i / 10).toFixed(1)));
  });
  chart.append(svg("text", { x: W - 6, y: H - 6, "text-anchor": "end" }, "1.0"));
  const failed = rollouts.filter((r) => r.status === "failed").length;
  return [chart, h("p.muted.small", {}, `${scores.length} scored rollout${scores.length === 1 ? "" : "s"}`,
    failed ? `; ${failed} failed without a score (counted as 0 in the figures above)` : "")];
}

function rolloutTable(rollouts) {
  return h("div.table-wrap", {}, h("table.rollouts", {},
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Rollout"), h("th", { scope: "col" }, "Task"), h("th", { scope: "col" }, "Status"),
      h("th.num", { scope: "col" }, "Steps"), h("th.num", { scope: "col" }, "Score"), h("th", { scope: "col" }, "Error"))),
    h("tbody", {}, rollouts.map((r) => h("tr", {},
      h("td", {}, h("a.mono", { href: `#/rollouts/${encodeURIComponent(r.rollout_id)}` }, r.rollout_id)),
      h("td", {}, h("span.mono", {}, r.task_id), r.instance_seed ? h("span.muted.small", {}, ` instance ${r.instance_seed}`) : ""),
      h("td", {}, badge(r.status)),
      h("td.num", {}, r.steps),
      h("td.num", {}, fmtScore(r.score)),
      h("td", {}, r.error ? h("span.small", {}, r.error) : ""),
    ))),
  ));
}

function confirmThen(text, label, action) {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = label;
  dialog.returnValue = "";
  dialog.addEventListener("close", async () => {
    if (dialog.returnValue !== "confirm") return;
    try {
      await action();
    } catch (err) {
      alert(`${label} failed: ${err.message}`);
    }
  }, { once: true });
  dialog.showModal();
}

// ---------- one rollout ----------

async function rolloutPage(rolloutId, signal) {
  const id = encodeURIComponent(rolloutId);
  const [record, art, states] = await Promise.all([
    api(`/rollouts/${id}`),
    api(`/rollouts/${id}/artifacts`),
    // Per-step states are a nicety: the story is told without them if they fail.
    api(`/dashboard/rollouts/${id}/states`).catch(() => null),
  ]);
  if (signal.aborted) return;
  const score = art.verdict ? art.verdict.score : record.result && record.result.score;
  const label = art.verdict ? art.verdict.label : record.result && record.result.label;

  render(rolloutId,
    h("div.crumbs", {}, h("a", { href: "#/runs" }, "Runs"), " / ",
      h("a", { href: `#/runs/${encodeURIComponent(record.run_id)}` }, record.run_id), " / rollout"),
    h("h1", {}, rolloutId),
    h("div.meta", {},
      h("span", {}, "Status ", badge(record.status)),
      h("span", {}, "Task ", h("b.mono", {}, record.task_id)),
      record.instance_seed ? h("span", {}, "Instance ", h("b.mono", {}, String(record.instance_seed))) : null,
      h("span", {}, "Score ", h("b", {}, fmtScore(score)), label ? ` (${label})` : ""),
      art.verdict ? h("span", {}, "Checks ", h("b", {}, `${art.verdict.checks.filter((c) => c.passed).length}/${art.verdict.checks.length} passed`)) : null,
      h("span", {}, "Steps ", h("b", {}, `${record.current_step}/${record.max_steps}`)),
      h("span", {}, "Tokens ", h("b", {}, fmtInt(record.usage.total_tokens))),
      h("span", {}, "Time ", h("b", {}, record.timings.duration_ms === null ? "–" : fmtSeconds(record.timings.duration_ms / 1000))),
      record.termination_reason ? h("span", {}, "Ended by ", h("b", {}, record.termination_reason.replace(/_/g, " "))) : null,
    ),
    art.redacted ? h("p.muted", {}, "Tool arguments and results are redacted.") : null,
    h("h2", {}, "The story"),
    story(art, stepChanges(art, states)),
    h("h2", { id: "state-title" }, "State change"),
    stateChange(art.environment),
    h("h2", {}, "Verdict"),
    verdictSection(art.verdict, art.rubric, record),
  );
}

/** The trajectory as a story: the task, then each step's message, tool calls with their
 *  observations, and the NPC replies delivered in between. */
function story(art, changes) {
  const calls = new Map((art.tool_calls || []).map((c) => [c.call_id, c]));
  const npc = [...(art.npc_replies || [])].sort((a, b) => a.after_tool_calls - b.after_tool_calls);
  const out = h("div.story");
  let step = 0;
  let callsSoFar = 0;
  let npcIndex = 0;
  const deliverNpc = () => {
    while (npcIndex < npc.length && npc[npcIndex].after_tool_calls <= callsSoFar) out.append(npcTurn(npc[npcIndex++]));
  };
  const messages = art.trajectory || [];
  messages.forEach((m, i) => {
    if (m.role === "system") {
      out.append(h("details.turn", {}, h("summary", {}, h("b", {}, "System prompt")), h("div.text", {}, m.content || "")));
    } else if (m.role === "user") {
      const first = !messages.slice(0, i).some((x) => x.role === "user");
      out.append(h(`div.turn.${first ? "task" : "summary"}`, {},
        h("div.turn-head", {}, h("span.who", {}, first ? "Task" : "User")), h("div.text", {}, m.content || "")));
    } else if (m.role === "assistant") {
      const toolCalls = m.tool_calls || [];
      if (!toolCalls.length) {
        out.append(h("div.turn.answer", {}, h("div.turn-head", {}, h("span.who", {}, "Final answer")), h("div.text", {}, m.content || "(empty)")));
        return;
      }
      step += 1;
      const turn = h("section.turn.step", { "aria-label": `Step ${step}` },
        h("div.turn-head", {}, h("span.who", {}, `Step ${step}`), h("span.muted", {}, "assistant")),
        m.content ? h("div.text", {}, m.content) : null);
      out.append(turn);
      for (const tc of toolCalls) {
        const recorded = calls.get(tc.id);
        const answer = messages.find((x) => x.role === "tool" && x.tool_call_id === tc.id);
        turn.append(toolCall(tc, recorded, answer, changes && recorded ? changes[art.tool_calls.indexOf(recorded)] : undefined));
        callsSoFar += 1;
        deliverNpc();
      }
    } else if (m.role !== "tool") {
      out.append(h("div.turn.summary", {}, h("div.turn-head", {}, h("span.who", {}, m.role)), h("div.text", {}, m.content || "")));
    }
  });
  deliverNpc();
  if (!messages.length) out.append(h("p.muted", {}, "This rollout has not started."));
  return out;
}

function toolCall(tc, recorded, answer, changes) {
  const name = (recorded && recorded.tool_name) || tc.function.name;
  const args = (recorded && recorded.arguments) || tc.function.arguments;
  const observation = recorded ? recorded.observation : answer ? answer.content : null;
  const isError = recorded ? recorded.is_error : false;
  return h(`div.tool-call${isError ? ".error" : ""}`, { dataset: { tool: name } },
    h("div.head", {},
      h("span.muted.small", {}, "tool call"),
      h("span.name", {}, recorded && recorded.server ? `${recorded.server}.${name}` : name),
      isError ? h("span.badge.fail", {}, "error") : null,
      recorded ? h("span.muted.small", {}, `${recorded.latency_ms.toFixed(1)} ms`) : null),
    h("div.body", {},
      h("div.k", {}, "arguments"), h("pre.args", {}, pretty(args)),
      h("div.k", {}, "observation"),
      observation === null ? h("span.muted", {}, "no result recorded") : h("pre.obs", { tabindex: 0, "aria-label": `${name} result` }, readable(observation)),
      changes === undefined ? null : [h("div.k", {}, "state change"),
        changes.length ? diffList(changes) : h("span.muted.small", {}, "none")]),
  );
}

function npcTurn(reply) {
  const e = reply.email;
  return h("div.turn.npc", { dataset: { npc: reply.profile_id } },
    h("div.turn-head", {}, h("span.who", {}, `NPC reply · ${e.from}`), h("span.muted", {}, `to ${e.to.join(", ")}`),
      h("span.when", {}, `after tool call ${reply.after_tool_calls}`)),
    h("div", {}, h("b", {}, e.subject)),
    h("div.text", {}, e.body));
}

// ---------- the state change ----------

/** Which field identifies the items of an array of objects, if any: `id`, or an
 *  `…_id` named like the array, or any `…_id` whose values are unique. */
function keyOf(name, a, b) {
  const items = [...a, ...b];
  if (!items.length || !items.every((x) => x && typeof x === "object" && !Array.isArray(x))) return null;
  const unique = (k) => [a, b].every((list) => {
    const seen = new Set(list.map((x) => x[k]));
    return seen.size === list.length && list.every((x) => typeof x[k] === "string" || typeof x[k] === "number");
  });
  const candidates = Object.keys(items[0]).filter((k) => k === "id" || k.endsWith("_id"));
  const singular = String(name).replace(/s$/, "");
  const ranked = [
    ...candidates.filter((k) => k === "id"),
    ...candidates.filter((k) => k !== "id" && singular.includes(k.replace(/_id$/, ""))),
    ...candidates,
  ];
  return ranked.find(unique) || null;
}

function diff(before, after, path, out, name) {
  if (JSON.stringify(before) === JSON.stringify(after)) return;
  if (Array.isArray(before) && Array.isArray(after)) {
    const key = keyOf(name, before, after);
    if (key) {
      const was = new Map(before.map((x) => [x[key], x]));
      const now = new Map(after.map((x) => [x[key], x]));
      for (const [k, v] of now) {
        if (!was.has(k)) out.push({ kind: "added", path: `${path}[${k}]`, value: v });
        else diff(was.get(k), v, `${path}[${k}]`, out, k);
      }
      for (const [k, v] of was) if (!now.has(k)) out.push({ kind: "removed", path: `${path}[${k}]`, value: v });
      return;
    }
    if (before.length === after.length) {
      before.forEach((v, i) => diff(v, after[i], `${path}[${i}]`, out, i));
      return;
    }
  } else if (before && after && typeof before === "object" && typeof after === "object" && !Array.isArray(before) && !Array.isArray(after)) {
    for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) {
      const p = path ? `${path}.${k}` : k;
      if (!(k in before)) out.push({ kind: "added", path: p, value: after[k] });
      else if (!(k in after)) out.push({ kind: "removed", path: p, value: before[k] });
      else diff(before[k], after[k], p, out, k);
    }
    return;
  }
  out.push({ kind: "changed", path, was: before, now: after });
}

const short = (v) => {
  const text = JSON.stringify(v);
  return text.length > 160 ? `${text.slice(0, 157)}…` : text;
};

/** The change each tool call made, by its index in `tool_calls`, from the states the
 *  dashboard endpoint rebuilt (null when it could not: a remote environment). */
function stepChanges(art, states) {
  if (!states || !states.initial) return null;
  const changes = [];
  let previous = states.initial;
  (art.tool_calls || []).forEach((_, i) => {
    const next = states.after_call[String(i)];
    changes.push([]);
    if (next === undefined) return;
    diff(previous, next, "", changes[i], "");
    previous = next;
  });
  return changes;
}

function diffList(changes) {
  return h("ul.diff", {}, changes.map((c) => {
    if (c.kind === "changed") {
      return h("li", {}, h("span.path", {}, c.path), ": ", h("span.was", {}, short(c.was)), " → ", h("span.now", {}, short(c.now)));
    }
    return h("li", {}, h("span.path", {}, c.path), " ", h(`span.${c.kind}`, {}, c.kind), " ",
      h("details", {}, h("summary", {}, "show"), h("pre", {}, JSON.stringify(c.value, null, 2))));
  }));
}

function stateChange(environment) {
  const note = h("p.muted.small", {},
    "The environment before the first step compared with after the last, rebuilt from the recorded tool calls ",
    "(each tool call above shows its own part).");
  if (!environment || !environment.before || !environment.after) {
    return [h("p.muted", {}, "No environment state: the rollout used a remote environment or has not started.")];
  }
  const changes = [];
  diff(environment.before, environment.after, "", changes, "");
  if (!changes.length) return [note, h("p", {}, "Nothing changed.")];
  const list = diffList(changes);
  list.id = "rollout-diff";
  list.setAttribute("aria-labelledby", "state-title");
  return [note, h("div.panel", {}, list)];
}

// ---------- the verdict ----------

function verdictSection(verdict, rubric, record) {
  const parts = [];
  if (!verdict) {
    parts.push(h("p.muted", {}, record.status === "failed"
      ? `No verdict: the rollout failed${record.result && record.result.message ? ` (${record.result.message})` : ""}.`
      : "No verdict yet."));
  } else {
    const passed = verdict.checks.filter((c) => c.passed).length;
    parts.push(h("p", {}, h("b", {}, `${verdict.label} · score ${fmtScore(verdict.score)}`), ` — ${passed}/${verdict.checks.length} checks passed`));
    parts.push(h("div.table-wrap", {}, h("table.checks", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Result"), h("th", { scope: "col" }, "Check"),
        h("th", { scope: "col" }, "What it checks"), h("th", { scope: "col" }, "Reason"))),
      h("tbody", {}, verdict.checks.map((c) => h("tr.check", { dataset: { check: c.id, passed: c.passed } },
        h("td", {}, h(c.passed ? "span.check-pass" : "span.check-fail", {}, c.passed ? "✓ pass" : "✗ fail")),
        h("td.mono", {}, c.id),
        h("td", {}, c.description || ""),
        h("td", {}, c.reason || "")))))));
  }
  if (rubric) {
    parts.push(h("h3", {}, "Rubric grade"),
      h("p", {}, h("b", {}, rubric.status), rubric.judge ? ` by ${rubric.judge}` : "",
        rubric.score !== null && rubric.score !== undefined ? ` · score ${fmtScore(rubric.score)}` : "",
        rubric.label ? ` (${rubric.label})` : ""),
      h("p.text", {}, rubric.reason || ""),
      (rubric.criteria || []).length ? h("ul", {}, rubric.criteria.map((c) =>
        h("li", {}, h("b", {}, c.criterion), `: ${c.label} (${fmtScore(c.score)}) `, h("span.muted", {}, c.reason)))) : null);
  }
  return parts;
}

// ---------- start ----------

document.getElementById("forget-token").hidden = !token;
document.getElementById("forget-token").addEventListener("click", () => {
  localStorage.removeItem(TOKEN_KEY);
  token = "";
  document.getElementById("forget-token").hidden = true;
  route();
});
window.addEventListener("hashchange", route);
route();
