// The lpgauge web leaderboard: plain JavaScript, no framework, no build step.
// State lives in the URL (?pipeline=&model=&region=&sort=key:dir and
// #/orchestrator/0x…) so every view is a shareable link.
"use strict";
(function () {
  var $ = function (s, el) { return (el || document).querySelector(s); };
  var esc = function (s) { return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; }); };
  var COLORS = ["#36c98e", "#5b9cf0", "#f0b429", "#ef5b5b", "#b07cf0", "#4fd1d9", "#f08a5b"];
  var SORTS = { rank: "asc", orchestrator: "asc", score: "desc", success_rate: "desc", latency_score: "desc",
    server_p50: "asc", server_p95: "asc", samples: "desc", warm_probes: "desc" };
  var overview = null, rows = [], state = readState();

  function readState() {
    var q = new URLSearchParams(location.search);
    var sort = (q.get("sort") || "score").split(":");
    var key = SORTS[sort[0]] ? sort[0] : "score";
    return { pipeline: q.get("pipeline") || "", model: q.get("model") || "", region: (q.get("region") || "GLOBAL").toUpperCase(),
      sortKey: key, sortDir: sort[1] === "asc" || sort[1] === "desc" ? sort[1] : SORTS[key], find: q.get("q") || "" };
  }
  function writeState(push) {
    var q = new URLSearchParams();
    if (state.pipeline) { q.set("pipeline", state.pipeline); q.set("model", state.model); }
    if (state.region !== "GLOBAL") q.set("region", state.region);
    if (state.sortKey !== "score" || state.sortDir !== "desc") q.set("sort", state.sortKey + ":" + state.sortDir);
    if (state.find) q.set("q", state.find);
    var url = location.pathname + (q.toString() ? "?" + q.toString() : "") + location.hash;
    history[push ? "pushState" : "replaceState"](null, "", url);
  }
  function api(path) {
    return fetch(path).then(function (r) {
      return r.json().then(function (b) { if (!r.ok) throw new Error(b.error || r.statusText); return b; });
    });
  }
  var f2 = function (x) { return (x * 10).toFixed(2); };
  var pct = function (x) { return (x * 100).toFixed(0) + "%"; };
  var secs = function (x) { return x ? (x < 1 ? (x * 1000).toFixed(0) + " ms" : x.toFixed(2) + " s") : "—"; };
  var short = function (a) { return a.slice(0, 6) + "…" + a.slice(-4); };
  function ago(t) {
    if (!t) return "never";
    var s = Date.now() / 1000 - t;
    if (s < 90) return "just now";
    if (s < 5400) return Math.round(s / 60) + " min ago";
    if (s < 129600) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " days ago";
  }

  // ---- leaderboard ----
  function fillFilters() {
    var pm = $("#pm"), opts = [];
    overview.pipelines.forEach(function (p) {
      p.models.forEach(function (m) { opts.push({ p: p.id, m: m.id, regions: m.regions, n: m.orchestrators_tested }); });
    });
    if (!opts.length) { pm.innerHTML = "<option>No pipelines tested yet</option>"; return null; }
    var cur = opts.filter(function (o) { return o.p === state.pipeline && o.m === state.model; })[0] || opts[0];
    state.pipeline = cur.p; state.model = cur.m;
    pm.innerHTML = opts.map(function (o, i) {
      return "<option value='" + i + "'" + (o === cur ? " selected" : "") + ">" + esc(o.p + " – " + o.m) + " (" + o.n + ")</option>";
    }).join("");
    pm.onchange = function () { var o = opts[+pm.value]; state.pipeline = o.p; state.model = o.m; state.region = "GLOBAL"; fillRegions(o); writeState(true); loadRows(); };
    fillRegions(cur);
    return cur;
  }
  function fillRegions(o) {
    var sel = $("#region"), list = [{ id: "GLOBAL", name: "Global (all regions)" }].concat(o.regions);
    if (!list.some(function (r) { return r.id === state.region; })) state.region = "GLOBAL";
    sel.innerHTML = list.map(function (r) {
      return "<option value='" + esc(r.id) + "'" + (r.id === state.region ? " selected" : "") + ">" + esc(r.name) + "</option>";
    }).join("");
    sel.onchange = function () { state.region = sel.value; writeState(true); loadRows(); loadLive(); };
  }
  function loadRows() {
    var q = new URLSearchParams({ pipeline: state.pipeline, model: state.model, region: state.region });
    $("#table").setAttribute("aria-busy", "true");
    return api("api/leaderboard?" + q).then(function (b) { rows = b.rows; render(); })
      .catch(function (e) { rows = []; render(e.message); });
  }
  function render(err) {
    var key = state.sortKey, dir = state.sortDir === "asc" ? 1 : -1;
    var list = rows.filter(function (r) { return !state.find || r.orchestrator.indexOf(state.find.toLowerCase()) >= 0; });
    list.sort(function (a, b) {
      var x = a[key], y = b[key];
      if (key.indexOf("server_p") === 0 && !x !== !y) return x ? -1 : 1; // no timing sorts last either way
      if (x < y) return -dir; if (x > y) return dir; return a.rank - b.rank;
    });
    var top = Math.max.apply(null, rows.map(function (r) { return r.score; }).concat([1e-9]));
    $("#table tbody").innerHTML = list.map(function (r) {
      return "<tr data-orch='" + r.orchestrator + "'><td class='num'>" + r.rank + "</td>" +
        "<td><a class='addr' href='#/orchestrator/" + r.orchestrator + "' title='" + r.orchestrator + "'>" + short(r.orchestrator) + "</a>" + flagPills(r.flags) + "</td>" +
        "<td class='num'>" + f2(r.score) + "<span class='bar' style='width:" + Math.round(40 * r.score / top) + "px'></span></td>" +
        "<td class='num " + (r.success_rate < 0.9 ? "bad" : "") + "'>" + pct(r.success_rate) + "</td>" +
        "<td class='num'>" + f2(r.latency_score) + "</td><td class='num'>" + secs(r.server_p50) + "</td>" +
        "<td class='num hide-sm'>" + secs(r.server_p95) + "</td><td class='num hide-sm'>" + r.samples + "</td>" +
        "<td class='num hide-sm'>" + r.warm_probes + " / " + r.cold_probes + "</td></tr>";
    }).join("");
    document.querySelectorAll("#table th").forEach(function (th) {
      th.setAttribute("aria-sort", th.dataset.key === key ? (dir > 0 ? "ascending" : "descending") : "none");
    });
    var empty = $("#empty");
    empty.hidden = list.length > 0 && !err;
    empty.textContent = err ? "Could not load scores: " + err : "No orchestrator was tested for this pipeline, model and region in the last 24 hours.";
    $("#table").setAttribute("aria-busy", "false");
  }
  document.querySelectorAll("#table th").forEach(function (th) {
    th.onclick = function () {
      var k = th.dataset.key;
      if (state.sortKey === k) state.sortDir = state.sortDir === "asc" ? "desc" : "asc";
      else { state.sortKey = k; state.sortDir = SORTS[k]; }
      writeState(false); render();
    };
  });
  $("#find").value = state.find;
  $("#find").oninput = function () { state.find = this.value.trim(); writeState(false); render(); };

  // ---- live video (issue #16) ----
  // The live table: one row per orchestrator and live model, ranked by the
  // live score; the same columns on the orchestrator page (per region).
  function liveRows(list, withRegion) {
    return list.map(function (r) {
      return "<tr data-orch='" + esc(r.orchestrator) + "'><td class='num'>" + r.rank + "</td>" +
        "<td><a class='addr' href='#/orchestrator/" + esc(r.orchestrator) + "' title='" + esc(r.orchestrator) + "'>" + short(r.orchestrator) + "</a></td>" +
        "<td>" + esc(withRegion ? r.region + " · " + r.model : r.model) + "</td>" +
        "<td class='num live-score'>" + f2(r.score) + "</td>" +
        "<td class='num " + (r.success_rate < 0.9 ? "bad" : "") + "'>" + pct(r.success_rate) + "</td>" +
        "<td class='num'>" + secs(r.first_frame_p50) + "</td>" +
        "<td class='num'>" + secs(r.latency_p50) + " / " + secs(r.latency_p99) + "</td>" +
        "<td class='num " + (r.fps_ratio < 0.9 ? "bad" : "") + "'>" + pct(r.fps_ratio) + "</td>" +
        "<td class='num " + (r.stalls_per_minute > 0 ? "warn" : "") + "'>" + r.stalls_per_minute.toFixed(1) + "/min · " + pct(r.stall_share) + "</td>" +
        "<td class='num hide-sm'>" + r.sessions + "</td></tr>";
    }).join("");
  }
  function loadLive() {
    return api("api/live?" + new URLSearchParams({ region: state.region })).then(function (b) {
      $("#live").hidden = !b.rows.length;
      $("#live-table tbody").innerHTML = liveRows(b.rows, false);
      $("#live-formula").textContent = "Live score: " + b.formula + ". Time to first frame is shown, not scored.";
    }).catch(function () { $("#live").hidden = true; });
  }

  // ---- charts (inline SVG) ----
  var W = 600, H = 220, PL = 44, PR = 10, PT = 10, PB = 26;
  function chart(id, title, seriesList, t0, t1, fmt, fixedMax) {
    var ymax = fixedMax || 0;
    seriesList.forEach(function (s) { s.points.forEach(function (p) { ymax = Math.max(ymax, p.v); }); });
    if (!ymax) ymax = 1;
    var X = function (t) { return PL + (W - PL - PR) * (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5); };
    var Y = function (v) { return PT + (H - PT - PB) * (1 - v / ymax); };
    var g = "";
    for (var i = 0; i <= 4; i++) {
      var v = ymax * i / 4, y = Y(v).toFixed(1);
      g += "<line x1='" + PL + "' x2='" + (W - PR) + "' y1='" + y + "' y2='" + y + "' stroke='#262b35'/>" +
        "<text x='" + (PL - 6) + "' y='" + (+y + 4) + "' text-anchor='end' font-size='11' fill='#8a93a0'>" + fmt(v) + "</text>";
    }
    for (var j = 0; j <= 3; j++) {
      var t = t0 + (t1 - t0) * j / 3, d = new Date(t * 1000);
      g += "<text x='" + X(t).toFixed(1) + "' y='" + (H - 8) + "' text-anchor='" + (j === 0 ? "start" : j === 3 ? "end" : "middle") + "' font-size='11' fill='#8a93a0'>" +
        esc(d.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " " + d.toTimeString().slice(0, 5)) + "</text>";
    }
    seriesList.forEach(function (s) {
      var pts = s.points.map(function (p) { return X(p.t).toFixed(1) + "," + Y(p.v).toFixed(1); });
      g += "<polyline class='line' fill='none' stroke='" + s.color + "' stroke-width='2'" + (s.dash ? " stroke-dasharray='5 4'" : "") +
        " points='" + pts.join(" ") + "'/>";
      s.points.forEach(function (p, k) {
        g += "<circle class='pt' data-series='" + esc(s.name) + "' cx='" + pts[k].split(",")[0] + "' cy='" + pts[k].split(",")[1] +
          "' r='3' fill='" + s.color + "'><title>" + esc(s.name + " " + new Date(p.t * 1000).toLocaleString() + ": " + fmt(p.v) + " (" + p.n + " probes)") + "</title></circle>";
      });
    });
    var legend = seriesList.map(function (s) { return "<span><i style='background:" + s.color + "'></i>" + esc(s.name) + "</span>"; }).join("");
    return "<div class='chart' id='" + id + "'><h3>" + esc(title) + "</h3><svg viewBox='0 0 " + W + " " + H + "' role='img' aria-label='" + esc(title) + "'>" + g +
      "</svg><div class='legend'>" + legend + "</div></div>";
  }

  // ---- orchestrator page ----
  function showOrch(addr) {
    $("#board").hidden = true;
    var el = $("#orch"); el.hidden = false;
    el.innerHTML = "<p class='muted'>Loading " + esc(addr) + "…</p>";
    var bucket = new URLSearchParams(location.hash.split("?")[1] || "").get("bucket") || "hour";
    api("api/orchestrators/" + encodeURIComponent(addr) + "?bucket=" + encodeURIComponent(bucket)).then(function (p) { drawOrch(p, bucket); })
      .catch(function (e) { el.innerHTML = "<p><a href='./'>← leaderboard</a></p><p class='bad'>" + esc(e.message) + "</p>"; });
  }
  function drawOrch(p, bucket) {
    var el = $("#orch"), c = p.on_chain, h = "";
    h += "<p><a href='./" + location.search + "'>← leaderboard</a></p><h2 class='addr'>" + esc(p.address) + "</h2>";
    h += "<div class='cards'>";
    h += card("Last tested", ago(p.last_tested), p.last_tested ? new Date(p.last_tested * 1000).toLocaleString() : "no tester has reached it");
    h += card("Failures since last success", p.failure_streak, p.failure_streak ? "<span class='bad'>failing now</span>" : "in the last 24 h");
    if (c && c.error) h += card("On chain", "unavailable", esc(c.error));
    else if (c) {
      h += card("On chain", c.registered ? (c.active ? "<span class='ok'>active</span>" : "<span class='warn'>inactive</span>") : "<span class='bad'>not registered</span>", c.service_uri ? esc(c.service_uri) : "no service URI");
      h += card("Total stake", c.total_stake_lpt.toLocaleString(undefined, { maximumFractionDigits: 2 }) + " LPT", "");
      h += card("Reward cut / fee share", c.reward_cut_percent.toFixed(2) + "% / " + c.fee_share_percent.toFixed(2) + "%", "");
    }
    if (p.service_uri_seen) h += card("URI the testers probed", "<span class='addr'>" + esc(p.service_uri_seen) + "</span>", "");
    h += "</div>";

    if (p.flags && p.flags.length) {
      h += "<h2>Flags</h2><div class='scroll'><table id='flags'><thead><tr><th>Flag</th><th>Where</th><th>What was seen</th></tr></thead><tbody>" +
        p.flags.map(function (f) {
          return "<tr><td>" + flagPills([f.code]) + "</td><td>" + esc(f.region ? f.region + " · " + f.pipeline + " – " + f.model : "all pipelines") +
            "</td><td>" + esc(f.detail) + "</td></tr>";
        }).join("") + "</tbody></table></div>";
    }
    h += "<h2>Scores (last 24 h)</h2>";
    if (!p.scores.length) h += "<p class='muted'>No scored probes in the last 24 hours" + (p.errors.length ? " — see the errors below." : ".") + "</p>";
    else h += "<div class='scroll'><table><thead><tr><th>Pipeline / model</th><th>Region</th><th class='num'>Rank</th><th class='num'>Score</th><th class='num'>Success</th><th class='num'>Latency</th><th class='num'>p50 server</th><th class='num'>p95 server</th><th class='num'>Samples</th></tr></thead><tbody>" +
      p.scores.map(function (s) {
        return "<tr><td>" + esc(s.pipeline + " – " + s.model) + "</td><td>" + esc(s.region) + "</td><td class='num'>" + s.rank + " of " + s.of + "</td><td class='num'>" + f2(s.score) +
          "</td><td class='num'>" + pct(s.success_rate) + "</td><td class='num'>" + f2(s.latency_score) + "</td><td class='num'>" + secs(s.server_p50) +
          "</td><td class='num'>" + secs(s.server_p95) + "</td><td class='num'>" + s.samples + "</td></tr>";
      }).join("") + "</tbody></table></div>";

    // History: one chart set per pipeline/model.
    var pms = [];
    p.history.series.forEach(function (s) { var k = s.pipeline + " – " + s.model; if (pms.indexOf(k) < 0) pms.push(k); });
    h += "<h2>History <small class='muted'>(" + esc(bucket === "day" ? "daily, 30 days" : "hourly, 48 h") + ")</small> " +
      "<a href='#/orchestrator/" + p.address + "?bucket=" + (bucket === "day" ? "hour" : "day") + "'>" + (bucket === "day" ? "hourly" : "daily") + "</a></h2>";
    if (!pms.length) h += "<p class='muted'>No history yet.</p>";
    // The x axis spans the data (half a bucket either side), not the whole
    // look-back, so a few points are not crammed into one corner.
    var half = (bucket === "day" ? 86400 : 3600) / 2, t0 = Infinity, t1 = -Infinity;
    p.history.series.forEach(function (s) { s.points.forEach(function (pt) { t0 = Math.min(t0, pt.t - half); t1 = Math.max(t1, pt.t + half); }); });
    pms.forEach(function (k, pi) {
      var ss = p.history.series.filter(function (s) { return s.pipeline + " – " + s.model === k; });
      var mk = function (field, dash, suffix) {
        return ss.map(function (s, i) {
          return { name: s.region + (suffix || ""), color: COLORS[i % COLORS.length], dash: dash,
            points: s.points.map(function (pt) { return { t: pt.t, v: pt[field], n: pt.samples }; }).filter(function (pt) { return field.indexOf("server") < 0 || pt.v > 0; }) };
        });
      };
      h += "<h3>" + esc(k) + "</h3><div class='charts'>" +
        chart("chart-score-" + pi, "Score (0–10)", mk("score"), t0, t1, function (v) { return (v * 10).toFixed(1); }, 1) +
        chart("chart-success-" + pi, "Success rate", mk("success_rate"), t0, t1, function (v) { return (v * 100).toFixed(0) + "%"; }, 1) +
        chart("chart-server-" + pi, "Server time p50 (solid) / p95 (dashed)", mk("server_p50", false, " p50").concat(mk("server_p95", true, " p95")), t0, t1, function (v) { return v.toFixed(1) + "s"; }) +
        "</div>";
    });

    if (p.phases.length) {
      var maxT = Math.max.apply(null, p.phases.map(function (x) { return x.discovery_p50 + x.upload_p50 + x.server_p50 + x.download_p50; }));
      var PH = [["discovery_p50", "#8a93a0", "discovery"], ["upload_p50", "#5b9cf0", "upload"], ["server_p50", "#36c98e", "server"], ["download_p50", "#f0b429", "download"]];
      // Where the orchestrator reports it, server splits into waiting in its
      // queue (busy) and inference (slow), issue #19.
      var SPLIT = [["discovery_p50", "#8a93a0", "discovery"], ["upload_p50", "#5b9cf0", "upload"], ["queue_p50", "#c678dd", "queue"], ["inference_p50", "#36c98e", "inference"], ["download_p50", "#f0b429", "download"]];
      var split = function (x) { return x.queue_p50 > 0 || x.inference_p50 > 0; };
      h += "<h2>Where the time goes (median per phase)</h2><div class='legend'>" + (p.phases.some(split) ? PH.concat([SPLIT[2], SPLIT[3]]) : PH).map(function (x) { return "<span><i style='background:" + x[1] + "'></i>" + x[2] + "</span>"; }).join("") +
        "</div><div class='scroll'><table><thead><tr><th>Pipeline / model</th><th>Region</th><th>Model</th><th>Phases</th><th class='num'>Total p50</th></tr></thead><tbody>" +
        p.phases.map(function (x) {
          return "<tr><td>" + esc(x.pipeline + " – " + x.model) + "</td><td>" + esc(x.region) + "</td><td>" + (x.warm ? "warm" : "cold") + "</td><td><div class='phase' style='width:" +
            Math.max(8, Math.round(240 * (x.discovery_p50 + x.upload_p50 + x.server_p50 + x.download_p50) / (maxT || 1))) + "px'>" +
            (split(x) ? SPLIT : PH).map(function (ph) { return "<span title='" + ph[2] + " " + secs(x[ph[0]]) + "' style='flex:" + x[ph[0]] + ";background:" + ph[1] + "'></span>"; }).join("") +
            "</div></td><td class='num'>" + secs(x.total_p50) + "</td></tr>";
        }).join("") + "</tbody></table></div>";
    }

    h += "<div id='orch-live'></div>";
    h += "<h2>Recent errors</h2>";
    if (!p.errors.length) h += "<p class='muted'>No failed probes in the last 24 hours.</p>";
    else h += "<div class='scroll'><table id='errors'><thead><tr><th>Class</th><th>Code</th><th class='num'>Count</th><th>Where</th><th>Last seen</th><th>Last message</th></tr></thead><tbody>" +
      p.errors.map(function (e) {
        return "<tr><td><span class='pill " + (e.outcome === "excused" ? "warn" : "bad") + "'>" + esc(e.error_class || e.outcome) + "</span>" + (e.outcome === "excused" ? " <small class='muted'>(" + (e.error_class === "capacity" ? "busy" : "tester side") + ", not scored)</small>" : "") +
          "</td><td>" + esc(e.error_code) + "</td><td class='num'>" + e.count + "</td><td>" + esc(e.region + " · " + e.pipeline + " – " + e.model) +
          "</td><td>" + ago(e.last_seen) + "</td><td class='muted'>" + esc(e.last_message) + "</td></tr>";
      }).join("") + "</tbody></table></div>";
    el.innerHTML = h;
    window.scrollTo(0, 0);
    api("api/live?" + new URLSearchParams({ orchestrator: p.address })).then(function (b) {
      if (!b.rows.length) return;
      $("#orch-live").innerHTML = "<h2>Live video</h2><div class='scroll'><table id='orch-live-table'><thead><tr><th class='num'>Rank</th><th>Orchestrator</th><th>Region · model</th>" +
        "<th class='num'>Live score</th><th class='num'>Success</th><th class='num'>First frame</th><th class='num'>Latency p50 / p99</th><th class='num'>FPS held</th>" +
        "<th class='num'>Stalls</th><th class='num hide-sm'>Sessions</th></tr></thead><tbody>" + liveRows(b.rows, true) + "</tbody></table></div>";
    }).catch(function () {});
  }
  // Gaming flags (issue #17): shown beside the orchestrator, explained on its page.
  var FLAG_NAMES = { probe_favouritism: "serves probes better than real traffic", capacity_refusals: "refuses for capacity far above the network" };
  function flagPills(codes) {
    return (codes || []).map(function (c) {
      return " <span class='pill bad flag' data-flag='" + esc(c) + "' title='" + esc(FLAG_NAMES[c] || c) + "'>⚑ " + esc(c.replace(/_/g, " ")) + "</span>";
    }).join("");
  }
  function card(label, value, sub) { return "<div class='card'><small>" + esc(label) + "</small><b>" + value + "</b><small>" + sub + "</small></div>"; }

  // ---- routing ----
  function route() {
    var m = location.hash.match(/^#\/orchestrator\/([^?]+)/);
    if (m) { showOrch(decodeURIComponent(m[1])); return; }
    $("#orch").hidden = true; $("#board").hidden = false;
    if (overview) { state = readState(); var cur = fillFilters(); if (cur) { writeState(false); loadRows(); } loadLive(); }
  }
  window.addEventListener("hashchange", route);
  window.addEventListener("popstate", route);
  api("api/overview").then(function (o) {
    overview = o;
    $("#summary").textContent = o.orchestrators_tested + " orchestrators tested, " + o.orchestrators_passing + " passing, " +
      o.pipelines.length + " pipelines, " + o.regions.length + " regions · last test " + ago(o.last_tested);
    if (location.hash.indexOf("#/orchestrator/") === 0) { route(); fillFilters(); return; }
    var cur = fillFilters();
    if (cur) { writeState(false); loadRows(); } else render();
    loadLive();
  }).catch(function (e) { $("#summary").textContent = "Could not load the overview: " + e.message; });
})();
