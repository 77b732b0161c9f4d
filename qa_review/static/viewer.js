/* mskus QA review viewer: zoom/pan, window/level, overlay on/off, corrections, cine playback.
 * Progressive: without JavaScript the page shows the server-drawn overlay PNG and the form still works.
 * Coordinates are DICOM SCOORD (top-left corner of the image at (0, 0)); the SVG's viewBox is the image. */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var form = document.getElementById("signoff-form");
  var token = form ? form.querySelector('input[name="csrf_token"]').value : "";
  var version = form ? form.querySelector('input[name="version"]').value : "";

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVGNS, name);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(node);
    return node;
  }
  function pointsAttr(pts) { return pts.map(function (p) { return p[0] + "," + p[1]; }).join(" "); }
  function round2(v) { return Math.round(v * 100) / 100; }

  function Viewer(figure) {
    var self = this;
    this.figure = figure;
    this.findings = JSON.parse(figure.querySelector(".findings-data").textContent || "[]");
    this.stage = figure.querySelector(".stage");
    this.tools = figure.querySelector(".viewer-tools");
    this.zoom = 1; this.panX = 0; this.panY = 0;
    this.editing = null;
    var img = new Image();
    img.onload = function () { self.build(img); };
    img.onerror = function () { /* source not available: keep the overlay PNG */ };
    img.src = figure.getAttribute("data-image");
  }

  Viewer.prototype.build = function (img) {
    var self = this;
    this.img = img;
    this.w = img.naturalWidth; this.h = img.naturalHeight;
    var inner = document.createElement("div");
    inner.className = "inner";
    var canvas = document.createElement("canvas");
    canvas.width = this.w; canvas.height = this.h;
    canvas.className = "image";
    this.canvas = canvas;
    var svg = el("svg", { viewBox: "0 0 " + this.w + " " + this.h, class: "overlay", preserveAspectRatio: "none" });
    this.svg = svg;
    inner.appendChild(canvas); inner.appendChild(svg);
    this.inner = inner;
    var fallback = this.stage.querySelector(".overlay-png");
    if (fallback) fallback.hidden = true;
    this.stage.appendChild(inner);
    this.stage.classList.add("live");
    this.tools.hidden = false;
    this.ctx = canvas.getContext("2d");
    this.ctx.drawImage(img, 0, 0);
    this.original = this.ctx.getImageData(0, 0, this.w, this.h);
    this.shapes = {};
    this.findings.forEach(function (f) { self.draw(f); });
    this.wire();
  };

  Viewer.prototype.draw = function (f) {
    var old = this.shapes[f.id];
    if (old) old.remove();
    var g = el("g", { class: "finding " + f.kind, "data-finding": f.id }, this.svg);
    var pts = f.points;
    if (!pts.length) return;
    if (f.kind === "caliper") {
      el("polyline", { points: pointsAttr(pts), class: "shape" }, g);
    } else {
      el("polygon", { points: pointsAttr(pts), class: "shape" }, g);
    }
    if (this.editing === f.id && (f.kind === "caliper" || (f.kind === "contour" && !f.drawing))) {
      pts.forEach(function (p, i) { el("circle", { cx: p[0], cy: p[1], r: 4, class: "handle", "data-index": i }, g); });
    }
    this.shapes[f.id] = g;
  };

  Viewer.prototype.toImage = function (evt) {
    var rect = this.canvas.getBoundingClientRect();
    return [round2((evt.clientX - rect.left) * this.w / rect.width), round2((evt.clientY - rect.top) * this.h / rect.height)];
  };

  Viewer.prototype.transform = function () {
    this.inner.style.transform = "translate(" + this.panX + "px," + this.panY + "px) scale(" + this.zoom + ")";
  };

  Viewer.prototype.windowLevel = function () {
    var win = +this.tools.querySelector(".wl-window").value;
    var lev = +this.tools.querySelector(".wl-level").value;
    var lut = new Uint8ClampedArray(256);
    for (var v = 0; v < 256; v++) lut[v] = ((v - (lev - win / 2)) * 255) / win;
    var src = this.original.data;
    var out = this.ctx.createImageData(this.w, this.h);
    for (var i = 0; i < src.length; i += 4) {
      out.data[i] = lut[src[i]]; out.data[i + 1] = lut[src[i + 1]]; out.data[i + 2] = lut[src[i + 2]]; out.data[i + 3] = 255;
    }
    this.ctx.putImageData(out, 0, 0);
  };

  Viewer.prototype.finding = function (id) {
    return this.findings.filter(function (f) { return f.id === id; })[0];
  };

  Viewer.prototype.changed = function (f) {
    var box = document.getElementById("finding-" + f.id);
    box.querySelector("input.points").value = JSON.stringify(f.points);
    var radio = box.querySelector("input.correct-radio");
    if (radio) radio.checked = true;
    var preview = document.getElementById("preview-" + f.id);
    var body = new URLSearchParams();
    body.set("csrf_token", token); body.set("version", version); body.set("finding", f.id);
    body.set("points", JSON.stringify(f.points));
    preview.textContent = "measuring…";
    fetch(form.getAttribute("data-recompute"), { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (j) { return [r.status, j]; }); })
      .then(function (res) {
        if (res[0] !== 200) { preview.textContent = "cannot be measured: " + res[1].error; preview.className = "preview error-text"; return; }
        preview.className = "preview";
        preview.textContent = "recomputed: " + res[1].values.map(function (v) { return v.name + " " + v.text + " " + (v.unit === "1" ? "" : v.unit) + (v.flag ? " (" + v.flag + ")" : ""); }).join(", ");
        res[1].values.forEach(function (v) {
          var cell = box.querySelector('td[data-name="' + v.name + '"]');
          if (cell) cell.setAttribute("data-corrected", v.text);
        });
      })
      .catch(function () { preview.textContent = "the server did not answer: the values are measured at sign-off"; });
  };

  Viewer.prototype.wire = function () {
    var self = this;
    var tools = this.tools;
    tools.addEventListener("click", function (e) {
      var act = e.target.getAttribute("data-act");
      if (act === "zoom-in") self.zoom = Math.min(8, self.zoom * 1.25);
      else if (act === "zoom-out") self.zoom = Math.max(1, self.zoom / 1.25);
      else if (act === "reset") {
        self.zoom = 1; self.panX = 0; self.panY = 0;
        tools.querySelector(".wl-window").value = 255; tools.querySelector(".wl-level").value = 128; self.windowLevel();
      } else return;
      self.transform();
    });
    tools.querySelector(".wl-window").addEventListener("input", function () { self.windowLevel(); });
    tools.querySelector(".wl-level").addEventListener("input", function () { self.windowLevel(); });
    tools.querySelector(".overlay-on").addEventListener("change", function (e) { self.svg.style.display = e.target.checked ? "" : "none"; });
    this.stage.addEventListener("wheel", function (e) {
      e.preventDefault();
      self.zoom = Math.max(1, Math.min(8, self.zoom * (e.deltaY < 0 ? 1.15 : 1 / 1.15)));
      self.transform();
    }, { passive: false });

    var drag = null;
    this.svg.addEventListener("pointerdown", function (e) {
      var f = self.editing ? self.finding(self.editing) : null;
      var at = self.toImage(e);
      if (f && f.kind === "contour" && f.drawing) {
        f.points.push(at); self.draw(f); e.preventDefault(); return;
      }
      if (f && e.target.classList.contains("handle")) {
        drag = { kind: "handle", index: +e.target.getAttribute("data-index"), f: f };
      } else if (f && f.kind === "roi" && e.target.closest("g.finding") === self.shapes[f.id]) {
        drag = { kind: "move", last: at, f: f };
      } else {
        drag = { kind: "pan", x: e.clientX - self.panX, y: e.clientY - self.panY };
      }
      self.svg.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    this.svg.addEventListener("pointermove", function (e) {
      if (!drag) return;
      if (drag.kind === "pan") { self.panX = e.clientX - drag.x; self.panY = e.clientY - drag.y; self.transform(); return; }
      var at = self.toImage(e);
      if (drag.kind === "handle") drag.f.points[drag.index] = at;
      else {
        var dx = at[0] - drag.last[0], dy = at[1] - drag.last[1];
        drag.f.points = drag.f.points.map(function (p) { return [round2(p[0] + dx), round2(p[1] + dy)]; });
        drag.last = at;
      }
      self.draw(drag.f);
    });
    this.svg.addEventListener("pointerup", function () {
      if (drag && drag.f) self.changed(drag.f);
      drag = null;
    });
    this.svg.addEventListener("dblclick", function () {
      var f = self.editing ? self.finding(self.editing) : null;
      if (f && f.drawing) self.finishContour(f);
    });
  };

  Viewer.prototype.finishContour = function (f) {
    f.drawing = false;
    if (f.points.length < 3) { f.points = f.saved; }
    else this.changed(f);
    this.draw(f);
    var button = document.querySelector('button.edit[data-finding="' + f.id + '"]');
    if (button) button.textContent = "Redraw contour";
  };

  Viewer.prototype.edit = function (id) {
    var f = this.finding(id);
    if (!f) return;
    if (this.editing && this.editing !== id) {
      var prev = this.finding(this.editing);
      this.editing = null; if (prev) { if (prev.drawing) this.finishContour(prev); this.draw(prev); }
    }
    this.editing = id;
    var button = document.querySelector('button.edit[data-finding="' + id + '"]');
    if (f.kind === "contour") {
      if (f.drawing) { this.finishContour(f); return; }
      f.saved = f.points; f.points = []; f.drawing = true;
      if (button) button.textContent = "Finish contour (or double-click)";
    }
    this.svg.classList.add("editing");
    this.draw(f);
  };

  var viewers = {};
  Array.prototype.forEach.call(document.querySelectorAll("figure.viewer"), function (figure) {
    var v = new Viewer(figure);
    v.findings.forEach(function (f) { viewers[f.id] = v; });
  });
  Array.prototype.forEach.call(document.querySelectorAll("button.edit"), function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var v = viewers[button.getAttribute("data-finding")];
      if (v && v.img) v.edit(button.getAttribute("data-finding"));
    });
  });

  /* Cine playback: frames fetched from the source image; measured frames marked on the strip. */
  Array.prototype.forEach.call(document.querySelectorAll("section.cine"), function (section) {
    var frames = +section.getAttribute("data-frames");
    var src = section.getAttribute("data-src");
    var img = section.querySelector("img.cine-frame");
    var controls = section.querySelector(".cine-controls");
    var pos = controls.querySelector(".cine-pos");
    var label = controls.querySelector(".cine-label");
    var play = controls.querySelector("button.play");
    var marks = controls.querySelectorAll(".marks li");
    var timer = null;
    controls.hidden = false;
    function show(n) {
      img.src = src.replace(/\/1\.png$/, "/" + n + ".png");
      pos.value = n;
      var measured = (marks[n - 1] && marks[n - 1].classList.contains("measured"));
      label.textContent = "frame " + n + " of " + frames + (measured ? " (measured)" : "");
      Array.prototype.forEach.call(marks, function (m, i) { m.classList.toggle("now", i === n - 1); });
    }
    pos.addEventListener("input", function () { show(+pos.value); });
    Array.prototype.forEach.call(marks, function (m) { m.addEventListener("click", function () { show(+m.getAttribute("data-frame")); }); });
    play.addEventListener("click", function () {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "Play"; return; }
      play.textContent = "Pause";
      timer = setInterval(function () { show((+pos.value % frames) + 1); }, 200);
    });
  });

  /* Fasciculation events: play the clip from t - 1 s to t + 1 s around each event, at the clip's frame rate. */
  Array.prototype.forEach.call(document.querySelectorAll("section.fasciculation"), function (section) {
    var player = section.querySelector(".event-player");
    if (!player) return;
    var img = player.querySelector("img.event-frame");
    var label = player.querySelector(".event-label");
    var src = section.getAttribute("data-src");
    var frames = +section.getAttribute("data-frames");
    var interval = +section.getAttribute("data-interval") || 40;
    var timer = null;
    var playing = null;
    player.hidden = false;
    function stop() {
      if (timer) { clearInterval(timer); timer = null; }
      if (playing) { playing.button.textContent = "Play t−1 s to t+1 s"; playing.row.classList.remove("playing"); playing = null; }
    }
    function show(n, at) {
      img.src = src.replace(/\/1\.png$/, "/" + n + ".png");
      img.setAttribute("data-frame", n);
      label.textContent = "frame " + n + " of " + frames + (n === at ? " (event: peak displacement)" : "");
    }
    Array.prototype.forEach.call(section.querySelectorAll("button.play-event"), function (button) {
      button.hidden = false;
      button.addEventListener("click", function () {
        var again = playing && playing.button === button;
        stop();
        if (again) return;
        var from = +button.getAttribute("data-from"), to = +button.getAttribute("data-to");
        var at = +button.getAttribute("data-at");
        var row = button.closest("tr");
        playing = { button: button, row: row };
        row.classList.add("playing");
        button.textContent = "Stop";
        var n = from;
        show(n, at);
        timer = setInterval(function () {
          n += 1;
          if (n > to) { stop(); label.textContent += " (end of t+1 s)"; return; }
          show(n, at);
        }, interval);
      });
    });
  });
})();
