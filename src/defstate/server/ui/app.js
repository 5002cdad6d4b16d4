// defstate web UI: plain JavaScript, no build step, no dependencies.
// Every piece of project text is inserted with textContent (never as HTML).
"use strict";

const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
const CSRF = meta("defstate-csrf");
const ACTIONS_ENABLED = meta("defstate-actions") === "enabled";
const TOKEN_REQUIRED = meta("defstate-token-required") === "true";
const main = document.getElementById("main");
let generation = null;
let currentRender = null;

// ---- small helpers ----------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function chip(text, kind = "") {
  return el("span", { class: `chip ${kind}` }, text);
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    const error = new Error(body.error || `HTTP ${response.status}`);
    error.pointer = body.pointer; // a selection syntax error: the expression and a caret
    throw error;
  }
  return body;
}

async function act(name, body) {
  const headers = { "Content-Type": "application/json", "X-Defstate-CSRF": CSRF };
  const token = sessionStorage.getItem("defstate-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`/api/actions/${name}`, {
    method: "POST",
    headers,
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (response.status === 401) {
    const given = window.prompt("This action needs the server's token (DEFSTATE_UI_TOKEN):");
    if (given) {
      sessionStorage.setItem("defstate-token", given);
      return act(name, body);
    }
  }
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function short(version) {
  if (!version) return "—";
  return /^[0-9a-f-]{36}$/.test(version) ? version.slice(0, 8) : version;
}

function age(iso) {
  if (!iso) return "—";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)}s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function bytes(size) {
  if (size === null || size === undefined) return "—";
  if (size < 1024) return `${size} B`;
  if (size < 1024 * 1024) return `${(size / 1024).toFixed(1)} KiB`;
  return `${(size / 1024 / 1024).toFixed(1)} MiB`;
}

function toast(text, kind = "") {
  const notice = document.getElementById("notice");
  notice.textContent = text;
  notice.className = `notice ${kind}`;
  notice.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (notice.hidden = true), 6000);
}

function route() {
  const [path, query] = (location.hash.slice(1) || "/assets").split("?");
  return { view: path.split("/")[1] || "assets", params: new URLSearchParams(query || "") };
}

function go(view, params = {}) {
  const query = new URLSearchParams(params).toString();
  location.hash = `#/${view}${query ? "?" + query : ""}`;
}

function failed(error) {
  return el(
    "div",
    { class: "error", id: "error" },
    el("p", {}, String(error.message || error)),
    error.pointer ? el("pre", { class: "pointer" }, error.pointer.join("\n")) : null
  );
}

// ---- Assets -----------------------------------------------------------------------------
function assetRow(asset) {
  const detail = el("div", { class: "detail", hidden: true });
  const open = () => {
    if (!detail.hidden) return (detail.hidden = true);
    detail.replaceChildren(assetDetail(asset));
    detail.hidden = false;
  };
  const checks = asset.checks || [];
  return el(
    "div",
    { class: "asset", "data-key": asset.key },
    el(
      "div",
      { class: "asset-line" },
      el("button", { class: "link key", onclick: open, title: "details" }, asset.key),
      (asset.kinds || []).map((k) => chip(k, "kind")),
      (asset.owners || []).map((o) => chip(o, "owner")),
      Object.entries(asset.tags || {}).map(([k, v]) => chip(v ? `${k}=${v}` : k, "tag")),
      checks.length ? chip(`${checks.length} check${checks.length > 1 ? "s" : ""}`, "check") : null,
      el("span", { class: "desc" }, asset.description || ""),
      el(
        "a",
        { class: "lineage-link", href: `#/lineage?key=${encodeURIComponent(asset.key)}` },
        "lineage"
      )
    ),
    detail
  );
}

