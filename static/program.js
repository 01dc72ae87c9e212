// Program page: poll the worklist job's status and reload when it is done (the page also works without JS).
(function () {
  "use strict";
  var root = document.querySelector(".program[data-state]");
  if (!root || root.getAttribute("data-state") !== "running") { return; }
  var meta = document.querySelector('meta[http-equiv="refresh"]');
  if (meta) { meta.parentNode.removeChild(meta); }
  var url = root.getAttribute("data-status-url");
  var text = document.getElementById("progress-text");
  var bar = document.getElementById("progress-bar");
  function tick() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (s) {
        if (s.state === "done" || s.state === "error") { window.location.reload(); return; }
        if (text) {
          text.textContent = "Building the worklist: " + s.stage +
            (s.total ? " – " + s.done + " of " + s.total + " patients" : "") + "…";
        }
        if (bar && s.total) { bar.max = s.total; bar.value = s.done; }
        window.setTimeout(tick, 700);
      })
      .catch(function () { window.setTimeout(tick, 2000); });
  }
  window.setTimeout(tick, 300);
})();
