// The demo page: one EventSource on /events/, and the forms that publish to it.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const TYPES = ["connected", "message", "notice", "job", "metric", "reset"];
  const MAX_ROWS = 200;
  const OFFLINE_SECONDS = 5;
  // EventSource gives up for good on a non-200 answer (503 when the hub is full);
  // the page then opens a new one itself after this delay.
  const REOPEN_MS = 5000;

  let source = null;
  let lastId = "";
  let reopenTimer = null;
  const jobs = new Map();

  // -- connection -------------------------------------------------------------

  function setState(state, label) {
    const pill = $("state");
    pill.className = "pill pill-" + state;
    pill.textContent = label || state;
  }

  function connect(resumeFrom) {
    if (source) source.close();
    // A new EventSource sends no Last-Event-ID header; sse_kit also reads the
    // last_event_id query parameter. Its own reconnects send the header.
    const url = resumeFrom
      ? "/events/?last_event_id=" + encodeURIComponent(resumeFrom)
      : "/events/";
    const es = new EventSource(url);
    source = es;
    setState("connecting", resumeFrom ? "resuming" : "connecting");
    es.onopen = () => setState("open");
    es.addEventListener("error", (e) => {
      if (e instanceof MessageEvent) {
        onEvent(e); // an in-band event named "error", not a connection error
        return;
      }
      if (es.readyState === EventSource.CLOSED) {
        setState("closed", "closed, retrying");
        clearTimeout(reopenTimer);
        reopenTimer = setTimeout(() => connect(lastId), REOPEN_MS);
      } else {
        setState("connecting", "reconnecting");
      }
    });
    for (const type of TYPES) es.addEventListener(type, onEvent);
  }

  function goOffline() {
    const button = $("offline");
    if (source) source.close();
    source = null;
    button.disabled = true;
    let left = OFFLINE_SECONDS;
    const tick = () => {
      if (left === 0) {
        button.disabled = false;
        button.textContent = "Go offline for " + OFFLINE_SECONDS + " s";
        connect(lastId);
        return;
      }
      setState("offline", "offline " + left + " s");
      button.textContent = "Offline\u2026 " + left + " s";
      left -= 1;
      setTimeout(tick, 1000);
    };
    tick();
  }

  // -- events -----------------------------------------------------------------

  function parse(data) {
    try {
      return JSON.parse(data);
    } catch {
      return null;
    }
  }

  function onEvent(e) {
    if (e.lastEventId) {
      lastId = e.lastEventId;
      $("last-id").textContent = lastId;
    }
    const data = parse(e.data);
    if (e.type === "metric" && data) showMetric(data);
    if (e.type === "job" && data) showJob(data);
    if (e.type === "notice") showBanner(e.data, "");
    if (e.type === "reset" && data) {
      showBanner(
        "Missed events are no longer in the hub's history (" + data.reason + "). " +
          "A real app refetches its state now; job bars may be stale.",
        "warn",
      );
    }
    if (e.type !== "metric" || $("show-metric").checked) log(e);
  }

  function showMetric(m) {
    $("clock").textContent = m.time;
    for (const key of ["clients", "published", "delivered", "resumed", "replayed", "resets"]) {
      const cell = $("m-" + key);
      if (cell && key in m) cell.textContent = Number(m[key]).toLocaleString();
    }
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

  function log(e) {
    const row = document.createElement("tr");
    const cells = [
      new Date().toLocaleTimeString(),
      null,
      e.lastEventId || "",
      e.data,
    ];
    for (const text of cells) {
      const td = document.createElement("td");
      if (text === null) {
        const badge = document.createElement("span");
        badge.className = "type type-" + e.type;
        badge.textContent = e.type;
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

  $("offline").addEventListener("click", goOffline);
  $("clear").addEventListener("click", () => $("log").replaceChildren());

  connect("");
})();
