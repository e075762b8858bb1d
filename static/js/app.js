// Behaviour shared by every page: a progress bar while htmx works, toasts, dialogs, readable errors.
// Loaded as a static file (no inline scripts or handlers), so the pages work under a strict Content-Security-Policy.
(function () {
  "use strict";

  function toast(message, level) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "toast " + (level || "info");
    item.textContent = message;
    box.appendChild(item);
  }

  function scheduleToasts() {
    document.querySelectorAll("#toasts .toast:not([data-scheduled])").forEach(function (item) {
      item.setAttribute("data-scheduled", "");
      var wait = item.classList.contains("error") ? 12000 : 5000;
      setTimeout(function () {
        item.classList.add("leaving");
        setTimeout(function () { item.remove(); }, 300);
      }, wait);
    });
  }

  var FOCUSABLE = "a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), "
    + "select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex='-1'])";

  // What takes the focus for `element`: itself when it can, else the first control inside it. An element that htmx
  // has swapped out meanwhile (a card drawn again) is looked up again by its id.
  function focusable(element) {
    if (element && !element.isConnected && element.id) element = document.getElementById(element.id);
    if (!element || !element.isConnected) return null;
    return element.matches(FOCUSABLE) ? element : element.querySelector(FOCUSABLE);
  }

  // Open `dialog` as a modal, its first field focused, and when it closes (Escape, Cancel, or the work it asked for
  // done) give the focus back to `source`, what opened it: a keyboard user carries on where they were instead of at
  // the top of the page. The focus moves after the close listeners have run (the board puts a card back then).
  function openDialog(dialog, source) {
    if (!dialog.open) {
      dialog.crmReturnFocus = source || document.activeElement;
      // Marked so that a control shown only on hover or focus (a card's "Move to") stays shown, and so focusable.
      if (dialog.crmReturnFocus) dialog.crmReturnFocus.setAttribute("data-dialog-source", "");
      dialog.showModal();
    }
    if (!dialog.crmFocusReturns) {
      dialog.crmFocusReturns = true;
      dialog.addEventListener("close", function () {
        var source = dialog.crmReturnFocus;
        dialog.crmReturnFocus = null;
        setTimeout(function () {
          var active = document.activeElement;
          // Unless the user went on elsewhere meanwhile (a click on another card).
          var target = !active || active === document.body || dialog.contains(active) ? focusable(source) : null;
          if (target) target.focus();
          if (source) source.removeAttribute("data-dialog-source");
        }, 0);
      });
    }
    var first = dialog.querySelector("input:not([type=hidden]), select, textarea");
    if (first) first.focus();
  }

  function start() {
    var body = document.body;
    var active = 0;
    document.addEventListener("htmx:beforeRequest", function () {
      active += 1;
      body.classList.add("is-loading");
    });
    document.addEventListener("htmx:afterRequest", function () {
      active = Math.max(0, active - 1);
      if (!active) body.classList.remove("is-loading");
    });
    document.addEventListener("htmx:responseError", function (event) {
      var status = event.detail.xhr ? event.detail.xhr.status : "";
      if (status === 404) toast("This record no longer exists, or you may not see it.", "error");
      else toast("Something went wrong (" + status + "). Please try again.", "error");
    });
    document.addEventListener("htmx:sendError", function () {
      toast("The server could not be reached. Check your connection and try again.", "error");
    });
    // A form that undoes something (revoking a token) asks first: data-confirm holds the question.
    document.addEventListener("submit", function (event) {
      var form = event.target.closest("form[data-confirm]");
      if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
    }, true);
    document.addEventListener("click", function (event) {
      var closer = event.target.closest("[data-close-dialog]");
      if (!closer) return;
      var dialog = closer.closest("dialog");
      if (dialog) dialog.close();
    });
    // A form answered with a problem at a field (a refused value, a conflicting change): bring that field into
    // view and focus it, so the message is seen where it applies even when the form is longer than the window.
    document.addEventListener("htmx:afterSettle", function (event) {
      var target = event.detail.elt;
      if (!target || !target.querySelector) return;
      var field = target.querySelector(".field.has-error input, .field.has-error select, .field.has-error textarea");
      if (!field) return;
      field.scrollIntoView({ block: "center" });
      field.focus({ preventScroll: true });
    });
    // A deal field edited in place (deal page): its input takes the focus when it opens; Escape cancels it.
    document.addEventListener("htmx:afterSettle", function (event) {
      var editor = event.detail.elt;
      if (!editor || !editor.matches || !editor.matches("[data-field-editor]")) return;
      var input = editor.querySelector("input:not([type=hidden]), select, textarea");
      if (input && document.activeElement !== input) input.focus();
    });
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape") return;
      var editor = event.target.closest && event.target.closest("[data-field-editor]");
      if (!editor) return;
      event.preventDefault();
      editor.querySelector("[data-cancel-edit]").click();
    });
    // A count that says how many of its section's rows match (data-counts): kept true as rows are swapped, e.g. an
    // activity marked done in the inbox leaves the overdue count.
    document.addEventListener("htmx:afterSettle", function () {
      document.querySelectorAll("[data-counts]").forEach(function (count) {
        var section = count.closest("section") || document;
        count.textContent = section.querySelectorAll(count.dataset.counts).length;
      });
    });
    // The phone's menu (base.html): its button opens and closes it; Escape or a tap outside the bar closes it, and
    // Escape gives the focus back to the button.
    var menuButton = document.querySelector("[data-menu-toggle]");
    if (menuButton) {
      var bar = menuButton.closest(".topbar");
      var setMenu = function (open) {
        bar.classList.toggle("menu-open", open);
        menuButton.setAttribute("aria-expanded", open ? "true" : "false");
      };
      menuButton.addEventListener("click", function () { setMenu(!bar.classList.contains("menu-open")); });
      document.addEventListener("keydown", function (event) {
        if (event.key !== "Escape" || !bar.classList.contains("menu-open")) return;
        setMenu(false);
        menuButton.focus();
      });
      document.addEventListener("click", function (event) {
        if (bar.classList.contains("menu-open") && !bar.contains(event.target)) setMenu(false);
      });
    }
    var box = document.getElementById("toasts");
    if (box) new MutationObserver(scheduleToasts).observe(box, { childList: true, subtree: true });
    scheduleToasts();

    // The move dialog (board and deal page): opened when the server asks for a stage's missing fields.
    var dialog = document.getElementById("move-dialog");
    if (dialog) {
      // Triggered on the element that asked for the move: a dragged card, or the form of its "Move to" control,
      // whose button (when it had the focus) is where the focus goes back to.
      document.addEventListener("crm:needs-input", function (event) {
        var asker = event.target instanceof Element ? event.target : null;
        var active = document.activeElement;
        openDialog(dialog, asker && asker.contains(active) ? active : asker);
      });
      // The deal page drawn again after a move from its header: the dialog that asked for a lost reason is done.
      document.addEventListener("crm:deal-redrawn", function () {
        if (dialog.open) dialog.close();
      });
      dialog.addEventListener("close", function () {
        document.getElementById("move-dialog-body").innerHTML = "";
      });
    }
  }

  window.crm = { toast: toast, openDialog: openDialog };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
