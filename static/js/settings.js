// The settings pages: drag open stages to reorder them (SortableJS), and copy a new API token's secret.
// The ↑ ↓ buttons beside each stage are plain forms, so reordering also works from the keyboard and without JS.
(function () {
  "use strict";

  function status(text) {
    var box = document.getElementById("stage-list-status");
    if (box) box.textContent = text;
  }

  function initStages() {
    var list = document.getElementById("stage-list");
    if (!list || list.sortable || typeof Sortable === "undefined") return;
    list.sortable = Sortable.create(list, {
      draggable: ".stage-row.is-open",
      handle: ".drag-handle",
      filter: ".is-closed",
      forceFallback: true,
      animation: 120,
      ghostClass: "drag-ghost",
      chosenClass: "drag-chosen",
      // Open stages stay before Won and Lost.
      onMove: function (event) { return !event.related.classList.contains("is-closed") || event.willInsertAfter === false; },
      onEnd: function (event) {
        if (event.oldIndex === event.newIndex) return;
        var ids = [];
        list.querySelectorAll(".stage-row.is-open").forEach(function (row) { ids.push(row.dataset.stageId); });
        status("Saving the new order…");
        htmx.ajax("POST", list.dataset.reorderUrl, {
          source: list, target: "#stage-list", swap: "outerHTML", values: { order: ids.join(",") },
        }).then(function () { status("Saved the new order."); });
      },
    });
  }

  document.addEventListener("htmx:responseError", function (event) {
    if (!document.getElementById("stage-list")) return;
    status("The order could not be saved: " + (event.detail.xhr.responseText || "reload the page and try again."));
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var field = document.querySelector(button.dataset.copy);
    if (!field) return;
    field.select();
    var done = function () { button.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(field.value).then(done, function () {});
    else if (document.execCommand && document.execCommand("copy")) done();
  });

  function start() {
    if (typeof htmx !== "undefined") htmx.onLoad(initStages);
    initStages();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