function assetDetail(asset) {
  const rows = [
    ["deps", (asset.deps || []).join(", ") || "—"],
    ["group", asset.group || "—"],
    ["component", asset.component || "—"],
  ];
  const checks = asset.checks || [];
  return el(
    "div",
    {},
    el("table", { class: "kv" }, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
    checks.length
      ? el(
          "div",
          {},
          el("h4", {}, "Checks"),
          el(
            "ul",
            { class: "checks" },
            checks.map((c) =>
              el("li", {}, typeof c === "string" ? c : `${c.name}${c.description ? " — " + c.description : ""}`)
            )
          )
        )
      : null,
    Object.keys(asset.metadata || {}).length
      ? el("div", {}, el("h4", {}, "Metadata"), el("pre", {}, JSON.stringify(asset.metadata, null, 2)))
      : null
  );
}

async function renderAssets(params) {
  const query = params.get("q") || "";
  const input = el("input", {
    id: "search",
    type: "search",
    placeholder: "select: group:warehouse and kind:table, +key:marts/*, owner:team:data — or type words to find",
    value: query,
    autocomplete: "off",
  });
  const results = el("div", { id: "results" }, el("p", { class: "muted" }, "loading…"));
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      history.replaceState(null, "", `#/assets${input.value ? "?q=" + encodeURIComponent(input.value) : ""}`);
      loadResults(input.value, results);
    }, 150);
  });
  main.replaceChildren(
    el("section", { class: "view assets" }, el("div", { class: "toolbar" }, input), results)
  );
  input.focus();
  await loadResults(query, results);
}

async function loadResults(query, results) {
  let answer;
  try {
    answer = await api(`/api/assets?q=${encodeURIComponent(query)}`);
  } catch (error) {
    return results.replaceChildren(failed(error));
  }
  if ((document.getElementById("search") || {}).value !== query) return; // a newer search runs
  const bySection = new Map();
  for (const asset of answer.assets) {
    const id = `${asset.group || ""}\u0000${asset.component || ""}`;
    if (!bySection.has(id)) bySection.set(id, []);
    bySection.get(id).push(asset);
  }
  const shown = [];
  const others = [];
  for (const section of answer.sections) {
    const id = `${section.group || ""}\u0000${section.component || ""}`;
    (bySection.has(id) ? shown : others).push([section, bySection.get(id) || []]);
  }
  const summary = el(
    "p",
    { class: "summary", id: "summary" },
    `${answer.matched} of ${answer.total} assets`,
    query ? (answer.selection ? ` selected by ${query}` : ` match “${query}”`) : "",
    answer.truncated ? ` — showing the first ${answer.assets.length}; narrow the search to see the rest` : ""
  );
  const sectionHeader = (section) =>
    el(
      "h3",
      { class: "section" },
      el("span", { class: "group" }, section.group || "(no group)"),
      el("span", { class: "component" }, section.component || ""),
      section.state_key ? chip(section.state_key, "statekey") : null,
      el("span", { class: "count" }, `${section.count}`)
    );
  const blocks = shown.map(([section, assets]) =>
    el("div", { class: "block" }, sectionHeader(section), assets.map(assetRow))
  );
  let rest = null;
  if (others.length) {
    rest = el("details", { class: "others" }, el("summary", {}, `${others.length} more components`));
    rest.addEventListener(
      "toggle",
      () => {
        if (rest.childElementCount > 1) return;
        rest.append(
          el(
            "ul",
            {},
            others.map(([section]) =>
              el(
                "li",
                {},
                el(
                  "button",
                  {
                    class: "link",
                    onclick: () => {
                      const search = document.getElementById("search");
                      search.value = section.component || section.group || "";
                      search.dispatchEvent(new Event("input"));
                    },
                  },
                  `${section.group || "(no group)"} · ${section.component || ""} (${section.count})`
                )
              )
            )
          )
        );
      },
      { once: false }
    );
  }
  results.replaceChildren(summary, ...blocks, rest || "");
  // bench/ui.py reads this mark: navigation start to the first asset list on screen
  if (!performance.getEntriesByName("defstate:assets-rendered").length) {
    performance.mark("defstate:assets-rendered");
  }
}

