// Live figures on the model page: one websocket (/ws/live/models/<name>/) pushes the last
// minute's figures once a second; four small canvas charts are redrawn from them, and the live
// table gets one row per version, cloned from the page's <template id="live-row"> (the markup
// lives in the Django template, beside the header) and filled with textContent.
(function () {
  "use strict";
  const COLORS = ["#2f5bea", "#e07b00", "#1a7f45", "#9b3bd1", "#c0362c"];

  function draw(canvas, lines, unit) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 30;
    ctx.clearRect(0, 0, w, h);
    const points = lines.flatMap((l) => l.points);
    if (!points.length) {
      ctx.fillStyle = "#687085"; ctx.font = "13px system-ui";
      ctx.fillText("no traffic in the last minute", pad, h / 2);
      return 0;
    }
    const t0 = Math.min(...points.map((p) => p[0])), t1 = Math.max(...points.map((p) => p[0]), t0 + 1);
    const top = Math.max(...points.map((p) => p[1]), 1e-9) * 1.1;
    const x = (t) => pad + ((t - t0) / (t1 - t0)) * (w - pad - 8);
    const y = (v) => h - 18 - (v / top) * (h - 30);
    ctx.strokeStyle = "#e2e5ec"; ctx.beginPath(); ctx.moveTo(pad, y(0)); ctx.lineTo(w - 8, y(0)); ctx.stroke();
    ctx.fillStyle = "#687085"; ctx.font = "11px system-ui";
    ctx.fillText(top.toPrecision(3) + (unit || ""), 2, 12);
    lines.forEach((line, i) => {
      ctx.strokeStyle = line.color || COLORS[i % COLORS.length]; ctx.setLineDash(line.dash || []);
      ctx.beginPath();
      line.points.forEach((p, j) => (j ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1]))));
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle; ctx.fillText(line.label, w - 150 + (i % 2) * 70, 12 + Math.floor(i / 2) * 12);
    });
    ctx.setLineDash([]);
    return points.length;
  }

  function series(versions, key, suffix, dash) {
    return versions.map((v, i) => ({
      label: "v" + v.version + (suffix || ""), color: COLORS[i % COLORS.length], dash: dash,
      points: v.series.filter((p) => p[key] !== null && p[key] !== undefined).map((p) => [p.t, p[key]]),
    }));
  }

  function cell(value, digits) {
    return value === null || value === undefined ? "–" : Number(value).toFixed(digits === undefined ? 1 : digits);
  }

  // A row's texts, by the data-field names of the row template's cells.
  function rowTexts(v) {
    const s = v.summary, ms = s.latency_ms;
    return {
      version: "v" + v.version, rps: cell(s.rps, 2), errors: String(s.errors),
      p50: cell(ms.total.p50), p95: cell(ms.total.p95), p99: cell(ms.total.p99),
      queue_p99: cell(ms.queue.p99), compute_p99: cell(ms.compute.p99), batch: cell(s.mean_batch_rows),
      in_flight: cell(s.in_flight), queued: String(v.queue_depth), workers: String(v.workers.length),
    };
  }

  function fillTable(table, versions) {
    const row = table.querySelector("template#live-row").content.firstElementChild;
    table.tBodies[0].replaceChildren(...versions.map((v) => {
      const tr = row.cloneNode(true), texts = rowTexts(v);
      tr.dataset.version = String(v.version);
      tr.querySelectorAll("[data-field]").forEach((td) => { td.textContent = texts[td.dataset.field] ?? "–"; });
      return tr;
    }));
  }

  function render(root, data) {
    if (data.error) { root.dataset.error = data.error; return; }
    const versions = data.versions;
    let drawn = 0;
    drawn += draw(document.getElementById("chart-latency"),
      series(versions, "p50_ms", " p50").concat(series(versions, "p99_ms", " p99", [4, 3])), " ms");
    drawn += draw(document.getElementById("chart-rps"), series(versions, "rps"), "/s");
    drawn += draw(document.getElementById("chart-errors"), series(versions, "errors"), "/s");
    drawn += draw(document.getElementById("chart-batch"), series(versions, "mean_batch_rows"), "");
    root.dataset.updates = String(Number(root.dataset.updates || 0) + 1);
    root.dataset.points = String(drawn);
    root.dataset.requests = String(versions.reduce((n, v) => n + v.summary.requests, 0));
    const table = document.getElementById("live-table");
    if (table) fillTable(table, versions);
  }

  function connect(root) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + root.dataset.url);
    socket.onmessage = (event) => render(root, JSON.parse(event.data));
    socket.onclose = (event) => {
      root.dataset.closed = String(event.code);
      if (event.code < 4000) setTimeout(() => connect(root), 2000);  // 44xx: refused, don't retry
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("live-charts");
    if (root) connect(root);
  });
})();
