/* Progressive enhancement for the readiness panel. The page works fully without this file. */
(function () {
  "use strict";

  function typingIn(el) {
    if (!el) { return false; }
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  /* Month switcher: "[" and "]" step to the previous / next month; arrow keys move between its controls. */
  function enhanceMonthSwitcher() {
    var nav = document.querySelector(".month-switcher");
    if (!nav) { return; }
    var prev = document.getElementById("month-prev");
    var next = document.getElementById("month-next");
    if (prev) { prev.setAttribute("aria-keyshortcuts", "["); }
    if (next) { next.setAttribute("aria-keyshortcuts", "]"); }

    document.addEventListener("keydown", function (event) {
      if (event.altKey || event.ctrlKey || event.metaKey || typingIn(event.target)) { return; }
      if (event.key === "[" && prev) { event.preventDefault(); window.location.assign(prev.href); }
      if (event.key === "]" && next) { event.preventDefault(); window.location.assign(next.href); }
    });

    var controls = Array.prototype.slice.call(nav.querySelectorAll("a, input, button"));
    nav.addEventListener("keydown", function (event) {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") { return; }
      if (typingIn(event.target)) { return; }  /* arrows edit the month inside the input */
      var i = controls.indexOf(event.target);
      if (i < 0) { return; }
      var j = event.key === "ArrowLeft" ? i - 1 : i + 1;
      if (j >= 0 && j < controls.length) { event.preventDefault(); controls[j].focus(); }
    });
  }

  /* Collapsible details: one button opens or closes every <details> of the panel. */
  function enhanceDetails() {
    var all = document.querySelectorAll("main details");
    var heading = document.getElementById("findings-heading");
    if (!all.length || !heading) { return; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "toggle-details";
    function anyClosed() {
      return Array.prototype.some.call(all, function (d) { return !d.open; });
    }
    function label() {
      var closed = anyClosed();
      button.textContent = closed ? "Expand details" : "Collapse details";
      button.setAttribute("aria-expanded", closed ? "false" : "true");
    }
    button.addEventListener("click", function () {
      var open = anyClosed();
      Array.prototype.forEach.call(all, function (d) { d.open = open; });
      label();
    });
    Array.prototype.forEach.call(all, function (d) { d.addEventListener("toggle", label); });
    label();
    heading.insertAdjacentElement("afterend", button);
  }

  function start() {
    enhanceMonthSwitcher();
    enhanceDetails();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());

/* Names the server could not resolve while rendering (it names everyone it can on first view): asked for once, then cached. */
(function () {
  "use strict";
  var holder = document.querySelector("[data-names-url]");
  var unnamed = document.querySelectorAll("[data-person-ref]");
  if (!holder || !unnamed.length) { return; }
  var refs = [];
  Array.prototype.forEach.call(unnamed, function (el) {
    var ref = el.getAttribute("data-person-ref");
    if (refs.indexOf(ref) < 0) { refs.push(ref); }
  });
  var url = holder.getAttribute("data-names-url") + "?" + refs.map(function (r) {
    return "ref=" + encodeURIComponent(r);
  }).join("&");
  fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
    .then(function (r) { return r.ok ? r.json() : {}; })
    .then(function (names) {
      Array.prototype.forEach.call(unnamed, function (el) {
        var name = names[el.getAttribute("data-person-ref")];
        if (!name) { return; }
        var detail = el.tagName === "OPTION" ? el.textContent.replace(/^[^(]*/, "") : "";
        el.textContent = name + (detail ? " " + detail : "");
        el.removeAttribute("data-person-ref");
      });
    }).catch(function () { /* names stay as they are */ });
})();