// ---- Lineage ----------------------------------------------------------------------------
async function renderLineage(params) {
  const key = params.get("key") || "";
  const up = Number(params.get("up") || 2);
  const down = Number(params.get("down") || 2);
  const keyInput = el("input", { id: "lineage-key", value: key, placeholder: "asset key, e.g. raw/orders" });
  const depth = (name, value) =>
    el(
      "label",
      {},
      `${name} `,
      el(
        "select",
        { id: `lineage-${name}` },
        [0, 1, 2, 3, 4, 5, 6, 8, 10].map((n) => el("option", { value: n, selected: n === value }, n))
      )
    );
  const show = () =>
    go("lineage", {
      key: keyInput.value.trim(),
      up: document.getElementById("lineage-up").value,
      down: document.getElementById("lineage-down").value,
    });
  keyInput.addEventListener("keydown", (e) => e.key === "Enter" && show());
  const graph = el("div", { id: "graph" });
  main.replaceChildren(
    el(
      "section",
      { class: "view lineage" },
      el(
        "div",
        { class: "toolbar" },
        keyInput,
        depth("up", up),
        depth("down", down),
        el("button", { onclick: show }, "Show")
      ),
      graph
    )
  );
  for (const select of main.querySelectorAll("select")) select.addEventListener("change", show);
  if (!key) {
    graph.append(el("p", { class: "muted" }, "Choose an asset (from the Assets view, or type its key)."));
    return;
  }
  let answer;
  try {
    answer = await api(`/api/lineage?key=${encodeURIComponent(key)}&up=${up}&down=${down}`);
  } catch (error) {
    return graph.replaceChildren(failed(error));
  }
  graph.replaceChildren(drawLineage(answer, up, down));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function drawLineage(answer, up, down) {
  const W = 200, H = 34, GAP_X = 56, GAP_Y = 12, MARGIN = 30; // MARGIN: room for "+N"
  const columns = new Map();
  for (const node of answer.nodes) {
    if (!columns.has(node.level)) columns.set(node.level, []);
    columns.get(node.level).push(node);
  }
  const levels = [...columns.keys()].sort((a, b) => a - b);
  const tallest = Math.max(...[...columns.values()].map((c) => c.length));
  const position = new Map();
  levels.forEach((level, column) => {
    const nodes = columns.get(level);
    const offset = ((tallest - nodes.length) * (H + GAP_Y)) / 2;
    nodes.forEach((node, row) =>
      position.set(node.key, { x: MARGIN + column * (W + GAP_X), y: 10 + offset + row * (H + GAP_Y) })
    );
  });
  const width = 2 * MARGIN + levels.length * (W + GAP_X) - GAP_X;
  const height = 20 + tallest * (H + GAP_Y);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "dag" });
  // wide neighbourhoods shrink to fit the page, but never below 60 % (then they scroll)
  root.style.width = `${Math.max(width * 0.6, Math.min(width, main.clientWidth - 40))}px`;
  root.append(
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto" }, svg("path", { d: "M0,0 L8,4 L0,8 z", class: "arrow" })))
  );
  const level = new Map(answer.nodes.map((n) => [n.key, n.level]));
  for (const [from, to] of answer.edges) {
    const a = position.get(from), b = position.get(to);
    let d;
    if (level.get(from) === level.get(to)) {
      // both the same distance from the focus: an arc beside their column
      const x = a.x + W, y1 = a.y + H / 2, y2 = b.y + H / 2, out = x + 22;
      d = `M${x},${y1} C${out},${y1} ${out},${y2} ${x},${y2}`;
    } else {
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mid = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
    }
    root.append(svg("path", { d, class: "edge", "marker-end": "url(#arrow)" }));
  }
  for (const node of answer.nodes) {
    const { x, y } = position.get(node.key);
    const label = node.key.length > 25 ? "…" + node.key.slice(-24) : node.key;
    const classes = ["node", node.level === 0 ? "focus" : "", node.external ? "external" : ""].join(" ");
    const group = svg(
      "g",
      { class: classes, transform: `translate(${x},${y})`, "data-key": node.key },
      svg("rect", { width: W, height: H, rx: 6 }),
      svg("text", { x: 10, y: 21 }, document.createTextNode(label))
    );
    const title = svg("title");
    title.textContent = `${node.key}${node.group ? " · " + node.group : ""}${node.external ? " (not defined by any component)" : ""}`;
    group.append(title);
    if (node.hidden_up) group.append(svg("text", { x: -4, y: 12, class: "more", "text-anchor": "end" }, document.createTextNode(`+${node.hidden_up}`)));
    if (node.hidden_down) group.append(svg("text", { x: W + 4, y: 12, class: "more" }, document.createTextNode(`+${node.hidden_down}`)));
    group.addEventListener("click", () => go("lineage", { key: node.key, up, down }));
    root.append(group);
  }
  const note = el(
    "p",
    { class: "summary", id: "lineage-summary" },
    `${answer.nodes.length} assets, ${answer.edges.length} edges around ${answer.key}`,
    answer.truncated ? " — cut at the node limit: lower the depth or click a node to move" : "",
    ". “+N”: neighbours beyond this view; click a node to centre on it."
  );
  return el("div", {}, note, el("div", { class: "graph-scroll" }, root));
}

