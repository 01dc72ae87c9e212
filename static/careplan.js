// Care-plan editor: while a kept draft is pending (the FHIR server was unreachable), retry it in the
// background and reload the editor once it is saved. Without JavaScript the draft is retried when the
// editor is opened again. Nothing typed is sent anywhere else.
(function () {
  "use strict";
  var form = document.getElementById("cp-form");
  if (!form || form.getAttribute("data-pending") !== "1") { return; }
  var token = form.querySelector("input[name='csrf_token']");
  var delay = 15000;
  function attempt() {
    fetch(form.getAttribute("data-retry-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": token ? token.value : "", "Accept": "application/json" }
    }).then(function (r) { return r.json(); }).then(function (data) {
      if (data.state === "saved") {
        window.location.assign(form.getAttribute("data-editor-url") + "?saved=retried");
      } else if (data.state === "pending") {
        delay = Math.min(delay * 2, 300000);
        window.setTimeout(attempt, delay);
      }
    }).catch(function () {
      delay = Math.min(delay * 2, 300000);
      window.setTimeout(attempt, delay);
    });
  }
  window.setTimeout(attempt, delay);
})();
