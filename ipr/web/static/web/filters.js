// Click to filter, on the charts: a click on a bar, on a node of the flow
// diagram or on a legend entry adds that AS, country, prefix, router or
// traffic type to the page's filters (its query string), as the filter
// control beside each table row does. The keys come from the chart specs
// the views embed (ipr/web/present.py): "dim" and "keys" (in the order of
// "labels") for bars; "dims" and "keys" per node for the flow diagram; "dim"
// and a "key" per trace for a split series. A null key ("other", or a
// dimension the page filters on already) offers nothing: a legend entry
// then toggles its trace as plotly does by default.
(function () {
  "use strict";

  var PARAM = {router: "router", traffic_type: "type", origin_as: "asn", neighbor_as: "neighbor",
               country: "country", prefix: "prefix"};

  function offered(dim, key) {
    return Boolean(PARAM[dim]) && key !== null && key !== undefined;
  }

  var leaving = false;

  // This page, with the filter set (and no CSV parameters).
  function addFilter(dim, key) {
    if (leaving) return;
    leaving = true;
    var query = new URLSearchParams(window.location.search);
    query.set(PARAM[dim], key);
    query.delete("format");
    query.delete("table");
    window.location.search = query.toString();
  }

  function spec(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  // charts.js escapes & < > in every text it hands plotly; the same here,
  // to match a clicked label or trace name with its spec.
  function asText(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // The index of ``label`` in ``labels``: ``guess`` when it matches there,
  // else the first that matches, else the guess.
  function indexOf(labels, label, guess) {
    if (label === undefined || asText(labels[guess]) === label) return guess;
    for (var i = 0; i < labels.length; i++) if (asText(labels[i]) === label) return i;
    return guess;
  }

  // A click on a bar. charts.js draws the largest bar at the top, so plotly's
  // point index counts from the end of the spec's lists.
  function onBar(s) {
    return function (ev) {
      var p = ev && ev.points && ev.points[0];
      if (!p || !s.keys) return;
      var n = s.keys.length, i = p.pointIndex !== undefined ? p.pointIndex : p.pointNumber;
      var at = indexOf(s.labels, p.y, n - 1 - i);
      if (offered(s.dim, s.keys[at])) addFilter(s.dim, s.keys[at]);
    };
  }

  // A click on a node of the flow diagram (a click on a link has a source
  // and a target, and filters nothing).
  function onNode(s) {
    return function (ev) {
      var p = ev && ev.points && ev.points[0];
      if (!p || p.source !== undefined || p.target !== undefined || !s.keys) return;
      var at = indexOf(s.nodes, p.label, p.pointNumber !== undefined ? p.pointNumber : p.index);
      if (offered(s.dims[at], s.keys[at])) addFilter(s.dims[at], s.keys[at]);
    };
  }

  // plotly starts dragging a node on mousedown (unless the diagram's
  // arrangement is "fixed") and moves its element to the top, so the
  // browser sends no click and plotly_click never comes. A press and a
  // release on the same node, without moving, is a click here; the node is
  // known by its label (plotly draws it as text, so it reads as the spec's).
  function nodePresses(el, s) {
    var down = null;
    el.addEventListener("pointerdown", function (e) {
      var node = e.target.closest ? e.target.closest(".sankey-node") : null;
      down = node ? {node: node, x: e.clientX, y: e.clientY} : null;
    }, true);
    el.addEventListener("pointerup", function (e) {
      var was = down, label;
      down = null;
      if (!was || Math.abs(e.clientX - was.x) > 3 || Math.abs(e.clientY - was.y) > 3) return;
      label = was.node.querySelector(".node-label");
      var at = label ? s.nodes.indexOf(label.textContent) : -1;
      if (at >= 0 && offered(s.dims[at], s.keys[at])) addFilter(s.dims[at], s.keys[at]);
    }, true);
  }

  // A click on a legend entry of a split series: false stops plotly's toggle.
  function onLegend(s) {
    return function (ev) {
      var names = s.traces.map(function (t) { return t.name; });
      var shown = ev && ev.data && ev.data[ev.curveNumber];
      var at = indexOf(names, shown ? shown.name : undefined, ev.curveNumber);
      var t = s.traces[at];
      if (!t || !offered(s.dim, t.key)) return true;
      addFilter(s.dim, t.key);
      return false;
    };
  }

  function plotOf(s) {
    var fig = document.getElementById("chart-" + s.id);
    return fig ? fig.querySelector(".plot") : null;
  }

  function hint(s, text) {
    var fig = document.getElementById("chart-" + s.id), cap = fig && fig.querySelector("figcaption");
    if (!cap || cap.querySelector(".filter-hint")) return;
    var span = document.createElement("span");
    span.className = "filter-hint";
    span.textContent = text;
    cap.appendChild(span);
  }

  // plotly replaces a plot's event emitter (gd.on) whenever the plot is made
  // anew (Plotly.newPlot purges it): bind again each time the plot's
  // content changes and its gd.on is not the one bound.
  function bind(el, events) {
    function attach() {
      if (typeof el.on !== "function" || el._iprFiltersOn === el.on) return;
      Object.keys(events).forEach(function (name) { el.on(name, events[name]); });
      el._iprFiltersOn = el.on;
    }
    attach();
    new MutationObserver(attach).observe(el, {childList: true});
  }

  function setUp() {
    var charts = spec("chart-data") || [], flow = spec("flow-data"), bars = spec("bars-data");
    charts.forEach(function (s) {
      var el = plotOf(s);
      if (!el || !s.dim || !PARAM[s.dim] || !s.traces.some(function (t) { return offered(s.dim, t.key); })) return;
      bind(el, {plotly_legendclick: onLegend(s)});
      el.parentNode.setAttribute("data-filter-legend", s.dim);
      hint(s, "click a legend entry to filter");
    });
    if (bars && bars.keys && offered(bars.dim, bars.keys.filter(function (k) { return k !== null; })[0])) {
      var barsEl = plotOf(bars);
      if (barsEl) {
        bind(barsEl, {plotly_click: onBar(bars)});
        barsEl.parentNode.setAttribute("data-filter", bars.dim);
        hint(bars, "click a bar to filter");
      }
    }
    if (flow && flow.keys && flow.keys.some(function (k, i) { return offered(flow.dims[i], k); })) {
      var flowEl = plotOf(flow);
      if (flowEl) {
        bind(flowEl, {plotly_click: onNode(flow)});
        nodePresses(flowEl, flow);
        flowEl.parentNode.setAttribute("data-filter", "nodes");
        hint(flow, "click a router, neighbour or origin to filter");
      }
    }
  }

  document.addEventListener("DOMContentLoaded", setUp);
})();