// ---- State ------------------------------------------------------------------------------
function hostOf(row) {
  const version = row.latest && row.latest.version;
  const record = row.records.find((r) => r.version === version && r.status === "succeeded") || row.records[0];
  return record ? record.host : "—";
}

async function renderState(params) {
  const view = el("section", { class: "view state" }, el("p", { class: "muted" }, "reading state…"));
  main.replaceChildren(view);
  let answer;
  try {
    answer = await api("/api/state");
  } catch (error) {
    return view.replaceChildren(failed(error));
  }
  const head = ["key", "type", "in use", "latest", "", "age", "size", "sha256", "host", "last refresh", ""];
  const table = el(
    "table",
    { class: "grid", id: "state-table" },
    el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      answer.keys.map((row) => {
        const latest = row.latest || {};
        const inUse = row.in_use || {};
        const last = row.records[0];
        return el(
          "tr",
          { "data-key": row.key },
          el("td", {}, el("button", { class: "link", onclick: () => go("state", { key: row.key }) }, row.key)),
          el("td", { class: "muted" }, row.management_type),
          el("td", { class: "in-use mono", title: inUse.created_at || "" }, short(inUse.version)),
          el("td", { class: "latest mono", title: latest.created_at || "" }, short(latest.version)),
          el(
            "td",
            {},
            row.error ? chip("error", "bad") : row.out_of_date ? chip("out of date", "warn") : row.latest ? chip("current", "ok") : chip("no state", "warn")
          ),
          el("td", {}, age(latest.created_at)),
          el("td", {}, bytes(latest.size)),
          el("td", { class: "mono", title: latest.sha256 || "" }, latest.sha256 ? latest.sha256.slice(0, 12) : "—"),
          el("td", {}, hostOf(row)),
          el("td", { title: last && last.error ? last.error : "" }, last ? `${last.status} · ${last.trigger} · ${age(last.finished_at)} ago` : "—"),
          el("td", {}, actionButton("Refresh", () => act("refresh", { key: row.key }), `refresh ${row.key}`))
        );
      })
    )
  );
  const errors = answer.keys.filter((r) => r.error).map((r) => el("p", { class: "error" }, `[${r.key}] ${r.error}`));
  view.replaceChildren(
    el("p", { class: "summary" }, `${answer.keys.length} state keys; “in use” is the version this code location loaded.`),
    table,
    ...errors
  );
  const key = params.get("key");
  if (key) view.append(await keyHistory(key));
}

function actionButton(label, run, what) {
  const button = el("button", { class: "action", disabled: !ACTIONS_ENABLED, title: ACTIONS_ENABLED ? what : "actions are disabled on this server (see Health)" }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    button.textContent = `${label}…`;
    try {
      const answer = await run();
      const failures = (answer.report && answer.report.results || []).filter((r) => !r.ok);
      if (failures.length) toast(`${what}: ${failures.map((f) => f.error).join("; ")}`, "bad");
      else toast(`${what}: done${answer.health ? ", generation " + answer.health.generation : ""}`, "ok");
    } catch (error) {
      toast(`${what}: ${error.message}`, "bad");
    }
    rerender();
  });
  return button;
}

