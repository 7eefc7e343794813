// Draws the pages' charts from the specs the views embed (json_script), with
// the plotly.js the plotly package ships (served locally). Without it the
// tables still carry every figure; the chart boxes say why they are empty.
(function () {
  "use strict";

  // One precision everywhere, as ipr/web/units.py writes the tables: three
  // significant digits with their trailing zeros (13.0 kb/s beside 14.3 kb/s,
  // 1.47 GB), whole numbers below the first prefix (0 B), two decimals in %.
  var PREFIXES = ["", "k", "M", "G", "T", "P", "E"];
  function rounded(v, decimals) { var f = Math.pow(10, decimals); return Math.round(v * f) / f; }
  function threeDigits(v) {
    for (var d = 2; d >= 1; d--) {
      if (Math.abs(rounded(v, d)) < Math.pow(10, 3 - d)) return v.toFixed(d);
    }
    return v.toFixed(0);
  }
  function si(v, unit) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    var i = 0;
    // Rounded first, so that 999,700 B reads 1.00 MB rather than 1000 kB.
    while (i < PREFIXES.length - 1 && Math.abs(i ? parseFloat(threeDigits(v)) : Math.round(v)) >= 1000) {
      v /= 1000; i++;
    }
    return (i ? threeDigits(v) : Math.round(v).toFixed(0)) + " " + PREFIXES[i] + unit;
  }
  function grouped(v) {  // 12345 -> "12 345" (a narrow no-break space), as units.human_int
    if (v === null || v === undefined || isNaN(v)) return "–";
    return Math.round(v).toString().replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f");
  }
  function percent(v, decimals) {
    return v === null || v === undefined || isNaN(v) ? "–" : (v * 100).toFixed(decimals) + " %";
  }
  // Each unit's text, for hover labels and axis ticks alike; "volume" units
  // are amounts over a bucket, drawn as steps.
  var UNITS = {
    bps: {text: function (v) { return si(v, "b/s"); }, volume: true},
    bytes: {text: function (v) { return si(v, "B"); }, volume: true},
    int: {text: grouped, volume: true},
    pct: {text: function (v) { return percent(v, 2); }},
    ms: {text: function (v) { return v === null || v === undefined ? "–" : threeDigits(v) + " ms"; }}
  };
  function unitOf(name) { return UNITS[name] || {text: String}; }

  var LAYOUT = {
    margin: {l: 70, r: 10, t: 36, b: 40}, autosize: true, showlegend: true,
    legend: {orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: {size: 11}},
    font: {family: "system-ui, sans-serif", size: 12}, paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)", hovermode: "x unified"
  };
  var CONFIG = {displaylogo: false, responsive: true, displayModeBar: false};
  // Times are UTC, as the range picker reads them. Hours and minutes under a
  // day apart; the year on every tick from a day apart up.
  var TICKS = [{dtickrange: [null, 86400000], value: "%H:%M<br>%b %d"},
               {dtickrange: [86400000, "M1"], value: "%b %d<br>%Y"},
               {dtickrange: ["M1", null], value: "%b<br>%Y"}];
  var EMPTY = "no traffic in this range";

  function box(id) {
    var fig = document.getElementById("chart-" + id);
    return fig ? fig.querySelector(".plot") : null;
  }

  // The box keeps the height it is given, and plotly fills it: with
  // `responsive`, plotly sizes the drawing to its box on every resize, and a
  // box as tall as its content would follow the drawing (and then squash it).
  function sized(el, height) {
    el.style.height = height + "px";
    return el;
  }

  function empty(el) {
    el.textContent = EMPTY;
    el.classList.add("empty");
  }

  function present(v) { return v !== null && v !== undefined && !isNaN(v); }

  // A chart has something to draw when any point has a value; for volumes a
  // zero is no traffic, for rates (retransmits, RTT) a zero is a measure.
  function hasPoints(values, volume) {
    return values.some(function (v) { return present(v) && (!volume || v !== 0); });
  }

  // Axis ticks written as the tables write figures: 4–6 round steps from 0.
  function ticks(max, unit) {
    if (!(max > 0)) max = 1;
    var raw = max / 4, mag = Math.pow(10, Math.floor(Math.log10(raw))), norm = raw / mag;
    var step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
    if (unitOf(unit).volume && step < 1) step = 1;  // volumes below 1000 are written whole: no 0.5 B
    var top = Math.ceil(max * 1.05 / step) * step, vals = [], text = [];
    // Percentages keep two decimals unless the steps are finer than that.
    var decimals = 2;
    while (decimals < 6 && Math.abs(rounded(step * 100, decimals) - step * 100) > 1e-9) decimals++;
    for (var i = 0; i * step <= top * (1 + 1e-9); i++) {
      vals.push(i * step);
      text.push(unit === "pct" ? percent(i * step, decimals) : unitOf(unit).text(i * step));
    }
    return {tickvals: vals, ticktext: text, range: [0, top]};
  }

  // Markers on the points that have no neighbour to draw a line to, so a
  // series with one non-empty bucket shows it.
  function isolated(y) {
    return y.map(function (v, i) {
      return present(v) && !present(y[i - 1]) && !present(y[i + 1]) ? 6 : 0;
    });
  }

  function timeChart(spec) {
    var el = box(spec.id), unit = unitOf(spec.unit);
    if (!el) return;
    var volume = !!unit.volume;
    if (!spec.traces.some(function (t) { return hasPoints(t.y, volume); })) return empty(el);
    var step = (spec.step || 3600) * 1000;
    var x = spec.x.map(function (t) { return Date.parse(t); });
    // A volume is a rate over its bucket: a step from the bucket's start to
    // its end (the last bucket's end added), never a ramp between buckets.
    if (volume && x.length) x = x.concat([x[x.length - 1] + step]);
    var peak = 0;
    var traces = spec.traces.map(function (t) {
      var y = volume ? t.y.concat([t.y[t.y.length - 1]]) : t.y;
      var tr = {x: x, y: y, name: t.name, type: "scatter", line: {width: 1.5, dash: t.dash || "solid"},
                text: y.map(unit.text), hovertemplate: "%{text}<extra>%{fullData.name}</extra>",
                connectgaps: false,  // a bucket without samples has no rate: a gap, not a line
                // Each point stands for its whole bucket: hovering anywhere
                // in it shows that bucket, not the nearest bucket's start.
                xperiod: step, xperiodalignment: "start"};
      if (volume) {
        tr.mode = "lines";
        tr.line.shape = "hv";
        if (spec.kind === "area") { tr.stackgroup = "one"; tr.line.width = 0.5; }
      } else {
        tr.mode = "lines+markers";
        tr.marker = {size: isolated(y)};
      }
      return tr;
    });
    for (var i = 0; i < spec.x.length; i++) {  // the axis spans the highest bucket (stacked: summed)
      var column = spec.traces.map(function (t) { return present(t.y[i]) ? t.y[i] : 0; });
      peak = Math.max(peak, spec.kind === "area" ? column.reduce(function (a, b) { return a + b; }, 0)
                                                 : Math.max.apply(null, column));
    }
    var y = ticks(peak, spec.unit);
    var end = volume ? x[x.length - 1] : x[x.length - 1] + step;
    var layout = Object.assign({}, LAYOUT, {
      xaxis: {type: "date", gridcolor: "#eee", tickangle: 0, nticks: 8, tickformatstops: TICKS,
              hoverformat: "%Y-%m-%d %H:%M UTC", range: [x[0], end]},
      yaxis: {tickmode: "array", tickvals: y.tickvals, ticktext: y.ticktext, range: y.range,
              gridcolor: "#eee", fixedrange: true}
    });
    Plotly.newPlot(sized(el, 280), traces, layout, CONFIG);
  }

  function barChart(spec) {
    var el = box(spec.id), unit = unitOf(spec.unit);
    if (!el) return;
    if (!hasPoints(spec.values, true)) return empty(el);
    var labels = spec.labels.slice().reverse(), values = spec.values.slice().reverse();
    var x = ticks(Math.max.apply(null, values.filter(present)), spec.unit);
    Plotly.newPlot(sized(el, Math.max(260, 22 * labels.length + 60)),
      [{type: "bar", orientation: "h", x: values, y: labels,
        text: values.map(unit.text), textposition: "auto", hovertemplate: "%{y}: %{text}<extra></extra>",
        marker: {color: "#3b6ea5"}}],
      Object.assign({}, LAYOUT, {showlegend: false, margin: {l: 200, r: 10, t: 10, b: 40}, hovermode: "closest",
        xaxis: {tickmode: "array", tickvals: x.tickvals, ticktext: x.ticktext, range: x.range, fixedrange: true},
        yaxis: {automargin: true, fixedrange: true}}), CONFIG);
  }

  function translucent(hex, alpha) {  // "#3b6ea5" -> "rgba(59,110,165,alpha)"
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function sankey(spec) {
    var el = box(spec.id);
    if (!el) return;
    if (!spec.links.length) return empty(el);
    var colours = {router: "#3b6ea5", neighbor: "#e08a2c", origin: "#4f9a5b"};
    var nodeColours = spec.kinds.map(function (k) { return colours[k] || "#999"; });
    Plotly.newPlot(sized(el, 420), [{type: "sankey", arrangement: "snap",
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
      Object.assign({}, LAYOUT, {showlegend: false, hovermode: "closest",
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

  // The countries report's month menu, in the range picker's place, shows
  // the month chosen; a month replaces any other period shown (no inline
  // handler: the Content-Security-Policy allows no inline script).
  function monthPicker() {
    var select = document.getElementById("month-select");
    if (!select) return;
    select.addEventListener("change", function () {
      if (select.value) {
        select.form.querySelectorAll("input[data-period]").forEach(function (input) { input.remove(); });
      }
      select.form.submit();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { picker(); monthPicker(); draw(); });
})();
