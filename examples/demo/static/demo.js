// The demo page: one stream on /events/ through sse_kit.js (SSEKit), the live
// charts drawn from the hub's metric events, and the forms that publish.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const TYPES = ["connected", "message", "notice", "job", "metric", "missed", "error"];
  const MAX_ROWS = 200;
  const POINTS = 30; // chart points kept: half a minute of metric ticks

  const jobs = new Map();
  let resume = null; // the cut being followed, until every missed event is back
  // What the page saw, for the browser tests and the curious (devtools: demo.seen).
  const seen = [];
  window.demo = { seen: seen };

  // -- connection -------------------------------------------------------------

  const LABELS = { connecting: "connecting", open: "open", reconnecting: "reconnecting",
    closed: "closed" };

  function setState(state) {
    const pill = $("state");
    pill.className = "pill pill-" + state;
    pill.textContent = LABELS[state] || state;
    if (resume && state === "reconnecting" && !resume.lostAt) resume.lostAt = performance.now();
  }

  // The browser reconnects by itself (EventSource), sending Last-Event-ID; after a
  // refusal (503 when the hub is full) SSEKit opens a new one with a back-off.
  const stream = SSEKit.connect("/events/");
  window.demo.stream = stream;
  stream.onState(setState);
  for (const type of TYPES) stream.on(type, (data, ev) => onEvent(type, data, ev));
  stream.onReset((info, ev) => {
    onEvent("reset", info, ev);
    showBanner(
      "Missed events are no longer in the hub's history (" + info.reason + "). " +
        "A real app refetches its state now; job bars may be stale.",
      "warn",
    );
  });

  // -- events -----------------------------------------------------------------

  function onEvent(type, data, ev) {
    seen.push({ type: type, id: ev.lastEventId, data: ev.data });
    if (ev.lastEventId) $("last-id").textContent = ev.lastEventId;
    if (type === "metric" && data && typeof data === "object") showMetric(data);
    if (type === "job" && data && typeof data === "object") showJob(data);
    if (type === "notice") showBanner(ev.data, "");
    if (resume) trackResume(type, data, ev);
    if (type !== "metric" || $("show-metric").checked) log(type, ev);
  }

  function showMetric(m) {
    $("clock").textContent = m.time;
    for (const key of ["clients", "published", "delivered", "resumed", "replayed", "resets"]) {
      const cell = $("m-" + key);
      if (cell && key in m) cell.textContent = Number(m[key]).toLocaleString();
    }
    chartMetric(m);
  }

  function showJob(j) {
    let item = jobs.get(j.job);
    if (!item) {
      item = document.createElement("li");
      item.innerHTML =
        '<div class="job-head"><span class="name"></span><span class="pct"></span></div>' +
        '<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100">' +
        "<span></span></div>";
      item.querySelector(".name").textContent = "Job #" + j.job;
      jobs.set(j.job, item);
      $("jobs").prepend(item);
    }
    const bar = item.querySelector(".progress");
    bar.setAttribute("aria-valuenow", String(j.percent));
    bar.classList.toggle("done", j.state === "done");
    bar.firstElementChild.style.width = j.percent + "%";
    item.querySelector(".pct").textContent =
      j.state === "done" ? "done" : "step " + j.step + " / " + j.steps;
  }

  function showBanner(text, kind) {
    const banner = $("banner");
    banner.className = "banner " + kind;
    banner.textContent = text;
    banner.hidden = false;
    clearTimeout(showBanner.timer);
    showBanner.timer = setTimeout(() => (banner.hidden = true), 8000);
  }

  function log(type, ev) {
    const row = document.createElement("tr");
    const cells = [new Date().toLocaleTimeString(), null, ev.lastEventId || "", ev.data];
    for (const text of cells) {
      const td = document.createElement("td");
      if (text === null) {
        const badge = document.createElement("span");
        badge.className = "type type-" + type;
        badge.textContent = type;
        td.append(badge);
      } else {
        td.textContent = text;
      }
      row.append(td);
    }
    const body = $("log");
    body.prepend(row);
    while (body.rows.length > MAX_ROWS) body.lastElementChild.remove();
  }

  // -- live charts: plain canvas, one point per metric event -------------------

  const series = { clients: [], published: [], delivered: [] };
  let previous = null; // the last metric event, for per-second rates

  function push(values, v) {
    values.push(v);
    if (values.length > POINTS) values.shift();
  }

  function chartMetric(m) {
    push(series.clients, Number(m.clients) || 0);
    $("now-clients").textContent = String(m.clients);
    if (previous && m.ts > previous.ts) {
      const dt = m.ts - previous.ts;
      // A restarted server starts its counters again from 0: never a negative rate.
      const rate = (key) => Math.max(0, (m[key] - previous[key]) / dt);
      push(series.published, rate("published"));
      push(series.delivered, rate("delivered"));
      $("now-published").textContent = rate("published").toFixed(1);
      $("now-delivered").textContent = rate("delivered").toFixed(1);
    }
    previous = m;
    draw($("chart-clients"), [{ values: series.clients, color: "--c-clients" }], 0);
    draw($("chart-rates"), [
      { values: series.published, color: "--c-published" },
      { values: series.delivered, color: "--c-delivered" },
    ], 1);
  }

  function niceMax(v) {
    const step = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * step >= v) return m * step;
    return 10 * step;
  }

  function draw(canvas, lines, digits) {
    const css = getComputedStyle(document.documentElement);
    const color = (name) => css.getPropertyValue(name).trim() || "#888";
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr)) canvas.width = Math.round(w * dpr);
    if (canvas.height !== Math.round(h * dpr)) canvas.height = Math.round(h * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const left = 34;
    const top = 6;
    const bottom = h - 6;
    const right = w - 4;
    let max = niceMax(Math.max(1, ...lines.flatMap((l) => l.values)));
    if (!digits) max = Math.max(4, Math.ceil(max / 4) * 4); // whole numbers on every line
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i += 1) {
      const y = bottom - ((bottom - top) * i) / 4;
      ctx.strokeStyle = color("--line");
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(y) + 0.5);
      ctx.lineTo(right, Math.round(y) + 0.5);
      ctx.stroke();
      ctx.fillStyle = color("--muted");
      ctx.fillText(((max * i) / 4).toFixed(i && digits ? digits : 0), left - 6, y);
    }
    for (const line of lines) {
      const vs = line.values;
      if (!vs.length) continue;
      const x = (i) => right - ((vs.length - 1 - i) * (right - left)) / (POINTS - 1);
      const y = (v) => bottom - ((bottom - top) * v) / max;
      ctx.strokeStyle = color(line.color);
      ctx.lineWidth = 2;
      ctx.lineJoin = "round";
      ctx.beginPath();
      vs.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
      ctx.stroke();
      ctx.fillStyle = color(line.color);
      ctx.beginPath();
      ctx.arc(x(vs.length - 1), y(vs[vs.length - 1]), 3, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  // -- cut my connection: lossless resume, shown -------------------------------

  function trackResume(type, data, ev) {
    if (type === "connected") {
      resume.back = true;
      resume.from = ev.lastEventId; // where the hub resumed this stream from
      if (!resume.lostAt) resume.lostAt = performance.now();
      resume.backAt = performance.now();
      return;
    }
    if (!resume.back) return;
    const item = document.createElement("li");
    item.textContent = (ev.lastEventId || "(no id)") + "  " + type + "  " + ev.data;
    resume.caught += 1;
    if (type === "missed" && data && typeof data === "object") {
      item.className = "missed";
      resume.missed.push(data.n);
      if (resume.missed.length >= data.of) finishResume(data.of);
    }
    $("caught-up").append(item);
  }

  function finishResume(of) {
    const expected = Array.from({ length: of }, (_, i) => i + 1);
    const exact = resume.missed.join() === expected.join();
    const summary = $("resume-summary");
    summary.replaceChildren();
    const verdict = document.createElement("span");
    verdict.className = exact ? "ok" : "bad";
    verdict.textContent = exact
      ? "\u2713 Lossless: all " + of + " events sent while you were away arrived, in order, once each."
      : "\u2717 Got " + resume.missed.join(", ") + " instead of " + expected.join(", ") + ".";
    summary.append(
      verdict,
      " Reconnected " + Math.round(resume.backAt - resume.lostAt) + " ms after the cut, " +
        "resumed from " + resume.from + "; caught up on " + resume.caught + " event" +
        (resume.caught === 1 ? "" : "s") + ":",
    );
    $("cut").disabled = false;
    window.demo.lastResume = { exact: exact, missed: resume.missed.slice(), caught: resume.caught,
      delayMs: resume.backAt - resume.lostAt };
    resume = null;
  }

  $("cut").addEventListener("click", async () => {
    $("cut").disabled = true;
    $("caught-up").replaceChildren();
    $("resume-summary").textContent = "Cut. Waiting for the browser to reconnect\u2026";
    $("resume-report").hidden = false;
    resume = { back: false, lostAt: 0, backAt: 0, from: "", caught: 0, missed: [] };
    try {
      await post("/cut", new FormData());
    } catch (err) {
      $("resume-summary").textContent = err.message;
      $("cut").disabled = false;
      resume = null;
    }
  });

  // -- forms ------------------------------------------------------------------

  async function post(url, body) {
    const response = await fetch(url, { method: "POST", body });
    if (!response.ok) throw new Error((await response.text()).trim());
    return response.json();
  }

  $("start-job").addEventListener("click", async () => {
    try {
      await post("/jobs", new FormData());
    } catch (err) {
      showBanner(err.message, "warn");
    }
  });

  $("broadcast").addEventListener("submit", async (e) => {
    e.preventDefault();
    const result = $("bc-result");
    try {
      const r = await post("/broadcast", new FormData(e.target));
      result.textContent =
        "sent to " + r.recipients + " stream" + (r.recipients === 1 ? "" : "s") +
        " matching " + r.pattern;
    } catch (err) {
      result.textContent = err.message;
    }
  });

  for (const chip of document.querySelectorAll(".chip")) {
    chip.addEventListener("click", () => {
      document.querySelector("#broadcast [name=pattern]").value = chip.dataset.pattern;
    });
  }

  $("clear").addEventListener("click", () => $("log").replaceChildren());
})();
