// The countries as a world map (a choropleth of bytes) beside the ranked
// table. The geometry is world-atlas's countries-110m.json (Natural Earth,
// TopoJSON), which ipr serves itself (static/vendor/world-atlas/); it is
// decoded and drawn here as SVG in the Equal Earth projection, so nothing
// comes from another host. A click on a country with traffic reloads the
// page with country=XX added to its query string.
(function () {
  "use strict";

  // ISO 3166-1 numeric (the geometry's ids) -> alpha-2 (ipr's codes), for
  // every country world-atlas draws.
  var NUMERIC = (
    "004AF 008AL 010AQ 012DZ 024AO 031AZ 032AR 036AU 040AT 044BS 050BD 051AM 056BE 064BT 068BO " +
    "070BA 072BW 076BR 084BZ 090SB 096BN 100BG 104MM 108BI 112BY 116KH 120CM 124CA 140CF 144LK " +
    "148TD 152CL 156CN 158TW 170CO 178CG 180CD 188CR 191HR 192CU 196CY 203CZ 204BJ 208DK 214DO " +
    "218EC 222SV 226GQ 231ET 232ER 233EE 238FK 242FJ 246FI 250FR 260TF 262DJ 266GA 268GE 270GM " +
    "275PS 276DE 288GH 300GR 304GL 320GT 324GN 328GY 332HT 340HN 348HU 352IS 356IN 360ID 364IR " +
    "368IQ 372IE 376IL 380IT 384CI 388JM 392JP 398KZ 400JO 404KE 408KP 410KR 414KW 417KG 418LA " +
    "422LB 426LS 428LV 430LR 434LY 440LT 442LU 450MG 454MW 458MY 466ML 478MR 484MX 496MN 498MD " +
    "499ME 504MA 508MZ 512OM 516NA 524NP 528NL 540NC 548VU 554NZ 558NI 562NE 566NG 578NO 586PK " +
    "591PA 598PG 600PY 604PE 608PH 616PL 620PT 624GW 626TL 630PR 634QA 642RO 643RU 646RW 682SA " +
    "686SN 688RS 694SL 703SK 704VN 705SI 706SO 710ZA 716ZW 724ES 728SS 729SD 732EH 740SR 748SZ " +
    "752SE 756CH 760SY 762TJ 764TH 768TG 780TT 784AE 788TN 792TR 795TM 800UG 804UA 807MK 818EG " +
    "826GB 834TZ 840US 854BF 858UY 860UZ 862VE 887YE 894ZM").split(" ").reduce(function (m, s) {
      m[s.slice(0, 3)] = s.slice(3); return m;
    }, {});
  // Shapes the geometry draws without an ISO id: Kosovo has the code the
  // RIRs use; Northern Cyprus and Somaliland are drawn as land, uncoloured.
  var BY_NAME = {"Kosovo": "XK"};
  // Antarctica is left off the map (it would take a fifth of its height);
  // its traffic, if any, is in the table.
  var LEFT_OFF = {"AQ": true};

  var NONE = "#e4e7eb", EDGE = "#ffffff";
  // A sequential blue ramp, light (least bytes) to dark (most).
  var RAMP = [[222, 235, 247], [158, 202, 225], [66, 146, 198], [8, 81, 156], [8, 48, 107]];

  // The pages' one precision (ipr/web/units.py): three significant digits,
  // at most two decimals, whole numbers below the first prefix.
  function threeDigits(v) {
    for (var d = 2; d >= 1; d--) {
      if (Math.abs(Number(v.toFixed(d))) < Math.pow(10, 3 - d)) return v.toFixed(d);
    }
    return v.toFixed(0);
  }
  function si(v, unit) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    var p = ["", "k", "M", "G", "T", "P", "E"], i = 0;
    while (i < p.length - 1 && Math.abs(i ? Number(threeDigits(v)) : Math.round(v)) >= 1000) { v /= 1000; i++; }
    return (i ? threeDigits(v) : v.toFixed(0)) + " " + p[i] + unit;
  }
  function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(2) + " %"; }
  function ms(v) { return v === null || v === undefined ? "–" : threeDigits(v) + " ms"; }

  // Equal Earth (Šavrič, Patterson and Jenny, 2018): equal-area, so a
  // country's colour covers its true share of the map.
  var A1 = 1.340264, A2 = -0.081106, A3 = 0.000893, A4 = 0.003796, M = Math.sqrt(3) / 2;
  function project(lon, lat) {
    var l = lon * Math.PI / 180, t = Math.asin(M * Math.sin(lat * Math.PI / 180));
    var t2 = t * t, t6 = t2 * t2 * t2;
    return [l * Math.cos(t) / (M * (A1 + 3 * A2 * t2 + t6 * (7 * A3 + 9 * A4 * t2))),
            -t * (A1 + A2 * t2 + t6 * (A3 + A4 * t2))];
  }

  // TopoJSON: each arc is a run of quantized, delta-encoded points
  // (longitude, latitude); a ring lists arcs by index (~i for arc i
  // reversed), each starting where the previous one ended.
  function decodeArcs(topo) {
    var s = topo.transform.scale, t = topo.transform.translate;
    return topo.arcs.map(function (arc) {
      var x = 0, y = 0;
      return arc.map(function (d) {
        x += d[0]; y += d[1];
        return [x * s[0] + t[0], y * s[1] + t[1]];
      });
    });
  }
  function svgPoint(lon, lat) {  // in 1/100 of the projection's units
    var p = project(lon, lat);
    return [p[0] * 100, p[1] * 100];
  }
  // A ring as SVG path data. world-atlas keeps rings whole across the
  // antimeridian (Russia's Chukotka, Fiji): their longitudes are made
  // continuous, the ring is drawn again a turn to the other side, and the
  // map's outline clips both. bounds grows to hold what lies on the map.
  function ringPath(ring, arcs, bounds) {
    var pts = [];
    ring.forEach(function (i, n) {
      var arc = i < 0 ? arcs[~i].slice().reverse() : arcs[i];
      pts = pts.concat(n ? arc.slice(1) : arc);
    });
    var lo = Infinity, hi = -Infinity;
    pts = pts.map(function (p, n) {
      var lon = p[0];
      if (n) {
        var prev = pts[n - 1][0];
        while (lon - prev > 180) lon -= 360;
        while (lon - prev < -180) lon += 360;
      }
      pts[n] = [lon, p[1]];
      lo = Math.min(lo, lon); hi = Math.max(hi, lon);
      return pts[n];
    });
    var turns = [0];
    if (hi > 180) turns.push(-360);
    if (lo < -180) turns.push(360);
    return turns.map(function (turn) {
      return "M" + pts.map(function (p) {
        var lon = p[0] + turn, xy = svgPoint(lon, p[1]);
        if (lon >= -180 && lon <= 180) {
          bounds[0] = Math.min(bounds[0], xy[0]); bounds[1] = Math.min(bounds[1], xy[1]);
          bounds[2] = Math.max(bounds[2], xy[0]); bounds[3] = Math.max(bounds[3], xy[1]);
        }
        return xy[0].toFixed(1) + "," + xy[1].toFixed(1);
      }).join("L") + "Z";
    }).join("");
  }
  // The map's edge: the meridians ±180° from pole to pole.
  function outlinePath() {
    var east = [], west = [];
    for (var lat = -90; lat <= 90; lat += 2) { east.push(svgPoint(180, lat)); west.unshift(svgPoint(-180, lat)); }
    return "M" + east.concat(west).map(function (p) { return p[0].toFixed(1) + "," + p[1].toFixed(1); })
      .join("L") + "Z";
  }
  function geometryPath(g, arcs, bounds) {
    var polygons = g.type === "Polygon" ? [g.arcs] : g.type === "MultiPolygon" ? g.arcs : [];
    return polygons.map(function (rings) {
      return rings.map(function (r) { return ringPath(r, arcs, bounds); }).join("");
    }).join("");
  }

  // bytes -> colour on a log scale between the smallest and largest country.
  function colourScale(values) {
    var lo = Math.log10(Math.min.apply(null, values)), hi = Math.log10(Math.max.apply(null, values));
    return function (v) {
      var f = hi > lo ? (Math.log10(v) - lo) / (hi - lo) : 1;
      var x = Math.max(0, Math.min(1, f)) * (RAMP.length - 1), i = Math.min(Math.floor(x), RAMP.length - 2);
      var a = RAMP[i], b = RAMP[i + 1], w = x - i;
      return "rgb(" + [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * w); }).join(",") + ")";
    };
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svgEl(name, attrs, parent) {
    var el = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(el);
    return el;
  }

  function filterTo(code) {
    var query = new URLSearchParams(window.location.search);
    query.set("country", code);
    query.delete("format");
    query.delete("table");
    window.location.search = query.toString();
  }

  function draw(box, topo, spec) {
    var arcs = decodeArcs(topo), byCode = {};
    spec.countries.forEach(function (c) { if (c.bytes > 0) byCode[c.code] = c; });
    var values = Object.keys(byCode).map(function (k) { return byCode[k].bytes; });
    var colour = values.length ? colourScale(values) : null;
    var bounds = [Infinity, Infinity, -Infinity, -Infinity];
    var svg = svgEl("svg", {role: "img", "aria-label": spec.title, "class": "world"});
    var clip = svgEl("clipPath", {id: "map-edge"}, svgEl("defs", {}, svg));
    svgEl("path", {d: outlinePath()}, clip);
    var land = svgEl("g", {"class": "countries", "clip-path": "url(#map-edge)"}, svg);
    var tip = document.createElement("div");
    tip.className = "map-tip";
    tip.hidden = true;

    var drawn = {};
    topo.objects.countries.geometries.forEach(function (g) {
      var code = g.id !== undefined ? NUMERIC[g.id] : BY_NAME[g.properties && g.properties.name];
      if (code && LEFT_OFF[code]) return;
      if (code) drawn[code] = true;
      var row = code ? byCode[code] : null;
      var path = svgEl("path", {d: geometryPath(g, arcs, bounds), fill: row ? colour(row.bytes) : NONE,
                                stroke: EDGE, "stroke-width": 0.4}, land);
      if (code) path.setAttribute("data-code", code);
      var name = row ? row.name : (g.properties && g.properties.name) || code || "";
      var text = row ? [name, si(row.bytes, "B") + " · " + pct(row.share) + " of bytes",
                        si(row.bps, "b/s"), "retransmits " + pct(row.retrans_rate) + " · RTT p95 " + ms(row.rtt_p95_ms)]
                     : [name, "no traffic"];
      svgEl("title", {}, path).textContent = text.join("\n");
      if (!row) return;
      path.setAttribute("class", "has-traffic");
      path.setAttribute("tabindex", "0");
      path.setAttribute("role", "link");
      path.addEventListener("click", function () { filterTo(code); });
      path.addEventListener("keydown", function (e) { if (e.key === "Enter") filterTo(code); });
      path.addEventListener("mousemove", function (e) {
        tip.textContent = "";
        text.forEach(function (line, i) {
          var el = document.createElement(i ? "div" : "b");
          el.textContent = line;
          tip.appendChild(el);
        });
        var r = box.getBoundingClientRect();
        tip.style.left = Math.min(e.clientX - r.left + 12, r.width - 220) + "px";
        tip.style.top = (e.clientY - r.top + 12) + "px";
        tip.hidden = false;
      });
      path.addEventListener("mouseleave", function () { tip.hidden = true; });
    });
    // The drawn countries' extent, and a row below it for the legend.
    var pad = 2, x0 = bounds[0] - pad, y0 = bounds[1] - pad, w = bounds[2] - bounds[0] + 2 * pad;
    var h = bounds[3] - bounds[1] + 2 * pad;
    svg.setAttribute("viewBox", [x0, y0, w, h + 24].map(function (v) { return v.toFixed(1); }).join(" "));
    legend(svg, values, colour, x0 + pad, y0 + h);
    box.textContent = "";
    box.appendChild(svg);
    box.appendChild(tip);
    if (!values.length) box.insertAdjacentText("beforeend", "no traffic in this range");
    // Countries with traffic that the map cannot show (too small for the
    // 1:110m map, like Singapore; Antarctica; the RIRs' region codes).
    var off = spec.countries.filter(function (c) { return byCode[c.code] && !drawn[c.code]; });
    if (off.length) {
      var note = document.createElement("p");
      note.className = "map-note";
      note.textContent = "Not on the map: " + off.map(function (c) {
        return c.name + " (" + si(c.bytes, "B") + ")";
      }).join(", ") + ".";
      box.appendChild(note);
    }
  }

  // A ramp from the least to the most bytes (log scale), and the colour of
  // a country without traffic.
  function legend(svg, values, colour, x, y) {
    var g = svgEl("g", {"class": "legend", "font-size": 11}, svg);
    svgEl("rect", {x: x, y: y + 6, width: 14, height: 10, fill: NONE}, g);
    svgEl("text", {x: x + 18, y: y + 15}, g).textContent = "no traffic";
    if (!values.length) return;
    var lo = Math.log10(Math.min.apply(null, values)), hi = Math.log10(Math.max.apply(null, values));
    var n = 40, left = x + 140;
    for (var i = 0; i < n; i++) {
      svgEl("rect", {x: left + i * 4, y: y + 6, width: 4.2, height: 10,
                     fill: colour(Math.pow(10, lo + (hi - lo) * i / (n - 1)))}, g);
    }
    svgEl("text", {x: left - 4, y: y + 15, "text-anchor": "end"}, g).textContent = si(Math.pow(10, lo), "B");
    svgEl("text", {x: left + n * 4 + 4, y: y + 15}, g).textContent = si(Math.pow(10, hi), "B") + " (log scale)";
  }

  function start() {
    var data = document.getElementById("map-data");
    if (!data) return;
    var spec = JSON.parse(data.textContent), figure = document.getElementById("chart-" + spec.id);
    var box = figure && figure.querySelector(".map-plot");
    if (!box) return;
    fetch(figure.getAttribute("data-geometry"), {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    }).then(function (topo) {  // a fault in the drawing is not a missing file: not caught here
      draw(box, topo, spec);
      figure.setAttribute("data-drawn", "true");
    }, function () {
      box.textContent = "The map needs its geometry (world-atlas's countries-110m.json, which the set-up " +
                        "fetches with npm); the table holds every figure.";
      box.classList.add("missing");
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
