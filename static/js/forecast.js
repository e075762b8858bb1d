// The forecast call page's weekly trend, drawn with Chart.js from the canvas's data-trend (no inline scripts, so the
// page works under a strict Content-Security-Policy). A submit or an adjust swaps the whole block in (htmx): the new
// canvas is drawn when it settles.
(function () {
  "use strict";

  var MUTED = "#6b7280", GRID = "#eef0f3";
  var money = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

  function line(label, values, color, extra) {
    return Object.assign({ label: label, data: values, borderColor: color, backgroundColor: color, borderWidth: 2,
                           pointRadius: 3, tension: 0.2, spanGaps: true }, extra || {});
  }

  function drawTrend() {
    var canvas = document.getElementById("chart-trend");
    if (!canvas || typeof Chart === "undefined" || Chart.getChart(canvas)) return;
    var d = JSON.parse(canvas.getAttribute("data-trend"));
    var datasets = [
      line("Submitted " + d.category.toLowerCase(), d.submitted, "#4f46e5"),
      line("Adjusted " + d.category.toLowerCase(), d.adjusted, "#0ea5e9"),
      line("Computed commit", d.computed_commit, "#818cf8", { borderDash: [4, 3] }),
      line("Computed best case", d.computed_best_case, "#c7d2fe", { borderDash: [4, 3] }),
      line("Won", d.won, "#059669")
    ];
    if (d.quota.some(function (value) { return value !== null; })) {
      datasets.push(line("Quota", d.quota, "#dc2626", { borderDash: [6, 4], pointRadius: 0 }));
    }
    new Chart(canvas, {
      type: "line",
      data: { labels: d.labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: { duration: 300 },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12, color: MUTED } },
          tooltip: { callbacks: { label: function (item) { return " " + item.dataset.label + ": " + money.format(item.raw); } } }
        },
        scales: {
          x: { grid: { display: false }, ticks: { color: MUTED } },
          y: { beginAtZero: true, grid: { color: GRID }, ticks: { color: MUTED, callback: function (value) { return money.format(value); } } }
        }
      }
    });
  }

  document.addEventListener("htmx:afterSettle", drawTrend);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", drawTrend);
  else drawTrend();
})();
