"use strict";
// The cache dashboard: one page, no dependencies. The token is asked once,
// kept in sessionStorage (gone when the tab closes) and sent as a bearer
// header, never in a URL.
(function () {
  const TOKEN_KEY = "tagcache-admin-token";
  const POLL_MS = 3000;
  // The admin router's own path, wherever it is nested.
  const base = location.pathname.replace(/\/+$/, "");
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let cacheName = "";
  let routes = [];
  let sort = { key: "requests", descending: true };
  let cursors = [null];
  let page = 0;

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  async function api(path, body) {
    const init = { headers: { Authorization: "Bearer " + token() }, cache: "no-store" };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(base + path, init);
    } catch (e) {
      return { status: 0, body: { error: "network", message: "the server did not answer" } };
    }
    let parsed = null;
    try { parsed = await response.json(); } catch (e) { parsed = null; }
    if (response.status === 401) {
      signOut("The token was refused.");
    }
    return { status: response.status, body: parsed };
  }

  function text(node, value) { node.textContent = value; }
  function percent(ratio) { return ratio === null || ratio === undefined ? "–" : (ratio * 100).toFixed(1) + " %"; }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }
  function cell(row, value, cls) {
    const td = document.createElement("td");
    td.textContent = value;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (timer) { clearInterval(timer); timer = null; }
    $("dashboard").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    const error = $("login-error");
    error.hidden = !message;
    text(error, message || "");
  }

  async function signIn() {
    const stats = await api("/stats");
    if (stats.status !== 200) {
      if (stats.status !== 401) signOut("The admin API answered " + stats.status + ".");
      return;
    }
    $("login").hidden = true;
    $("dashboard").hidden = false;
    $("logout").hidden = false;
    $("login-error").hidden = true;
    renderStats(stats.body);
    await Promise.all([refreshHealth(), refreshInvalidations(), listEntries()]);
    timer = setInterval(refresh, POLL_MS);
  }

  async function refresh() {
    const stats = await api("/stats");
    if (stats.status === 200) renderStats(stats.body);
    await Promise.all([refreshHealth(), refreshInvalidations()]);
  }

  function renderStats(stats) {
    cacheName = stats.cache;
    text($("cache-name"), stats.cache);
    const overall = stats.overall;
    text($("rps"), overall.windows.requests_per_second_1m.toFixed(1));
    text($("ratio-1m"), percent(overall.windows.hit_ratio_1m));
    text($("ratio-5m"), percent(overall.windows.hit_ratio_5m));
    text($("ratio-all"), percent(overall.hit_ratio));
    const store = stats.store;
    if (store.budget) {
      const used = Math.min(100, 100 * (store.bytes || 0) / store.budget);
      $("memory-used").setAttribute("width", used.toFixed(2));
      text($("memory-text"), bytes(store.bytes) + " of " + bytes(store.budget) + " · " + (store.evictions || 0) + " evictions");
    } else {
      text($("memory-text"), "not known for the " + store.kind + " store");
    }
    const facts = ["kind " + store.kind];
    if (store.entries !== null) facts.push(store.entries + " entries");
    if (store.tag_stamps !== null) facts.push(store.tag_stamps + " tag stamps");
    if (store.feed !== null) facts.push("feed " + store.feed.replace("_", " "));
    if (store.breaker_open !== null) facts.push("breaker " + (store.breaker_open ? "open" : "closed"));
    text($("store-text"), facts.join(" · "));
    routes = stats.routes.map((r) => Object.assign({}, r, {
      requests: r.hits + r.misses + r.stale + r.collapsed + r.bypasses,
    }));
    renderRoutes();
    renderChart(stats.series);
    const select = $("entries-route");
    const chosen = select.value;
    const names = stats.routes.map((r) => r.route);
    const have = Array.from(select.options).slice(1).map((o) => o.value);
    if (names.join("\n") !== have.join("\n")) {
      while (select.options.length > 1) select.remove(1);
      for (const name of names) select.add(new Option(name, name));
      select.value = names.includes(chosen) ? chosen : "";
    }
  }

  function renderRoutes() {
    const key = sort.key;
    const sorted = routes.slice().sort((a, b) => {
      const x = a[key], y = b[key];
      let order;
      if (typeof x === "string") order = x.localeCompare(y);
      else order = (x === null ? -1 : x) - (y === null ? -1 : y);
      return sort.descending ? -order : order;
    });
    const body = $("routes").tBodies[0];
    body.replaceChildren();
    for (const r of sorted) {
      const row = document.createElement("tr");
      row.dataset.route = r.route;
      const fields = [
        ["route", r.route], ["requests", r.requests], ["hits", r.hits], ["misses", r.misses],
        ["stale", r.stale], ["collapsed", r.collapsed], ["bypasses", r.bypasses],
        ["not_stored", r.not_stored], ["hit_ratio", percent(r.hit_ratio)],
        ["hit_ratio_1m", percent(r.hit_ratio_1m)], ["hit_ratio_5m", percent(r.hit_ratio_5m)],
      ];
      for (const [name, value] of fields) cell(row, String(value)).dataset.field = name;
      body.appendChild(row);
    }
    for (const button of document.querySelectorAll("#routes th button")) {
      if (button.dataset.sort === key) button.setAttribute("aria-sort", sort.descending ? "descending" : "ascending");
      else button.removeAttribute("aria-sort");
    }
  }

  function renderChart(series) {
    const width = 600, height = 150;
    const points = series.slice(-60);
    const max = Math.max(1, ...points.map((p) => p.requests));
    text($("chart-max"), String(max));
    const x = (i) => (points.length < 2 ? 0 : (i * width) / (points.length - 1)).toFixed(1);
    $("chart-requests").setAttribute("points", points.map((p, i) => x(i) + "," + (height - (p.requests / max) * (height - 10)).toFixed(1)).join(" "));
    const ratio = [];
    points.forEach((p, i) => {
      const cacheable = p.answered + p.misses;
      if (cacheable > 0) ratio.push(x(i) + "," + (height - (p.answered / cacheable) * (height - 10)).toFixed(1));
    });
    $("chart-ratio").setAttribute("points", ratio.join(" "));
  }

  async function refreshHealth() {
    const health = await api("/health");
    const badge = $("health");
    if (!health.body || !health.body.status) { text(badge, "unknown"); badge.className = "badge"; return; }
    text(badge, health.body.status);
    badge.className = "badge " + health.body.status;
    const list = $("failing");
    list.replaceChildren();
    for (const check of health.body.checks || []) {
      if (check.status === "pass") continue;
      const item = document.createElement("li");
      item.textContent = check.name + " (" + check.status + "): " + check.detail;
      list.appendChild(item);
    }
  }

  async function refreshInvalidations() {
    const log = await api("/invalidations?limit=20");
    if (log.status !== 200) return;
    const body = $("invalidations").tBodies[0];
    body.replaceChildren();
    for (const record of log.body.invalidations) {
      const row = document.createElement("tr");
      cell(row, new Date(record.at_unix_ms).toLocaleTimeString());
      cell(row, record.kind);
      cell(row, record.tags.join(", ") + (record.more_tags ? " (+" + record.more_tags + ")" : ""), "key");
      cell(row, record.source.kind + (record.source.name ? " " + record.source.name : ""));
      cell(row, record.error || "");
      body.appendChild(row);
    }
  }

  async function listEntries() {
    const params = new URLSearchParams();
    const route = $("entries-route").value;
    const prefix = $("entries-prefix").value.trim();
    if (route) params.set("route", route);
    if (prefix) params.set("prefix", prefix);
    params.set("limit", "25");
    if (cursors[page]) params.set("cursor", cursors[page]);
    const listing = await api("/entries?" + params.toString());
    const error = $("entries-error");
    const body = $("entries").tBodies[0];
    if (listing.status !== 200) {
      error.hidden = false;
      text(error, (listing.body && listing.body.message) || ("the listing answered " + listing.status));
      return;
    }
    error.hidden = true;
    body.replaceChildren();
    for (const entry of listing.body.entries) {
      const row = document.createElement("tr");
      cell(row, entry.route);
      cell(row, entry.key, "key");
      cell(row, entry.per_user ? "yes" : "no");
      cell(row, Object.entries(entry.vary).map(([k, v]) => k + "=" + (v === null ? "∅" : v)).join("; "));
      cell(row, bytes(entry.size_bytes));
      cell(row, entry.age_secs + " s");
      cell(row, entry.ttl_left_secs + " s");
      cell(row, entry.state);
      cell(row, entry.tags.join(", "), "key");
      body.appendChild(row);
    }
    cursors[page + 1] = listing.body.next_cursor;
    $("entries-next").disabled = !listing.body.next_cursor;
    $("entries-prev").disabled = page === 0;
  }

  function result(id, reply, success) {
    const node = $(id);
    if (reply.status === 200) {
      node.className = "result ok";
      text(node, success);
    } else {
      node.className = "result err";
      text(node, (reply.body && reply.body.message) || ("failed: " + reply.status));
    }
  }

  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    signIn();
  });
  $("logout").addEventListener("click", () => signOut(""));
  for (const button of document.querySelectorAll("#routes th button")) {
    button.addEventListener("click", () => {
      const key = button.dataset.sort;
      sort = { key: key, descending: sort.key === key ? !sort.descending : key !== "route" };
      renderRoutes();
    });
  }
  $("invalidate-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const tags = $("invalidate-tags").value.split(",").map((t) => t.trim()).filter((t) => t);
    const reply = await api("/invalidate", { tags: tags, soft: $("invalidate-soft").checked });
    result("invalidate-result", reply, "Invalidated " + tags.join(", ") + ".");
    refresh();
  });
  $("purge-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const reply = await api("/purge", { key: $("purge-key").value.trim() });
    result("purge-result", reply, "Purged.");
    refresh();
  });
  $("purge-all-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const typed = $("purge-all-confirm").value;
    if (typed !== cacheName) {
      const node = $("purge-all-result");
      node.className = "result err";
      text(node, "Type the cache's name (" + cacheName + ") to confirm.");
      return;
    }
    const reply = await api("/purge-all", { confirm: typed });
    result("purge-all-result", reply, "Everything was purged.");
    $("purge-all-confirm").value = "";
    refresh();
  });
  $("entries-form").addEventListener("submit", (event) => {
    event.preventDefault();
    cursors = [null];
    page = 0;
    listEntries();
  });
  $("entries-next").addEventListener("click", () => { page += 1; listEntries(); });
  $("entries-prev").addEventListener("click", () => { page = Math.max(0, page - 1); listEntries(); });

  if (token()) signIn(); else signOut("");
})();
