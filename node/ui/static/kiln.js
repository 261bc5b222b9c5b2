// Draws each chart of a dashboard page with uPlot: a figure.chart holds a
// .plot element and a <script type="application/json" class="series"> with
// {title, time, xlabel, x: [...], series: [{label, values: [...]}]}. The
// figure also holds the same numbers as a table, for readers without
// script or sight. A live page's content is swapped in anew every few
// seconds by htmx, so charts are drawn again after each swap; a page that
// includes this file twice sets the listeners once.
(function () {
  if (window.kilnCharts) return;
  var colours = ["#0b5cad", "#a40000", "#1d6b2a", "#8a6d00"];
  window.kilnCharts = function (root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("figure.chart").forEach(function (fig) {
      var el = fig.querySelector(".plot");
      if (el.dataset.points) return;
      var c = JSON.parse(fig.querySelector("script.series").textContent);
      var width = Math.min(el.parentElement.clientWidth || 640, 720);
      var series = [{ label: c.xlabel }];
      var data = [c.x];
      c.series.forEach(function (s, i) {
        series.push({ label: s.label, stroke: colours[i % colours.length], width: 2, spanGaps: true });
        data.push(s.values);
      });
      // A time chart spans its span (an hour by default) up to its newest
      // point, however few points it has yet.
      var span = c.span || 3600;
      var x = c.time ? { time: true, range: function (u, min, max) { return [max - span, max + 10]; } } : { time: false };
      new uPlot({ width: width, height: 220, scales: { x: x }, series: series }, data, el);
      el.dataset.points = String(c.x.length);
    });
  };
  var draw = function () { window.kilnCharts(document); };
  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:after:swap", draw);
  if (document.readyState !== "loading") draw();
})();