async function keyHistory(key) {
  const box = el("div", { class: "history", id: "history" }, el("h3", {}, `History of ${key}`));
  let history;
  try {
    history = await api(`/api/state/history?key=${encodeURIComponent(key)}`);
  } catch (error) {
    box.append(failed(error));
    return box;
  }
  const versioned = history.management_type === "VERSIONED_STATE_STORAGE";
  const versions = [...history.versions].reverse(); // newest first
  const diffBox = el("div", { id: "diff" });
  const picks = { old: versions[1] && versions[1].version, new: versions[0] && versions[0].version };
  const radio = (name, version) =>
    el("input", {
      type: "radio",
      name: `diff-${name}`,
      value: version,
      checked: picks[name] === version,
      onchange: () => (picks[name] = version),
    });
  box.append(
    el("h4", {}, "Versions"),
    el(
      "table",
      { class: "grid", id: "versions" },
      el("thead", {}, el("tr", {}, ["version", "created", "size", "sha256", versioned ? "old" : "", versioned ? "new" : "", ""].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        versions.map((v) =>
          el(
            "tr",
            { "data-version": v.version },
            el("td", { class: "mono", title: v.version }, short(v.version), v.version === history.latest ? chip("latest", "ok") : ""),
            el("td", { title: v.created_at }, `${age(v.created_at)} ago`),
            el("td", {}, bytes(v.size)),
            el("td", { class: "mono", title: v.sha256 || "" }, v.sha256 ? v.sha256.slice(0, 12) : "—"),
            el("td", {}, versioned ? radio("old", v.version) : ""),
            el("td", {}, versioned ? radio("new", v.version) : ""),
            el(
              "td",
              {},
              versioned && v.version !== history.latest
                ? actionButton("Roll back", () => act("rollback", { key, version: v.version }), `roll back ${key} to ${short(v.version)}`)
                : ""
            )
          )
        )
      )
    ),
    versioned && versions.length > 1
      ? el("button", { id: "diff-button", onclick: () => showDiff(key, picks, diffBox) }, "Diff selected versions")
      : null,
    diffBox,
    el("h4", {}, "Refresh records"),
    el(
      "table",
      { class: "grid", id: "records" },
      el("thead", {}, el("tr", {}, ["started", "trigger", "status", "attempts", "version", "bytes", "host", "error"].map((h) => el("th", {}, h)))),
      el(
        "tbody",
        {},
        history.records.map((r) =>
          el(
            "tr",
            {},
            el("td", { title: r.started_at }, `${age(r.started_at)} ago`),
            el("td", {}, r.trigger),
            el("td", {}, chip(r.status, r.status === "succeeded" ? "ok" : "bad")),
            el("td", {}, r.attempts),
            el("td", { class: "mono", title: r.version || "" }, short(r.version)),
            el("td", {}, bytes(r.bytes)),
            el("td", {}, r.host),
            el("td", { class: "error" }, r.error || "")
          )
        )
      )
    )
  );
  return box;
}

async function showDiff(key, picks, box) {
  box.replaceChildren(el("p", { class: "muted" }, "building both versions…"));
  try {
    const diff = await api(`/api/state/diff?key=${encodeURIComponent(key)}&old=${picks.old || ""}&new=${picks.new || ""}`);
    const list = (sign, keys, kind) => keys.map((k) => el("li", { class: kind }, `${sign} ${k}`));
    box.replaceChildren(
      el("p", { class: "summary" }, `${short(diff.old)} → ${short(diff.new)}: +${diff.added.length} −${diff.removed.length} ~${diff.changed.length}`),
      el("ul", { class: "diff" }, list("+", diff.added, "added"), list("−", diff.removed, "removed"), list("~", diff.changed, "changed"))
    );
  } catch (error) {
    box.replaceChildren(failed(error));
  }
}

// ---- Health -----------------------------------------------------------------------------
async function renderHealth() {
  const view = el("section", { class: "view health" }, el("p", { class: "muted" }, "loading…"));
  main.replaceChildren(view);
  let answer;
  try {
    answer = await api("/api/health");
  } catch (error) {
    return view.replaceChildren(failed(error));
  }
  const h = answer.health;
  const root = answer.project_root.replace(/\/$/, "") + "/";
  const relative = (file) => (file.startsWith(root) ? file.slice(root.length) : file);
  const kv = [
    ["status", h.status],
    ["generation", h.generation],
    ["loaded", h.loaded_at ? `${new Date(h.loaded_at).toLocaleString()} (${age(h.loaded_at)} ago)` : "—"],
    ["assets", h.assets],
    ["project", answer.project_root],
    ["mode", h.dev ? "dev (reloads on file changes)" : "serve"],
    ["actions", ACTIONS_ENABLED ? (TOKEN_REQUIRED ? "enabled (token required)" : "enabled (loopback)") : "disabled: not on loopback and no DEFSTATE_UI_TOKEN"],
  ];
  const errors = answer.errors.map((e) =>
    el(
      "li",
      { class: e.kind === "refresh" ? "warn" : "bad" },
      el("span", { class: "mono where", title: e.file || "" }, e.file ? `${relative(e.file)}:${e.line}` : e.component || ""),
      e.key ? chip(e.key, "statekey") : "",
      " ",
      e.message
    )
  );
  const schedules = answer.schedules;
  view.replaceChildren(
    el("div", { class: "toolbar" }, actionButton("Reload", () => act("reload"), "reload")),
    el("table", { class: "kv", id: "health-table" }, kv.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))),
    h.last_reload_error ? el("p", { class: "error" }, `last reload failed: ${h.last_reload_error}`) : "",
    el("h3", {}, `Load problems (${answer.errors.length})`),
    answer.errors.length ? el("ul", { class: "problems", id: "problems" }, errors) : el("p", { class: "muted" }, "none"),
    el("h3", {}, "Schedules", schedules.running ? "" : " (listed only: dev mode runs no schedules)"),
    schedules.error ? el("p", { class: "error" }, schedules.error) : "",
    schedules.schedules.length
      ? el(
          "table",
          { class: "grid", id: "schedules" },
          el("thead", {}, el("tr", {}, ["name", "cron", "keys", "next run"].map((x) => el("th", {}, x)))),
          el(
            "tbody",
            {},
            schedules.schedules.map((s) =>
              el("tr", {}, el("td", {}, s.name), el("td", { class: "mono" }, s.cron), el("td", {}, s.keys.join(", ")), el("td", { title: s.next_run }, new Date(s.next_run).toLocaleString()))
            )
          )
        )
      : el("p", { class: "muted" }, "no schedules ([tool.defstate.schedules.NAME] in pyproject.toml)"),
    el("h3", {}, "Refreshes of this load"),
    answer.refreshes.length
      ? el("ul", {}, answer.refreshes.map((r) => el("li", {}, `${r.key}: ${r.ok ? "ok" : "failed"}${r.error ? " — " + r.error : ""}`)))
      : el("p", { class: "muted" }, "none")
  );
}

