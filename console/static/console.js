// The console's only script of its own (the CSP allows no inline script): it keeps the
// live table short, ticks "select all" boxes, and marks the active timeline filter.
(function () {
  "use strict";
  var LIVE_ROWS = 300;

  document.addEventListener("htmx:sseMessage", function () {
    var body = document.getElementById("live-rows");
    if (!body) { return; }
    while (body.rows.length > LIVE_ROWS) { body.deleteRow(body.rows.length - 1); }
  });

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.classList || !box.classList.contains("all")) { return; }
    var form = box.closest("form");
    form.querySelectorAll("input[name=offset]").forEach(function (other) {
      other.checked = box.checked;
    });
  });

  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("[data-filter]") : null;
    if (!link) { return; }
    link.parentElement.querySelectorAll("[data-filter]").forEach(function (other) {
      other.classList.toggle("on", other === link);
    });
  });
})();
