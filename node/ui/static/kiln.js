// Draws each chart on a dashboard page with uPlot: a .plot element, then a
// <script type="application/json" class="series"> with {steps, values}.
// The page also holds the same numbers as a table, for readers without
// script or sight.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("figure.chart").forEach(function (fig) {
    var el = fig.querySelector(".plot");
    var data = JSON.parse(fig.querySelector("script.series").textContent);
    var width = Math.min(el.parentElement.clientWidth || 640, 720);
    new uPlot({
      width: width, height: 220,
      scales: { x: { time: false } },
      series: [{ label: "step" }, { label: el.dataset.key, stroke: "#0b5cad", width: 2 }],
      axes: [{ label: "step" }, {}],
    }, [data.steps, data.values], el);
    el.dataset.points = String(data.steps.length);
  });
});
