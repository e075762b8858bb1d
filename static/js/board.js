// The pipeline board: drag a card to another column (or onto Won/Lost) to move the deal.
// The server decides everything (pipeline.views.deal_move): it answers with the updated card, with a dialog
// asking for the fields the target stage requires (or a lost reason), or with an error; the card then goes back.
(function () {
  "use strict";
  var pending = null; // the card being moved by drag: {card, from, index}

  function dialog() { return document.getElementById("move-dialog"); }

  function filters() {
    var values = {};
    var form = document.getElementById("board-filters");
    if (form) new FormData(form).forEach(function (value, key) { values[key] = value; });
    return values;
  }

  function move(card, from, index, stageId) {
    pending = { card: card, from: from, index: index };
    var values = filters();
    values.stage = stageId;
    values.version = card.dataset.version;
    htmx.ajax("POST", card.dataset.moveUrl, { source: card, target: card, swap: "outerHTML", values: values });
  }

  // The list under the point where the card was let go: only a column or a Won/Lost zone takes a drop. SortableJS
  // reports the list the card last crossed, even when it is released over the toolbar or anything else.
  function listAtRelease(event) {
    var e = event.originalEvent;
    var point = e && e.changedTouches && e.changedTouches.length ? e.changedTouches[0] : e;
    if (!point || typeof point.clientX !== "number") return null;
    var under = document.elementFromPoint(point.clientX, point.clientY);
    return under ? under.closest("#board [data-move-list]") : null;
  }

  function putBack(card, from, index) {
    if (card.parentElement !== from) from.insertBefore(card, from.children[index] || null);
  }

  function revert() {
    if (!pending) return;
    var p = pending;
    pending = null;
    if (!document.body.contains(p.card) || p.card.parentElement === p.from) return;
    p.from.insertBefore(p.card, p.from.children[p.index] || null);
  }

  // Every card sits in the column of its stage: after a keyboard move, a refresh, or a revert.
  function reconcile() {
    document.querySelectorAll("#board .deal-card").forEach(function (card) {
      if (pending && pending.card === card) return; // waiting for the dialog: stays where it was dropped
      var list = card.parentElement;
      if (list && list.classList.contains("cards") && list.dataset.stageId === card.dataset.stageId) return;
      var column = document.querySelector('#board .cards[data-stage-id="' + card.dataset.stageId + '"]');
      if (column) column.insertBefore(card, column.firstElementChild);
      else card.remove();
    });
  }

  function init() {
    document.querySelectorAll("#board [data-move-list]").forEach(function (list) {
      if (list.sortable) return;
      var closed = list.hasAttribute("data-closed");
      list.sortable = Sortable.create(list, {
        group: { name: "board", pull: !closed, put: true },
        sort: false,
        draggable: ".deal-card",
        filter: ".locked, .move-to",
        preventOnFilter: false,
        forceFallback: true,
        // On a touch screen a card is picked up by a press and hold; a swipe that starts on it scrolls the board
        // (by column) or the column's cards, as a swipe anywhere else does. A mouse drags at once, as before.
        delay: 250,
        delayOnTouchOnly: true,
        touchStartThreshold: 6,
        fallbackOnBody: true,
        animation: 120,
        ghostClass: "drag-ghost",
        chosenClass: "drag-chosen",
        dragClass: "drag-active",
        onStart: function () { document.body.classList.add("dragging"); },
        onEnd: function (event) {
          var target = listAtRelease(event);
          document.body.classList.remove("dragging");
          if (!target || target === event.from) {
            putBack(event.item, event.from, event.oldIndex);
            return;
          }
          if (target !== event.to) target.appendChild(event.item); // e.g. Won/Lost, which SortableJS missed
          move(event.item, event.from, event.oldIndex, target.dataset.stageId);
        },
      });
    });
  }

  // The board's one Move control and "Move to" dialog (a card carries no form: SPEC §6 keeps 150 cards under 100 KB).
  // The button is moved into the card under the pointer or holding the focus, after its links in the tab order; the
  // dialog is filled from that card's data attributes and its choice goes the way a drop does (move()).
  var opener = null; // the Move button, kept even while a card it sat in is swapped out
  var choosing = null; // the id of the card whose Move is being chosen

  function movable(target) {
    var card = target && target.closest ? target.closest("#board .cards .deal-card") : null;
    return card && card.dataset.moveUrl ? card : null;
  }

  function offer(event) {
    var card = movable(event.target);
    if (!card || opener.parentElement === card) return;
    if (event.type === "mouseover" && document.activeElement === opener) return; // a keyboard user keeps it
    opener.hidden = false;
    card.appendChild(opener);
  }

  function chooseStage() {
    var card = movable(opener);
    var box = document.getElementById("move-to-dialog");
    if (!card || !box) return;
    choosing = card.id;
    box.querySelector("h2").textContent = "Move “" + card.querySelector("h3 a").textContent + "” to";
    var select = box.querySelector("select");
    select.value = card.dataset.stageId;
    // Escape or Cancel gives the focus back to the Move button, still in this card.
    window.crm.openDialog(box, opener);
    select.focus();
  }

  function chosen(event) {
    event.preventDefault();
    var box = document.getElementById("move-to-dialog");
    var card = choosing && document.getElementById(choosing); // the card as it is now, if swapped meanwhile
    var stageId = box.querySelector("select").value;
    box.close();
    if (!card || !card.dataset.moveUrl) return;
    var list = card.parentElement;
    move(card, list, Array.prototype.indexOf.call(list.children, card), stageId);
  }

  // A column's quick add (its "+" fetches the form into the column's .quick-add): the title takes the focus when it
  // opens (a refused field takes it instead, app.js); Cancel or Escape closes it, and so does an added deal, giving
  // the focus back to the "+".
  function focusPlus(box) {
    var plus = document.querySelector("#col-head-" + box.id.replace("quick-add-", "") + " .add");
    if (plus) plus.focus();
  }
  function closeQuickAdd(form) {
    var box = form.closest(".quick-add");
    form.remove();
    if (box) focusPlus(box);
  }
  document.addEventListener("htmx:afterSettle", function (event) {
    var box = event.detail.elt;
    if (!box || !box.classList || !box.classList.contains("quick-add")) return;
    if (!box.querySelector("form")) return focusPlus(box);
    var title = box.querySelector("input[name=title]");
    if (title && !box.querySelector(".has-error")) title.focus();
  });
  // "+" again while its form is open keeps what was typed: the form takes the focus instead of being fetched anew.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var plus = event.detail.elt;
    if (!plus || !plus.matches || !plus.matches(".column-title .add")) return;
    var title = document.querySelector(plus.getAttribute("hx-target") + " input[name=title]");
    if (!title) return;
    event.preventDefault();
    title.focus();
  });
  document.addEventListener("click", function (event) {
    var cancel = event.target.closest && event.target.closest("[data-quick-add-cancel]");
    if (cancel) closeQuickAdd(cancel.closest("form"));
  });
  document.addEventListener("keydown", function (event) {
    var form = event.key === "Escape" && event.target.closest && event.target.closest(".quick-add-form");
    if (form) closeQuickAdd(form);
  });

  document.addEventListener("crm:moved", function (event) {
    pending = null;
    var box = dialog();
    if (box && box.open) box.close();
    var id = event.detail && event.detail.deal;
    setTimeout(function () {
      reconcile();
      var link = document.querySelector("#deal-" + id + " h3 a");
      if (link && (document.activeElement === document.body || !document.activeElement)) link.focus();
    }, 0);
  });
  document.addEventListener("crm:move-failed", function () {
    revert();
    var box = dialog();
    if (box && box.open) box.close();
    setTimeout(reconcile, 0);
  });
  document.addEventListener("htmx:afterSettle", reconcile);
  // A request that failed outright (server error, deal gone, network down): app.js shows why; the card goes back.
  ["htmx:responseError", "htmx:sendError"].forEach(function (name) {
    document.addEventListener(name, function () {
      revert();
      var box = dialog();
      if (box && box.open) box.close();
    });
  });

  function start() {
    var box = dialog();
    if (box) box.addEventListener("close", revert);
    opener = document.querySelector("[data-move-open]");
    var form = document.querySelector("form[data-move-to]");
    if (opener && form) {
      document.addEventListener("mouseover", offer);
      document.addEventListener("focusin", offer);
      opener.addEventListener("click", chooseStage);
      form.addEventListener("submit", chosen);
    }
    htmx.onLoad(init);
    init();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