// ---- shell: routing, status, live updates -------------------------------------------------
const VIEWS = { assets: renderAssets, lineage: renderLineage, state: renderState, health: renderHealth };

function rerender() {
  const { view, params } = route();
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.view === view);
  currentRender = (VIEWS[view] || renderAssets)(params);
  return currentRender;
}

function showStatus(health) {
  const status = document.getElementById("status");
  status.textContent = `${health.status} · generation ${health.generation ?? "—"} · ${health.assets} assets${health.load_errors ? ` · ${health.load_errors} problems` : ""}`;
  status.className = `status ${health.status === "ok" && !health.load_errors ? "ok" : "warn"}`;
  document.body.dataset.generation = health.generation ?? "";
}

function listen() {
  const live = document.getElementById("live");
  const events = new EventSource("/api/events");
  events.addEventListener("open", () => {
    live.textContent = "● live";
    live.className = "live on";
  });
  events.addEventListener("error", () => {
    live.textContent = "○ reconnecting";
    live.className = "live";
  });
  events.addEventListener("reload", (event) => {
    const health = JSON.parse(event.data);
    showStatus(health);
    if (generation !== null && health.generation !== generation) {
      toast(`reloaded: generation ${health.generation}`, "ok");
      rerender();
    } else if (health.last_reload_error && generation !== null) {
      toast(`reload failed: ${health.last_reload_error}`, "bad");
    }
    generation = health.generation;
  });
}

window.addEventListener("hashchange", rerender);
rerender();
listen();
