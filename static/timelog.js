/* Time capture: a timer that survives reloads and a second tab (state in localStorage), a note check while
   typing (asks the server, which uses the same rule as the readiness check), and a form that tells "saved"
   only when the server says so. No dependencies, no inline script. */
(function () {
  "use strict";
  var root = document.getElementById("timelog");
  if (!root) { return; }
  var form = document.getElementById("timelog-form");
  /* One timer per patient (and server and user): the key is an opaque hash chosen by the server. */
  var KEY = "ccm-ready.timer." + (root.getAttribute("data-timer-key") || "default");

  function csrf() {
    var el = form && form.querySelector("input[name=csrf_token]");
    return el ? el.value : "";
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function withOffset(day, clock) {
    var m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day), t = /^(\d{2}):(\d{2})$/.exec(clock);
    if (!m || !t) { return null; }
    var local = new Date(+m[1], +m[2] - 1, +m[3], +t[1], +t[2]);
    var off = -local.getTimezoneOffset(), sign = off >= 0 ? "+" : "-";
    off = Math.abs(off);
    return day + "T" + clock + ":00" + sign + pad(Math.floor(off / 60)) + ":" + pad(off % 60);
  }

  /* ---------------------------------------------------------------- timer */
  function load() {
    try { return JSON.parse(localStorage.getItem(KEY)) || {}; } catch (e) { return {}; }
  }
  function save(state) { localStorage.setItem(KEY, JSON.stringify(state)); render(); }
  function elapsed(state) {
    var ms = state.accumulated || 0;
    if (state.running) { ms += Date.now() - state.runningSince; }
    return ms;
  }
  var clock = document.getElementById("timer-clock");
  var startBtn = document.getElementById("timer-start");
  var pauseBtn = document.getElementById("timer-pause");
  var stopBtn = document.getElementById("timer-stop");
  var status = document.getElementById("timer-status");

  function render() {
    if (!clock) { return; }
    var state = load();
    var secs = Math.floor(elapsed(state) / 1000);
    var h = Math.floor(secs / 3600), m = Math.floor(secs / 60) % 60, s = secs % 60;
    clock.textContent = (h ? h + ":" + pad(m) : pad(m)) + ":" + pad(s);
    startBtn.disabled = !!state.running;
    startBtn.textContent = state.firstStart ? "Resume" : "Start";
    pauseBtn.disabled = !state.running;
    stopBtn.disabled = !state.firstStart;
    status.textContent = state.running ? "Timer running (keeps running if you reload or open another tab)." :
      (state.firstStart ? "Timer paused." : "");
  }
  if (clock) {
    startBtn.addEventListener("click", function () {
      var state = load();
      if (state.running) { return; }
      state.running = true;
      state.runningSince = Date.now();
      state.firstStart = state.firstStart || Date.now();
      save(state);
    });
    pauseBtn.addEventListener("click", function () {
      var state = load();
      if (!state.running) { return; }
      state.accumulated = elapsed(state);
      state.running = false;
      save(state);
    });
    stopBtn.addEventListener("click", function () {
      var state = load();
      if (!state.firstStart) { return; }
      var minutes = Math.max(1, Math.round(elapsed(state) / 60000));
      var started = new Date(state.firstStart);
      localStorage.removeItem(KEY);
      render();
      if (form) {
        form.elements.date.value = started.getFullYear() + "-" + pad(started.getMonth() + 1) + "-" + pad(started.getDate());
        form.elements.start.value = pad(started.getHours()) + ":" + pad(started.getMinutes());
        form.elements.minutes.value = String(Math.min(240, minutes));
        form.elements.end.value = "";
        form.elements.note.focus();
      }
    });
    window.addEventListener("storage", function (ev) { if (ev.key === KEY) { render(); } });
    window.setInterval(render, 1000);
    render();
  }

  /* ---------------------------------------------------------------- note check while typing */
  var note = document.getElementById("tl-note");
  var warning = document.getElementById("tl-note-warning");
  var noteTimer = null;
  function checkNote() {
    var text = note.value;
    if (!text.trim()) { warning.hidden = true; return; }
    fetch(root.getAttribute("data-time-url") + "/note-check", {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf()},
      body: JSON.stringify({note: text})
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
      if (!body) { return; }
      warning.hidden = !body.vague;
      warning.textContent = body.vague ? body.message : "";
    }).catch(function () { /* offline: the server checks again on save */ });
  }
  if (note && warning) {
    note.addEventListener("input", function () {
      window.clearTimeout(noteTimer);
      noteTimer = window.setTimeout(checkNote, 400);
    });
  }

  /* ---------------------------------------------------------------- submit and outbox status */
  var result = document.getElementById("tl-result");
  var FLASH = "ccm-ready-flash";
  function show(text, kind) {
    if (!result) { return; }
    result.textContent = text;
    result.className = "timelog-result timelog-" + kind;
  }
  /* A success message stays until the user dismisses it (kept across the panel's reload). */
  function showSaved(text) {
    if (!result) { return; }
    result.textContent = "";
    result.className = "timelog-result";
    var box = document.createElement("div");
    box.className = "notice-saved timelog-saved";
    var p = document.createElement("p");
    p.textContent = text;
    var btn = document.createElement("button");
    btn.type = "button";
    btn.textContent = "Dismiss";
    btn.addEventListener("click", function () {
      try { window.sessionStorage.removeItem(FLASH); } catch (e) { /* private mode */ }
      box.parentNode.removeChild(box);
    });
    box.appendChild(p);
    box.appendChild(btn);
    result.appendChild(box);
  }
  try {
    var kept = window.sessionStorage.getItem(FLASH);
    if (kept) { showSaved(kept); }
  } catch (e) { /* no storage: nothing kept */ }
  /* Field-level errors: each message under its field, linked by aria-describedby, aria-invalid set. */
  function clearFieldErrors() {
    Array.prototype.forEach.call(document.querySelectorAll("#timelog-form .field-error"), function (el) {
      var field = document.getElementById(el.id.replace(/-error$/, ""));
      if (field) {
        field.removeAttribute("aria-invalid");
        var ids = (field.getAttribute("aria-describedby") || "").split(" ").filter(function (x) {
          return x && x !== el.id;
        });
        if (ids.length) { field.setAttribute("aria-describedby", ids.join(" ")); }
        else { field.removeAttribute("aria-describedby"); }
      }
      el.parentNode.removeChild(el);
    });
  }
  function markFields(errors) {
    clearFieldErrors();
    var first = null;
    var unplaced = [];
    errors.forEach(function (e) {
      var field = e.field ? document.getElementById("tl-" + e.field) : null;
      if (!field) { unplaced.push(e.message); return; }
      var id = field.id + "-error";
      var msg = document.getElementById(id);
      if (!msg) {
        msg = document.createElement("p");
        msg.className = "field-error";
        msg.id = id;
        var after = field.nextElementSibling && /-hint$/.test(field.nextElementSibling.id || "") ?
          field.nextElementSibling : field;
        after.parentNode.insertBefore(msg, after.nextSibling);
        var ids = (field.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
        ids.push(id);
        field.setAttribute("aria-describedby", ids.join(" "));
      }
      msg.textContent = (msg.textContent ? msg.textContent + " " : "") + e.message;
      field.setAttribute("aria-invalid", "true");
      first = first || field;
    });
    return {first: first, unplaced: unplaced};
  }
  function pollPending() {
    fetch(root.getAttribute("data-pending-url"), {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (body) {
        if (!body) { return; }
        if (body.counts.pending === 0 && body.items.some(function (i) { return i.state === "saved"; })) {
          window.location.reload();  /* the readiness panel now counts the saved minutes */
          return;
        }
        if (body.counts.pending > 0) { window.setTimeout(pollPending, 5000); }
      }).catch(function () { window.setTimeout(pollPending, 10000); });
  }
  if (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var data = {};
      Array.prototype.forEach.call(form.elements, function (el) {
        if (!el.name || el.name === "csrf_token") { return; }
        if (el.type === "checkbox") {
          if (el.checked) { (data[el.name] = data[el.name] || []).push(el.value); }
        } else { data[el.name] = el.value; }
      });
      /* Send times with this browser's UTC offset, so the entry is exact whatever the practice zone. */
      if (data.date && data.start) { data.start = withOffset(data.date, data.start) || data.start; }
      if (data.date && data.end) { data.end = withOffset(data.date, data.end) || data.end; }
      show("Saving…", "pending");
      fetch(form.action, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf()},
        body: JSON.stringify(data)
      }).then(function (r) { return r.json().then(function (b) { return {status: r.status, body: b}; }); })
        .then(function (res) {
          var b = res.body;
          if (res.status === 422 || res.status === 403) {
            var placed = markFields(b.errors || []);
            var n = (b.errors || []).length;
            show("Not saved: " + (placed.unplaced.length ? placed.unplaced.join(" ") :
              "please fix the " + (n === 1 ? "field" : n + " fields") + " marked below."), "error");
            if (placed.first) { placed.first.focus(); }
            return;
          }
          clearFieldErrors();
          var warn = (b.warnings || []).map(function (w) { return w.message; }).join(" ");
          if (b.state === "saved") {
            var saved = "Saved on the FHIR server: " + (data.minutes ? data.minutes + " min. " : "") + warn;
            try { window.sessionStorage.setItem(FLASH, saved); } catch (e) { /* shown below anyway */ }
            showSaved(saved);
            window.setTimeout(function () { window.location.reload(); }, 600);
          } else if (b.state === "pending") {
            show("Pending: kept here and retried until the FHIR server accepts it. " + warn, "pending");
            document.getElementById("tl-id").value = "";  /* next entry gets a new id */
            window.setTimeout(pollPending, 3000);
          } else {
            show("Not saved: " + (b.error || "the server refused it") + ". It is kept here.", "error");
          }
        })
        .catch(function () {
          show("Could not reach this app; nothing was recorded yet. Try again.", "error");
        });
    });
  }
  if (document.querySelector("#timelog-outbox-list .outbox-pending")) { window.setTimeout(pollPending, 3000); }
})();
