/* fastdecode atlas: sorting, jump to a filter and the detail view of a layer page.
   The page's data is the JSON in <script id="atlas-data">; pictures are cells of the layer's
   sprite sheets, placed by CSS background-position. No network, no libraries. */
(function () {
  "use strict";

  var dataEl = document.getElementById("atlas-data");
  var tilesEl = document.getElementById("tiles");
  if (!dataEl || !tilesEl) { return; }  // the overview page needs no script
  var data = JSON.parse(dataEl.textContent);
  var detail = document.getElementById("detail");
  var tiles = Array.prototype.slice.call(tilesEl.querySelectorAll(".filter"));
  var byIndex = {};
  tiles.forEach(function (t) { byIndex[t.getAttribute("data-filter")] = t; });
  var current = -1;

  function fmt(e) {
    if (e === null || e === undefined) { return "-"; }
    return e < 1e-3 ? e.toExponential(2) : e.toFixed(4);
  }

  function fmtScore(s) {
    var a = Math.abs(s);
    return (a !== 0 && (a < 1e-2 || a >= 1e4)) ? s.toExponential(2) : s.toFixed(3);
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  /* A picture: cell `index` of a sheet layout `spec` shown at `scale`; the sheet's image and
     size come from the page's CSS rule for `cls` and the sheet number. */
  function cell(spec, index, scale, cls) {
    var sheet = Math.floor(index / spec.per_sheet), i = index % spec.per_sheet;
    var r = Math.floor(i / spec.cols), c = i % spec.cols;
    var e = el("span", "pic s" + sheet + (cls ? " " + cls : ""));
    e.style.backgroundPosition = (-c * spec.cell[0] * scale) + "px " +
      (-r * spec.cell[1] * scale) + "px";
    return e;
  }

  function order() {
    return Array.prototype.slice.call(tilesEl.querySelectorAll(".filter"));
  }

  /* Sorting: tiles are reordered in place, so every tile stays in the DOM. */
  var sortEl = document.getElementById("sort");
  function sortTiles(how) {
    var sorted = tiles.slice();
    var key = function (t) { return parseInt(t.getAttribute("data-filter"), 10); };
    var err = function (t) { return parseFloat(t.getAttribute("data-error")); };
    if (how === "error-desc") {
      sorted.sort(function (a, b) { return (err(b) - err(a)) || (key(a) - key(b)); });
    } else if (how === "error-asc") {
      sorted.sort(function (a, b) { return (err(a) - err(b)) || (key(a) - key(b)); });
    } else {
      sorted.sort(function (a, b) { return key(a) - key(b); });
    }
    var frag = document.createDocumentFragment();
    sorted.forEach(function (t) { frag.appendChild(t); });
    tilesEl.appendChild(frag);
  }
  if (sortEl) {
    sortEl.addEventListener("change", function () { sortTiles(sortEl.value); });
  }

  /* Jump to a filter by number. */
  var jumpForm = document.getElementById("jump");
  var jumpInput = document.getElementById("jump-to");
  var jumpMsg = document.getElementById("jump-msg");
  if (jumpForm) {
    jumpForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var v = jumpInput.value.trim();
      var f = /^\d+$/.test(v) ? parseInt(v, 10) : NaN;
      if (isNaN(f) || f < 0 || f >= data.K) {
        jumpMsg.textContent = "no filter " + (v || "?") + ": this layer has filters 0-" +
          (data.K - 1);
        return;
      }
      jumpMsg.textContent = "";
      show(f, true);
    });
  }

  function topList(filter, key, other, title) {
    var sec = el("section", "top-list");
    sec.appendChild(el("h3", null, title));
    var grid = el("div", "top-grid");
    var shared = {};
    filter[other].forEach(function (it) { shared[it[0]] = true; });
    filter[key].forEach(function (it, rank) {
      var img = it[0], score = it[1], info = data.images[String(img)] || {};
      var fig = el("figure", "top-image" + (shared[img] ? " shared" : ""));
      fig.setAttribute("data-source", key === "n" ? "network" : "decoded");
      fig.setAttribute("data-image", String(img));
      fig.setAttribute("data-rank", String(rank));
      var tip = "image " + img + (info.name ? " (" + info.name + ")" : "") +
        (info.label !== undefined ? ", label " + info.label : "") + "\nscore " +
        fmtScore(score) + (shared[img] ? "\nin both lists" : "");
      if (data.patches) {
        tip += "\npatch at row " + it[3] + ", column " + it[4];
      }
      fig.title = tip;
      fig.appendChild(cell(data.tops, it[2], data.top_scale));
      var cap = el("figcaption");
      cap.appendChild(el("span", "rank", (rank + 1) + "."));
      cap.appendChild(document.createTextNode(" #" + img));
      if (info.label !== undefined) { cap.appendChild(el("span", "label", info.label)); }
      fig.appendChild(cap);
      if (shared[img]) { fig.appendChild(el("span", "badge", "both")); }
      grid.appendChild(fig);
    });
    sec.appendChild(grid);
    return sec;
  }

  function bigPicture(spec, index, scale, cls, caption) {
    var fig = el("figure", "big-fig");
    fig.appendChild(cell(spec, index, scale, "big " + cls));
    fig.appendChild(el("figcaption", null, caption));
    return fig;
  }

  function render(f) {
    var K = data.K;
    detail.textContent = "";
    var head = el("div", "detail-head");
    var h = el("h2", null, "Filter " + f);
    if (data.classes) { h.appendChild(el("span", "cls", " (class " + data.classes[f] + ")")); }
    h.appendChild(el("small", null, " of " + data.layer + " (" + K + " filters)"));
    head.appendChild(h);
    var nav = el("div", "detail-nav");
    var prev = el("button", "prev", "\u2190"); prev.type = "button"; prev.title = "previous (\u2190)";
    var next = el("button", "next", "\u2192"); next.type = "button"; next.title = "next (\u2192)";
    var close = el("button", "close", "\u00d7"); close.type = "button"; close.title = "close (Esc)";
    close.setAttribute("aria-label", "close");
    prev.addEventListener("click", function () { step(-1); });
    next.addEventListener("click", function () { step(1); });
    close.addEventListener("click", hide);
    nav.appendChild(prev); nav.appendChild(next); nav.appendChild(close);
    head.appendChild(nav);
    detail.appendChild(head);

    var stats = el("p", "stats");
    if (data.errors) {
      var e = data.errors[f];
      var worse = data.errors.filter(function (x) { return x > e; }).length;
      stats.appendChild(document.createTextNode("Eq. 3 error "));
      stats.appendChild(el("b", "error", fmt(e)));
      stats.appendChild(document.createTextNode(" (rank " + (worse + 1) + " of " + K +
        ", worst first) over " + data.n_images + " images, " + data.unpool + " unpooling."));
    } else {
      stats.textContent = "No images were given: decoded filter only.";
    }
    detail.appendChild(stats);

    var bigs = el("div", "bigs");
    bigs.appendChild(bigPicture(data.tiles, f, data.large_scale, "tiles-sheet",
      "decoded (" + data.rf[0] + "\u00d7" + data.rf[1] + ")"));
    bigs.appendChild(bigPicture(data.tiles, K + f, data.large_scale, "tiles-sheet",
      "thresholded at " + data.threshold));
    if (data.weights) {
      bigs.appendChild(bigPicture(data.weights, f, data.weights_scale, "weights-sheet",
        "original weights"));
    }
    detail.appendChild(bigs);

    if (data.filters) {
      var flt = data.filters[f];
      var k = flt.n.length;
      var common = Math.round(flt.o * k);
      var p = el("p", "overlap", "Top " + k + (data.patches ? " patches" : " images") +
        " by the network's response and by the decoded filter's correlation: " + common +
        " of " + k + " shared (marked \u201cboth\u201d).");
      if (data.patches) {
        p.textContent += " A unit of this layer sees " + data.rf[0] + "\u00d7" + data.rf[1] +
          " pixels: each patch is that field around the best position; tinted pixels lie " +
          "in the padding.";
      }
      detail.appendChild(p);
      var tops = el("div", "tops");
      tops.appendChild(topList(flt, "n", "d", "By the network's response"));
      tops.appendChild(topList(flt, "d", "n", "By the decoded filter"));
      detail.appendChild(tops);
    }
  }

  function show(f, scroll) {
    if (f < 0 || f >= data.K) { return; }
    if (current >= 0 && byIndex[current]) { byIndex[current].classList.remove("current"); }
    current = f;
    var t = byIndex[f];
    t.classList.add("current");
    render(f);
    detail.hidden = false;
    document.body.classList.add("with-detail");
    if (scroll) { t.scrollIntoView({block: "center"}); }
    var hash = "#f=" + f;
    if (location.hash !== hash && history.replaceState) {
      try { history.replaceState(null, "", hash); } catch (e) { /* some file:// setups */ }
    }
  }

  function hide() {
    detail.hidden = true;
    document.body.classList.remove("with-detail");
    if (current >= 0 && byIndex[current]) {
      byIndex[current].classList.remove("current");
      byIndex[current].focus();
    }
    current = -1;
    if (history.replaceState && location.hash) {
      try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { /* ignore */ }
    }
  }

  /* Previous or next filter in the tiles' current order. */
  function step(d) {
    var list = order();
    var i = list.indexOf(byIndex[current]);
    var j = Math.min(list.length - 1, Math.max(0, i + d));
    show(parseInt(list[j].getAttribute("data-filter"), 10), true);
  }

  tilesEl.addEventListener("click", function (ev) {
    var t = ev.target.closest(".filter");
    if (t) { show(parseInt(t.getAttribute("data-filter"), 10), false); }
  });
  tilesEl.addEventListener("keydown", function (ev) {
    var t = ev.target.closest(".filter");
    if (t && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      show(parseInt(t.getAttribute("data-filter"), 10), false);
    }
  });
  document.addEventListener("keydown", function (ev) {
    if (detail.hidden || ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") {
      return;
    }
    if (ev.key === "Escape") { hide(); }
    else if (ev.key === "ArrowLeft") { ev.preventDefault(); step(-1); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); step(1); }
  });

  function fromHash() {
    var m = /^#f=(\d+)$/.exec(location.hash);
    if (m) { show(parseInt(m[1], 10), true); }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
