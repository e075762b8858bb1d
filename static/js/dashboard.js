// The forecast dashboard's charts, drawn with Chart.js from the JSON block #dashboard-data that the page renders
// (no inline scripts, so the page works under a strict Content-Security-Policy).
(function () {
  "use strict";

  var INK = "#374151", MUTED = "#6b7280", GRID = "#eef0f3";
  var ACCENT = "#4f46e5", ACCENT_SOFT = "#c7d2fe", OK = "#059669", WARN = "#f59e0b";
  var money = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

  function data() {
    var block = document.getElementById("dashboard-data");
    return block ? JSON.parse(block.textContent) : null;
  }

  function base(extra) {
    var options = {
      responsive: true,
      maintainAspectRatio: false,
      animation: { duration: 300 },
      plugins: { legend: { display: false }, tooltip: { backgroundColor: "#111827", padding: 10, cornerRadius: 6 } },
      scales: {
        x: { grid: { display: false }, ticks: { color: MUTED, font: { size: 11 } }, border: { color: GRID } },
        y: { grid: { color: GRID }, ticks: { color: MUTED, font: { size: 11 } }, border: { display: false }, beginAtZero: true }
      }
    };
    return Object.assign(options, extra || {});
  }

  // A bar with a link (d.links, by bar) opens the deal table of exactly the deals behind it.
  function drillDown(options, links) {
    if (!links) return;
    options.onClick = function (_event, elements) {
      if (elements.length && links[elements[0].index]) window.location.assign(links[elements[0].index]);
    };
    options.onHover = function (event, elements) {
      event.native.target.style.cursor = elements.length && links[elements[0].index] ? "pointer" : "default";
    };
  }

  function forecastChart(canvas, d) {
    var colors = [OK, ACCENT, "#818cf8", ACCENT_SOFT, "#0ea5e9", "#7dd3fc"];
    var datasets = [{ type: "bar", data: d.values, backgroundColor: colors, borderRadius: 6, maxBarThickness: 56 }];
    if (d.quota !== null) {
      datasets.push({
        type: "line", label: "Quota", data: d.labels.map(function () { return d.quota; }),
        borderColor: "#dc2626", borderDash: [6, 4], borderWidth: 2, pointRadius: 0
      });
    }
    var options = base();
    options.scales.x.ticks.maxRotation = 0;
    options.scales.y.ticks.callback = function (value) { return money.format(value); };
    options.plugins.tooltip.callbacks = { label: function (item) { return " " + money.format(item.raw); } };
    drillDown(options, d.links);
    return new Chart(canvas, { data: { labels: d.labels, datasets: datasets }, options: options });
  }

  function funnelChart(canvas, d) {
    var options = base({ indexAxis: "y" });
    options.scales.x.grid = { color: GRID };
    options.scales.y.grid = { display: false };
    options.plugins.tooltip.callbacks = {
      afterLabel: function (item) {
        var rate = d.conversion[item.dataIndex];
        return rate === null ? "" : "converts " + Math.round(rate * 100) + "% onward";
      }
    };
    drillDown(options, d.links);
    var max = Math.max.apply(null, d.reached.concat([1]));
    var shades = d.reached.map(function (value) { return "rgba(79, 70, 229, " + (0.35 + 0.65 * value / max).toFixed(2) + ")"; });
    return new Chart(canvas, {
      type: "bar",
      data: { labels: d.labels, datasets: [{ label: "Reached", data: d.reached, backgroundColor: shades, borderRadius: 4, barPercentage: 0.8 }] },
      options: options
    });
  }

  function stageTimeChart(canvas, d) {
    var colors = d.median.map(function (_, i) { return i === d.bottleneck ? WARN : ACCENT_SOFT; });
    var options = base({ indexAxis: "y" });
    options.scales.x.grid = { color: GRID };
    options.scales.y.grid = { display: false };
    options.plugins.tooltip.callbacks = { label: function (item) { return " " + item.raw + " days (median)"; } };
    return new Chart(canvas, {
      type: "bar",
      data: { labels: d.labels, datasets: [{ data: d.median, backgroundColor: colors, borderRadius: 4, maxBarThickness: 36 }] },
      options: options
    });
  }

  // The pipeline waterfall: floating bars from the open pipeline at the start to the one at the end (the canvas's
  // data-bars, spans computed by the server); a bar, or its button below, opens the list of its deals from the API.
  function reliabilityChart(canvas, d) {
    var options = base({ plugins: { legend: { display: true } } });
    var axis = { min: 0, max: 1, ticks: { callback: function (value) { return Math.round(value * 100) + "%"; } } };
    options.scales = { x: Object.assign({ type: "linear", title: { display: true, text: "Probability we called" } }, axis),
                       y: Object.assign({ title: { display: true, text: "Share won" } }, axis) };
    options.plugins.tooltip = { callbacks: { label: function (item) {
      var point = item.raw;
      return point.count === undefined ? "" : " called " + Math.round(point.x * 100) + "%, won " + Math.round(point.y * 100) + "% of " + point.count;
    } } };
    return new Chart(canvas, {
      type: "scatter",
      data: { datasets: [
        { label: "Configured", data: d.configured, showLine: true, borderColor: ACCENT, backgroundColor: ACCENT },
        { label: "Learned", data: d.learned, showLine: true, borderColor: OK, backgroundColor: OK },
        { label: "Perfect", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }], showLine: true, pointRadius: 0, borderDash: [4, 4], borderColor: "#9ca3af" }
      ] },
      options: options
    });
  }

  function waterfallChart(canvas, bars) {
    var colors = bars.map(function (bar) { return !bar.bucket ? ACCENT : bar.side === "out" ? "#dc2626" : OK; });
    var options = base();
    options.scales.x.ticks.maxRotation = 0;
    options.scales.y.ticks.callback = function (value) { return money.format(value); };
    options.plugins.tooltip.callbacks = {
      label: function (item) {
        var bar = bars[item.dataIndex];
        return " " + money.format(bar.span[1] - bar.span[0]) + " · " + bar.count + " deal" + (bar.count === 1 ? "" : "s");
      }
    };
    options.onClick = function (_event, elements) {
      if (elements.length && bars[elements[0].index].bucket) showDeals(bars[elements[0].index].bucket);
    };
    options.onHover = function (event, elements) {
      event.native.target.style.cursor = elements.length && bars[elements[0].index].bucket ? "pointer" : "default";
    };
    return new Chart(canvas, {
      type: "bar",
      data: {
        labels: bars.map(function (bar) { return bar.label; }),
        datasets: [{ data: bars.map(function (bar) { return bar.span; }), backgroundColor: colors, borderRadius: 4, maxBarThickness: 48 }]
      },
      options: options
    });
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function showDeals(bucket, url) {
    var list = document.getElementById("waterfall-buckets");
    var target = document.getElementById("waterfall-deals");
    if (!list || !target) return;
    var dealUrl = list.getAttribute("data-deal-url");
    url = url || list.getAttribute("data-deals-url") + "&bucket=" + encodeURIComponent(bucket);
    target.textContent = "Loading…";
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
      .then(function (page) {
        var button = list.querySelector('[data-bucket="' + bucket + '"]');
        var title = document.createElement("h3");
        title.textContent = (button ? button.textContent : bucket);
        var table = document.createElement("table");
        table.className = "list compact";
        table.id = "waterfall-deal-list";
        var head = table.createTHead().insertRow();
        ["Deal", "Amount then → now", "Close date then → now"].forEach(function (name) { cell(head, name); });
        var body = table.createTBody();
        page.results.forEach(function (deal) {
          var row = body.insertRow();
          var first = cell(row, "");
          if (deal.title === null) {
            first.textContent = "Deal #" + deal.deal + " (deleted)";
          } else {
            var link = document.createElement("a");
            link.href = dealUrl.replace("/0/", "/" + deal.deal + "/");
            link.textContent = deal.title;
            first.appendChild(link);
          }
          cell(row, (deal.from_amount || "—") + " → " + (deal.to_amount || "—"), "num");
          cell(row, (deal.from_close_date || "—") + " → " + (deal.to_close_date || "—"));
        });
        target.replaceChildren(title, table);
        if (page.next) {
          var more = document.createElement("button");
          more.type = "button";
          more.className = "secondary small";
          more.textContent = "More";
          more.addEventListener("click", function () { showDeals(bucket, page.next); });
          target.appendChild(more);
        }
      })
      .catch(function () { target.textContent = "The deals could not be loaded: try again."; });
  }

  function drawWaterfall() {
    var canvas = document.getElementById("chart-waterfall");
    if (!canvas || typeof Chart === "undefined" || Chart.getChart(canvas)) return;
    waterfallChart(canvas, JSON.parse(canvas.getAttribute("data-bars")));
    var list = document.getElementById("waterfall-buckets");
    if (list) list.addEventListener("click", function (event) {
      var button = event.target.closest("[data-bucket]");
      if (button) showDeals(button.getAttribute("data-bucket"));
    });
  }

  function draw() {
    if (typeof Chart === "undefined") return;
    drawWaterfall();
    var d = data();
    if (!d) return;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = INK;
    var charts = [
      ["chart-forecast", forecastChart, d.forecast],
      ["chart-funnel", funnelChart, d.funnel],
      ["chart-stage-time", stageTimeChart, d.stage_time],
      ["chart-reliability", reliabilityChart, d.reliability]
    ];
    charts.forEach(function (entry) {
      var canvas = document.getElementById(entry[0]);
      if (canvas && !Chart.getChart(canvas)) entry[1](canvas, entry[2]);
    });
  }

  // The waterfall panel arrives after the page (htmx): draw it when it is swapped in.
  document.addEventListener("htmx:afterSettle", function () { drawWaterfall(); });

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", draw);
  else draw();
})();
