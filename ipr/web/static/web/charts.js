// Draws the pages' charts from the specs the views embed (json_script), with
// the plotly.js the plotly package ships (served locally). Without it the
// tables still carry every figure; the chart boxes say why they are empty.
(function () {
  "use strict";

  function si(v, unit) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    var p = ["", "k", "M", "G", "T", "P"], i = 0;
    while (Math.abs(v) >= 1000 && i < p.length - 1) { v /= 1000; i++; }
    return (i ? v.toPrecision(3) : Math.round(v)) + " " + p[i] + unit;
  }
  var AXIS = {
    bps: {ticksuffix: "b/s", exponentformat: "SI", hover: function (v) { return si(v, "b/s"); }},
    bytes: {ticksuffix: "B", exponentformat: "SI", hover: function (v) { return si(v, "B"); }},
    pct: {tickformat: ".2%", hover: function (v) { return v === null ? "–" : (v * 100).toFixed(2) + " %"; }},
    ms: {ticksuffix: " ms", hover: function (v) { return v === null ? "–" : v.toFixed(1) + " ms"; }},
    int: {exponentformat: "SI", hover: function (v) { return si(v, ""); }}
  };
  var LAYOUT = {
    margin: {l: 70, r: 10, t: 36, b: 36}, height: 280, showlegend: true,
    legend: {orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: {size: 11}},
    font: {family: "system-ui, sans-serif", size: 12}, paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)", hovermode: "x unified"
  };
  var CONFIG = {displaylogo: false, responsive: true, displayModeBar: false};
  // Hours and minutes under a day apart, dates beyond.
  var TICKS = [{dtickrange: [null, 86400000], value: "%H:%M<br>%b %d"}, {dtickrange: [86400000, null], value: "%b %d"}];

  function box(id) {
    var fig = document.getElementById("chart-" + id);
    return fig ? fig.querySelector(".plot") : null;
  }

  function timeChart(spec) {
    var el = box(spec.id), axis = AXIS[spec.unit] || {};
    if (!el) return;
    var traces = spec.traces.map(function (t) {
      var tr = {x: spec.x, y: t.y, name: t.name, type: "scatter", mode: "lines",
                line: {width: 1.5, dash: t.dash || "solid"},
                text: t.y.map(function (v) { return axis.hover ? axis.hover(v) : v; }),
                hovertemplate: "%{text}<extra>%{fullData.name}</extra>"};
      if (spec.kind === "area") { tr.stackgroup = "one"; tr.line.width = 0.5; }
      else { tr.connectgaps = true; }  // a bucket without samples has no rate: bridge it
      return tr;
    });
    var layout = Object.assign({}, LAYOUT, {
      xaxis: {type: "date", gridcolor: "#eee", tickangle: 0, nticks: 8, tickformatstops: TICKS},
      yaxis: {ticksuffix: axis.ticksuffix, tickformat: axis.tickformat, exponentformat: axis.exponentformat,
              rangemode: "tozero", gridcolor: "#eee"}
    });
    Plotly.newPlot(el, traces, layout, CONFIG);
  }

  function barChart(spec) {
    var el = box(spec.id), axis = AXIS[spec.unit] || {};
    if (!el) return;
    var labels = spec.labels.slice().reverse(), values = spec.values.slice().reverse();
    Plotly.newPlot(el, [{type: "bar", orientation: "h", x: values, y: labels,
      text: values.map(axis.hover), textposition: "auto", hovertemplate: "%{y}: %{text}<extra></extra>",
      marker: {color: "#3b6ea5"}}],
      Object.assign({}, LAYOUT, {height: Math.max(260, 22 * labels.length + 60), showlegend: false,
        margin: {l: 200, r: 10, t: 10, b: 40}, hovermode: "closest",
        xaxis: {ticksuffix: axis.ticksuffix, exponentformat: "SI"}, yaxis: {automargin: true}}), CONFIG);
  }

  function translucent(hex, alpha) {  // "#3b6ea5" -> "rgba(59,110,165,alpha)"
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function sankey(spec) {
    var el = box(spec.id);
    if (!el) return;
    if (!spec.links.length) { el.textContent = "no traffic in this range"; return; }
    var colours = {router: "#3b6ea5", neighbor: "#e08a2c", origin: "#4f9a5b"};
    var nodeColours = spec.kinds.map(function (k) { return colours[k] || "#999"; });
    Plotly.newPlot(el, [{type: "sankey", arrangement: "snap",
      node: {label: spec.nodes, color: nodeColours, pad: 12, thickness: 14},
      // Links need a colour of their own: by default plotly picks white ones
      // when the paper looks dark, and it reads our transparent paper,
      // rgba(0,0,0,0), as black, so on the white card the links vanished.
      // Each link takes its source node's colour, translucent.
      link: {color: spec.links.map(function (l) { return translucent(nodeColours[l.source], 0.35); }),
             source: spec.links.map(function (l) { return l.source; }),
             target: spec.links.map(function (l) { return l.target; }),
             value: spec.links.map(function (l) { return l.bytes; }),
             customdata: spec.links.map(function (l) { return si(l.bytes, "B"); }),
             hovertemplate: "%{source.label} → %{target.label}: %{customdata}<extra></extra>"}}],
      Object.assign({}, LAYOUT, {height: 420, showlegend: false, hovermode: "closest",
                                 margin: {l: 10, r: 10, t: 10, b: 10}}), CONFIG);
  }

  // plotly reads a subset of HTML in every text it draws (labels, legends,
  // ticks, hover: <a href>, <b>, <br>, <span style>) and decodes &lt; &gt;
  // &amp; back to the characters, shown as text. Names come from outside
  // (AS names from PeeringDB), so every string of the chart data is escaped
  // here, where it is read, whatever trace type or field it ends up in.
  function asText(value) {
    return value.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent, function (key, value) {
      return typeof value === "string" ? asText(value) : value;
    }) : null;
  }

  function draw() {
    var charts = data("chart-data") || [], flow = data("flow-data"), bars = data("bars-data");
    if (typeof Plotly === "undefined") {
      document.querySelectorAll(".chart .plot").forEach(function (el) {
        el.textContent = "Charts need plotly.min.js (the plotly package); the tables hold every figure.";
        el.classList.add("missing");
      });
      return;
    }
    charts.forEach(timeChart);
    if (flow) sankey(flow);
    if (bars) barChart(bars);
    document.body.setAttribute("data-charts", "drawn");
  }

  // The range picker: a preset clears from/to; typing a time picks "from / to".
  function picker() {
    var select = document.getElementById("range-select");
    if (!select) return;
    var from = document.getElementById("range-from"), to = document.getElementById("range-to");
    select.addEventListener("change", function () {
      if (select.value) { from.value = ""; to.value = ""; select.form.submit(); }
    });
    [from, to].forEach(function (input) {
      input.addEventListener("change", function () { select.value = ""; });
    });
  }

  // The countries report's month menu shows the month chosen (no inline
  // handler: the Content-Security-Policy allows no inline script).
  function monthPicker() {
    var select = document.getElementById("month-select");
    if (select) select.addEventListener("change", function () { select.form.submit(); });
  }

  document.addEventListener("DOMContentLoaded", function () { picker(); monthPicker(); draw(); });
})();
