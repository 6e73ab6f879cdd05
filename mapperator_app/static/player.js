/* Mapperator preview player: plays a song and draws its beatmap in sync, the way osu! draws it.
 *
 * Plain JS + canvas 2D, no build step and no dependencies. The map comes as the JSON that the engine's
 * `engine.preview.preview_json(beatmap)` produces (slider paths, stacking, catch droplets... are computed there).
 *
 *   const player = new MapperatorPlayer(containerElement, mapJson, audioUrl);   // audioUrl may be null (silent)
 *   player.play(); player.pause(); player.seek(ms); player.setRate(0.75); player.setHitsounds(true);
 *   player.highlight([3, 4]);               // objects by their index in Beatmap.hit_objects
 *   player.highlight({from: 1000, to: 2000});  // every object in a time range (ms)
 *   player.highlight("00:13:400 (9,10) - ");   // an osu! editor timestamp (combo numbers, or mania time|column)
 *   player.focus(ms, what);                 // pause, seek to ms and highlight `what` (default: the objects at ms)
 *   player.destroy();
 *
 * Markup mounts players by itself too (for pages that insert HTML, e.g. Gradio's gr.HTML):
 *   <div class="mapperator-player" data-player-id="generate" data-audio="URL" data-map="{...preview json...}"></div>
 * with the JSON HTML-escaped in data-map (or data-map-url="URL of the JSON", or the JSON as the text of a child
 * script element of type application/json); `MapperatorPlayer.get("generate")` finds the player again.
 * (This file never contains the closing script tag, so it can be inlined in a page's head.)
 *
 * Layout (tests rely on it): osu! and catch fit the 640x480 virtual screen into the view and centre the 512x384
 * playfield in it; `player.layout()` returns the geometry of every mode.
 */
(function (global) {
  "use strict";

  if (global.MapperatorPlayer) return;  // loaded twice (e.g. in a page head and a component)

  const OSU_W = 512, OSU_H = 384, SCREEN_W = 640, SCREEN_H = 480;
  const FADE_OUT_MS = 240;
  const RATES = [0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1];
  const HIGHLIGHT = "#ff4fd8";
  const TAIKO = {don: "#eb452c", kat: "#448dab", roll: "#fcb71e", swell: "#f59a0c"};
  const MANIA_SCROLL_MS = 800;
  const DRIFT_SNAP_MS = 60;
  const HOLD_MAX_MS = 1500;

  // ------------------------------------------------------------------------------------- helpers
  /** First index i with arr[i] > value (arr sorted ascending). */
  function upperBound(arr, value) {
    let lo = 0, hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (arr[mid] <= value) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  /** First index i with arr[i] >= value (arr sorted ascending). */
  function lowerBound(arr, value) {
    let lo = 0, hi = arr.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (arr[mid] < value) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  const clamp = (v, lo, hi) => (v < lo ? lo : v > hi ? hi : v);
  const rgb = (c, a) => (a === undefined ? `rgb(${c[0]},${c[1]},${c[2]})` : `rgba(${c[0]},${c[1]},${c[2]},${a})`);

  function formatTime(ms) {
    const t = Math.max(0, Math.floor(ms));
    const m = Math.floor(t / 60000), s = Math.floor(t / 1000) % 60, r = t % 1000;
    return `${m}:${String(s).padStart(2, "0")}.${String(r).padStart(3, "0")}`;
  }

  /** The osu! editor timestamp "mm:ss:mmm (a,b) - " as {time, combo: [..]} or {time, notes: [[time, column]..]}. */
  function parseTimestamp(text) {
    const m = /(\d+):(\d{1,2}):(\d{1,3})\s*(?:\(([^)]*)\))?/.exec(String(text));
    if (!m) return null;
    const time = (+m[1]) * 60000 + (+m[2]) * 1000 + (+m[3]);
    const out = {time, combo: [], notes: []};
    for (const part of (m[4] || "").split(",")) {
      const p = part.trim();
      if (!p) continue;
      if (p.includes("|")) {
        const [t, c] = p.split("|");
        out.notes.push([+t, +c]);
      } else if (/^\d+$/.test(p)) out.combo.push(+p);
    }
    return out;
  }

  // --------------------------------------------------------------------------------------- clock
  /** Song time in ms: the audio element's clock, interpolated between its updates so frames are smooth. */
  class Clock {
    constructor(audio) {
      this.audio = audio;
      this.time = 0;
      this.rate = 1;
      this.playing = false;
      this.anchorTime = 0;
      this.anchorWall = 0;
      this.lastAudio = NaN;
      this.holding = false;
      this.holdSince = 0;
    }

    audioRunning() {
      const a = this.audio;
      return !!(a && a.src && !a.error && !a.paused && !a.ended && a.readyState >= 2);
    }

    set(ms) {
      this.time = ms;
      this.anchorTime = ms;
      this.anchorWall = performance.now();
      this.lastAudio = NaN;
    }

    /** Stand still until the audio really plays (after play() or a seek), at most HOLD_MAX_MS. */
    hold() {
      this.time = this.now();
      this.holding = true;
      this.holdSince = performance.now();
    }

    release(ms) {
      this.holding = false;
      this.set(ms === undefined ? this.time : ms);
    }

    now() {
      if (!this.playing) return this.time;
      if (this.holding) {
        if (performance.now() - this.holdSince < HOLD_MAX_MS) return this.time;
        this.release();  // the audio never started: carry on without it
      }
      const wall = performance.now();
      let t = this.anchorTime + (wall - this.anchorWall) * this.rate;
      if (this.audioRunning()) {
        const a = this.audio.currentTime * 1000;
        if (a !== this.lastAudio) {  // a fresh reading: steer towards it, or jump when far off
          this.lastAudio = a;
          const error = a - t;
          if (Math.abs(error) > DRIFT_SNAP_MS) {
            this.anchorTime = a;
            this.anchorWall = wall;
            t = a;
          } else {
            this.anchorTime += error * 0.1;
          }
        }
      }
      if (t < this.time && this.time - t < DRIFT_SNAP_MS) t = this.time;  // never step back by a little
      this.time = t;
      return t;
    }
  }

  // -------------------------------------------------------------------------------------- ticks
  /** Optional hitsound ticks through Web Audio, scheduled slightly ahead of the song. */
  class Ticks {
    constructor(times, pitches) {
      this.times = times;
      this.pitches = pitches;
      this.ctx = null;
      this.cursor = 0;
    }

    enable() {
      if (!this.ctx) {
        const AC = global.AudioContext || global.webkitAudioContext;
        if (!AC) return false;
        this.ctx = new AC();
      }
      if (this.ctx.state === "suspended") this.ctx.resume();
      return true;
    }

    reset(t) { this.cursor = lowerBound(this.times, t); }

    schedule(t, rate) {
      const ctx = this.ctx;
      if (!ctx || ctx.state !== "running") return;
      const horizon = t + 150 * rate;
      while (this.cursor < this.times.length && this.times[this.cursor] <= horizon) {
        const i = this.cursor++;
        const at = ctx.currentTime + (this.times[i] - t) / 1000 / rate;
        if (at < ctx.currentTime - 0.005) continue;
        const osc = ctx.createOscillator(), gain = ctx.createGain();
        osc.frequency.value = this.pitches[i];
        gain.gain.setValueAtTime(0.25, Math.max(at, ctx.currentTime));
        gain.gain.exponentialRampToValueAtTime(0.001, Math.max(at, ctx.currentTime) + 0.05);
        osc.connect(gain).connect(ctx.destination);
        osc.start(Math.max(at, ctx.currentTime));
        osc.stop(Math.max(at, ctx.currentTime) + 0.06);
      }
    }

    close() {
      if (this.ctx) this.ctx.close();
      this.ctx = null;
    }
  }

  // ------------------------------------------------------------------------------------- the map
  /** The preview JSON as typed arrays plus what drawing needs often (visibility bounds, paths). */
  class MapData {
    constructor(json) {
      if (!json || !json.objects || !Array.isArray(json.objects.time)) {
        throw new Error("MapperatorPlayer: the map JSON has no objects (expected engine.preview.preview_json output)");
      }
      this.json = json;
      this.mode = json.mode | 0;
      const o = json.objects;
      const n = o.time.length;
      this.n = n;
      this.kind = Int8Array.from(o.kind);
      this.time = Float64Array.from(o.time);
      this.end = Float64Array.from(o.end);
      this.x = Float64Array.from(o.x);
      this.y = Float64Array.from(o.y);
      this.combo = Int32Array.from(o.combo || new Array(n).fill(0));
      this.colour = Int32Array.from(o.colour || new Array(n).fill(0));
      this.newCombo = Int8Array.from(o.new_combo || new Array(n).fill(0));
      this.slides = Int32Array.from(o.slides || new Array(n).fill(0));
      this.paths = o.path || null;
      this.kat = o.kat ? Int8Array.from(o.kat) : null;
      this.big = o.big ? Int8Array.from(o.big) : null;
      this.scroll = o.scroll ? Float64Array.from(o.scroll) : null;
      this.column = o.column ? Int32Array.from(o.column) : null;
      this.keys = json.keys || 4;
      this.fileIndex = o.index ? Int32Array.from(o.index) : null;
      this.preempt = json.preempt || 1200;
      this.fadeIn = json.fade_in || 400;
      this.radius = json.radius || 32;
      this.colours = (json.colours && json.colours.length ? json.colours : [[255, 192, 0]]);
      this.colourCss = this.colours.map((c) => rgb(c));
      this.bodyCss = this.colours.map((c) => rgb([c[0] * 0.3 | 0, c[1] * 0.3 | 0, c[2] * 0.3 | 0]));
      this.redLines = json.red_lines || [];
      this.kiai = json.kiai || [];
      this.breaks = json.breaks || [];
      this.endTime = json.end || (n ? this.end[n - 1] : 0);
      // maxEnd[i]: the latest end among objects 0..i, so "everything still visible at t" is a binary search
      this.maxEnd = new Float64Array(n);
      let m = -Infinity;
      for (let i = 0; i < n; i++) { m = Math.max(m, this.end[i]); this.maxEnd[i] = m; }
      this.catch = json.catch ? {
        time: Float64Array.from(json.catch.time), x: Float64Array.from(json.catch.x),
        kind: Int8Array.from(json.catch.kind), colour: Int32Array.from(json.catch.colour),
        hyper: Int8Array.from(json.catch.hyper),
      } : null;
      this.pathCache = new Map();
      this.mainBeat = this.mainBeatLength();
      // osu!taiko: each object scrolls at its own speed, relative to the map's main beat length at SV 1
      this.speed = null;
      this.minSpeed = 1;
      if (this.scroll) {
        this.speed = this.scroll.map((s) => clamp(s * this.mainBeat / 1000, 0.05, 20));
        for (let i = 0; i < n; i++) this.minSpeed = Math.min(this.minSpeed, this.speed[i]);
      }
      this.buildSounds();
    }

    /** Objects that may be visible at time t: indices [from, to) (to = first that starts after t + ahead). */
    range(t, behind, ahead) {
      return [lowerBound(this.maxEnd, t - behind), upperBound(this.time, t + ahead)];
    }

    /** Path2D, cumulative lengths and points of slider i (osu!), built once. */
    path(i) {
      let p = this.pathCache.get(i);
      if (p) return p;
      const flat = (this.paths && this.paths[i]) || [this.x[i], this.y[i]];
      const k = flat.length >> 1;
      const cum = new Float64Array(Math.max(k, 1));
      const path2d = new Path2D();
      path2d.moveTo(flat[0], flat[1]);
      for (let j = 1; j < k; j++) {
        const dx = flat[2 * j] - flat[2 * j - 2], dy = flat[2 * j + 1] - flat[2 * j - 1];
        cum[j] = cum[j - 1] + Math.hypot(dx, dy);
        path2d.lineTo(flat[2 * j], flat[2 * j + 1]);
      }
      if (k === 1) path2d.lineTo(flat[0] + 0.01, flat[1]);
      p = {flat, cum, path2d, length: cum[k - 1] || 0};
      this.pathCache.set(i, p);
      return p;
    }

    /** Position at progress (0..1) along slider i's path. */
    pathPoint(i, progress) {
      const p = this.path(i), f = p.flat;
      if (p.length <= 0) return [f[0], f[1]];
      const d = clamp(progress, 0, 1) * p.length;
      let j = upperBound(p.cum, d);
      if (j >= p.cum.length) j = p.cum.length - 1;
      if (j < 1) j = 1;
      const seg = p.cum[j] - p.cum[j - 1];
      const w = seg > 0 ? (d - p.cum[j - 1]) / seg : 0;
      return [f[2 * j - 2] + (f[2 * j] - f[2 * j - 2]) * w, f[2 * j - 1] + (f[2 * j + 1] - f[2 * j - 1]) * w];
    }

    /** The beat length that lasts longest (for the taiko scroll speed and bar lines). */
    mainBeatLength() {
      const r = this.redLines;
      if (!r.length) return 500;
      let best = r[0][1], bestSpan = -1;
      for (let k = 0; k < r.length; k++) {
        const span = (k + 1 < r.length ? r[k + 1][0] : Math.max(this.endTime, r[k][0])) - r[k][0];
        if (span > bestSpan) { bestSpan = span; best = r[k][1]; }
      }
      return clamp(best, 6, 60000);
    }

    /** Bar line times within [from, to]. */
    barLines(from, to) {
      const out = [], r = this.redLines;
      for (let k = 0; k < r.length; k++) {
        const start = r[k][0], bar = r[k][1] * (r[k][2] || 4);
        const stop = Math.min(k + 1 < r.length ? r[k + 1][0] : Infinity, to);
        if (!(bar > 1) || stop < from) continue;
        let n = Math.max(0, Math.ceil((from - start) / bar));
        for (let t = start + n * bar; t < stop && out.length < 256; t = start + (++n) * bar) out.push(t);
      }
      return out;
    }

    /** Hitsound tick times and pitches (sorted), per mode. */
    buildSounds() {
      const ev = [];
      if (this.mode === 2 && this.catch) {
        const c = this.catch;
        for (let i = 0; i < c.time.length; i++) if (c.kind[i] === 0) ev.push([c.time[i], 1500]);
      } else {
        for (let i = 0; i < this.n; i++) {
          const kind = this.kind[i], t = this.time[i];
          if (this.mode === 1) {
            if (kind === 2) ev.push([this.end[i], 1000]);
            else ev.push([t, this.kat && this.kat[i] && kind === 0 ? 2400 : 900]);
          } else if (kind === 1 && this.mode === 0) {
            const spans = Math.max(1, this.slides[i]);
            for (let s = 0; s <= spans; s++) ev.push([t + (this.end[i] - t) * s / spans, 1500]);
          } else if (kind === 2 && this.mode === 0) {
            ev.push([this.end[i], 1500]);
          } else {
            ev.push([t, 1500]);
          }
        }
      }
      ev.sort((a, b) => a[0] - b[0]);
      this.soundTimes = Float64Array.from(ev.map((e) => e[0]));
      this.soundPitches = Float64Array.from(ev.map((e) => e[1]));
    }

    /** Sorted-order index of the object at index i of Beatmap.hit_objects. */
    sortedIndex(fileIndex) {
      if (!this.fileIndex) return fileIndex >= 0 && fileIndex < this.n ? fileIndex : -1;
      if (!this.inverse) {
        this.inverse = new Map();
        for (let i = 0; i < this.n; i++) this.inverse.set(this.fileIndex[i], i);
      }
      const v = this.inverse.get(fileIndex);
      return v === undefined ? -1 : v;
    }
  }

  // ------------------------------------------------------------------------------------ renderers
  /** osu!standard: circles, sliders, spinners, approach circles, follow points, combo numbers. */
  function drawOsu(p, ctx, t, w, h) {
    const m = p.map, L = p.layout();
    const s = L.scale, r = m.radius, preempt = m.preempt;
    ctx.fillStyle = "#000";
    ctx.fillRect(L.ox, L.oy, OSU_W * s, OSU_H * s);
    ctx.save();
    ctx.translate(L.ox, L.oy);
    ctx.scale(s, s);
    ctx.strokeStyle = "rgba(255,255,255,0.08)";
    ctx.lineWidth = 1 / s;
    ctx.strokeRect(0, 0, OSU_W, OSU_H);
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.font = `600 ${Math.round(r * 0.85)}px system-ui, sans-serif`;

    const [from, to] = m.range(t, FADE_OUT_MS, preempt);
    // follow points first (underneath everything)
    ctx.lineWidth = 2;
    for (let i = Math.max(from, 1); i < to; i++) {
      if (m.newCombo[i] || m.kind[i] === 2 || m.kind[i - 1] === 2) continue;
      const t0 = m.end[i - 1], t1 = m.time[i];
      if (t > t1 || t < t0 - preempt) continue;
      const [x0, y0] = endPosition(m, i - 1), x1 = m.x[i], y1 = m.y[i];
      const d = Math.hypot(x1 - x0, y1 - y0);
      if (d < r * 2.2) continue;
      const a = clamp((t - (t0 - preempt)) / m.fadeIn, 0, 1) * 0.35;
      const ux = (x1 - x0) / d, uy = (y1 - y0) / d;
      ctx.strokeStyle = `rgba(255,255,255,${a})`;
      ctx.beginPath();
      ctx.moveTo(x0 + ux * r * 1.1, y0 + uy * r * 1.1);
      ctx.lineTo(x1 - ux * r * 1.1, y1 - uy * r * 1.1);
      ctx.stroke();
    }
    // earlier objects on top: draw from the latest back to the earliest
    for (let i = to - 1; i >= from; i--) {
      const start = m.time[i], end = m.end[i];
      if (end + FADE_OUT_MS < t) continue;
      const appear = clamp((t - (start - preempt)) / m.fadeIn, 0, 1);
      const gone = t > end ? 1 - (t - end) / FADE_OUT_MS : 1;
      const alpha = Math.min(appear, gone);
      if (alpha <= 0) continue;
      const lit = p.isHighlighted(i);
      const kind = m.kind[i];
      if (kind === 2) drawSpinner(p, ctx, i, t, alpha, lit);
      else if (kind === 1) drawSlider(p, ctx, i, t, alpha, lit);
      else drawCircle(p, ctx, i, t, alpha, lit);
    }
    ctx.restore();
  }

  function endPosition(m, i) {
    if (m.kind[i] !== 1) return [m.x[i], m.y[i]];
    return m.pathPoint(i, (Math.max(1, m.slides[i]) % 2) ? 1 : 0);
  }

  function drawHitCircle(p, ctx, x, y, i, alpha, withNumber) {
    const m = p.map, r = m.radius;
    ctx.globalAlpha = alpha;
    ctx.fillStyle = m.colourCss[m.colour[i] % m.colourCss.length];
    ctx.beginPath();
    ctx.arc(x, y, r * 0.92, 0, Math.PI * 2);
    ctx.fill();
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = r * 0.13;
    ctx.stroke();
    if (withNumber) {
      ctx.fillStyle = "#fff";
      ctx.fillText(String(m.combo[i]), x, y + r * 0.04);
    }
  }

  function drawApproach(p, ctx, x, y, i, t, alpha) {
    const m = p.map, start = m.time[i];
    if (t >= start) return;
    const progress = clamp((t - (start - m.preempt)) / m.preempt, 0, 1);
    ctx.globalAlpha = alpha * 0.9;
    ctx.strokeStyle = m.colourCss[m.colour[i] % m.colourCss.length];
    ctx.lineWidth = m.radius * 0.09;
    ctx.beginPath();
    ctx.arc(x, y, m.radius * (1 + 3 * (1 - progress)), 0, Math.PI * 2);
    ctx.stroke();
  }

  function drawHighlightRing(p, ctx, x, y) {
    const r = p.map.radius;
    ctx.globalAlpha = 1;
    ctx.strokeStyle = HIGHLIGHT;
    ctx.lineWidth = r * 0.22;
    ctx.beginPath();
    ctx.arc(x, y, r * 1.25, 0, Math.PI * 2);
    ctx.stroke();
  }

  function drawCircle(p, ctx, i, t, alpha, lit) {
    const m = p.map, x = m.x[i], y = m.y[i], start = m.time[i];
    let a = alpha, scale = 1;
    if (t > start) {  // hit: grow and fade
      const k = clamp((t - start) / FADE_OUT_MS, 0, 1);
      a = alpha * (1 - k);
      scale = 1 + 0.4 * k;
    }
    if (scale !== 1) {
      ctx.save();
      ctx.translate(x, y);
      ctx.scale(scale, scale);
      ctx.translate(-x, -y);
    }
    drawHitCircle(p, ctx, x, y, i, a, true);
    if (scale !== 1) ctx.restore();
    drawApproach(p, ctx, x, y, i, t, alpha);
    if (lit) drawHighlightRing(p, ctx, x, y);
    ctx.globalAlpha = 1;
  }

  function drawArrow(ctx, at, toward, r, alpha) {
    const dx = toward[0] - at[0], dy = toward[1] - at[1], d = Math.hypot(dx, dy) || 1;
    const ux = dx / d, uy = dy / d, s = r * 0.45;
    ctx.globalAlpha = alpha;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = r * 0.16;
    ctx.beginPath();
    ctx.moveTo(at[0] - ux * s * 0.4 - uy * s, at[1] - uy * s * 0.4 + ux * s);
    ctx.lineTo(at[0] + ux * s * 0.6, at[1] + uy * s * 0.6);
    ctx.lineTo(at[0] - ux * s * 0.4 + uy * s, at[1] - uy * s * 0.4 - ux * s);
    ctx.stroke();
  }

  function drawSlider(p, ctx, i, t, alpha, lit) {
    const m = p.map, r = m.radius, start = m.time[i], end = m.end[i];
    const spans = Math.max(1, m.slides[i]), spanDuration = (end - start) / spans;
    const path = m.path(i);
    const colour = m.colour[i] % m.colourCss.length;
    // body: a white border under a dark body in the combo colour
    ctx.globalAlpha = alpha * 0.95;
    ctx.strokeStyle = lit ? HIGHLIGHT : "#fff";
    ctx.lineWidth = r * 2;
    ctx.stroke(path.path2d);
    ctx.strokeStyle = m.bodyCss[colour];
    ctx.lineWidth = r * 1.72;
    ctx.stroke(path.path2d);
    const head = [path.flat[0], path.flat[1]];
    const tail = m.pathPoint(i, 1);
    // the tail, and arrows where the ball still has to turn (the next one at each end)
    ctx.globalAlpha = alpha;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = r * 0.1;
    ctx.beginPath();
    ctx.arc(tail[0], tail[1], r * 0.8, 0, Math.PI * 2);
    ctx.stroke();
    const inset = Math.min(0.05, 10 / Math.max(path.length, 1));
    for (let k = 1, shown = 0; k < spans && shown < 2; k++) {
      if (start + k * spanDuration < t) continue;
      const atEnd = k % 2 === 1;
      drawArrow(ctx, atEnd ? tail : head, m.pathPoint(i, atEnd ? 1 - inset : inset), r, alpha);
      shown++;
    }
    if (t < start) {
      drawHitCircle(p, ctx, head[0], head[1], i, alpha, true);
      drawApproach(p, ctx, head[0], head[1], i, t, alpha);
    } else if (t <= end) {
      const progressSpans = clamp((t - start) / (spanDuration || 1), 0, spans);
      const span = Math.min(Math.floor(progressSpans), spans - 1);
      const f = progressSpans - span;
      const [bx, by] = m.pathPoint(i, span % 2 ? 1 - f : f);
      ctx.globalAlpha = alpha;
      ctx.fillStyle = m.colourCss[colour];
      ctx.beginPath();
      ctx.arc(bx, by, r * 0.85, 0, Math.PI * 2);
      ctx.fill();
      ctx.strokeStyle = "#fff";
      ctx.lineWidth = r * 0.12;
      ctx.beginPath();
      ctx.arc(bx, by, r * 1.9, 0, Math.PI * 2);
      ctx.stroke();
    }
    if (lit) drawHighlightRing(p, ctx, head[0], head[1]);
    ctx.globalAlpha = 1;
  }

  function drawSpinner(p, ctx, i, t, alpha, lit) {
    const m = p.map, start = m.time[i], end = m.end[i];
    const cx = OSU_W / 2, cy = OSU_H / 2, R = 170;
    ctx.globalAlpha = alpha * 0.85;
    ctx.strokeStyle = lit ? HIGHLIGHT : "#fff";
    ctx.lineWidth = 6;
    ctx.beginPath();
    ctx.arc(cx, cy, R, 0, Math.PI * 2);
    ctx.stroke();
    const left = t < start ? 1 : clamp((end - t) / Math.max(end - start, 1), 0, 1);
    ctx.strokeStyle = m.colourCss[m.colour[i] % m.colourCss.length];
    ctx.lineWidth = 4;
    ctx.beginPath();
    ctx.arc(cx, cy, Math.max(2, R * left), 0, Math.PI * 2);
    ctx.stroke();
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(cx, cy, 6, 0, Math.PI * 2);
    ctx.fill();
    ctx.globalAlpha = 1;
  }

  /** osu!taiko: the scrolling lane with dons, kats, big notes, drumrolls and swells. */
  function drawTaiko(p, ctx, t, w, h) {
    const m = p.map, L = p.layout();
    const {hitX, laneY, laneH, pxPerMs} = L;
    ctx.fillStyle = "#1d1e26";
    ctx.fillRect(0, laneY - laneH / 2, w, laneH);
    const ahead = (w - hitX) / pxPerMs + 100, behind = hitX / pxPerMs;
    ctx.strokeStyle = "rgba(255,255,255,0.22)";
    ctx.lineWidth = 1;
    for (const bt of m.barLines(t - behind, t + ahead)) {
      const x = Math.round(hitX + (bt - t) * pxPerMs) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, laneY - laneH / 2);
      ctx.lineTo(x, laneY + laneH / 2);
      ctx.stroke();
    }
    // the judgement circle
    const small = laneH * 0.22, big = laneH * 0.34;
    ctx.strokeStyle = "rgba(255,255,255,0.5)";
    ctx.lineWidth = 3;
    ctx.beginPath();
    ctx.arc(hitX, laneY, small * 1.12, 0, Math.PI * 2);
    ctx.stroke();
    const [from, to] = m.range(t, 120, ahead / m.minSpeed);
    for (let i = to - 1; i >= from; i--) {
      const start = m.time[i], end = m.end[i], kind = m.kind[i];
      const pxPerMs = L.pxPerMs * (m.speed ? m.speed[i] : 1);
      const radius = m.big && m.big[i] ? big : small;
      const lit = p.isHighlighted(i);
      if (kind === 2) {  // swell: comes in, then waits at the judgement circle until it ends
        if (end < t) continue;
        const x = start > t ? hitX + (start - t) * pxPerMs : hitX;
        ctx.fillStyle = TAIKO.swell;
        ctx.beginPath();
        ctx.arc(x, laneY, big, 0, Math.PI * 2);
        ctx.fill();
        ctx.strokeStyle = lit ? HIGHLIGHT : "#fff";
        ctx.lineWidth = 4;
        ctx.stroke();
        if (start <= t) {
          ctx.beginPath();
          ctx.arc(x, laneY, big * (1 + 1.5 * clamp((end - t) / Math.max(1, end - start), 0, 1)), 0, Math.PI * 2);
          ctx.strokeStyle = TAIKO.swell;
          ctx.stroke();
        }
        continue;
      }
      if (kind === 1) {  // drumroll: a bar from start to end
        if (end < t) continue;
        const x0 = hitX + (start - t) * pxPerMs, x1 = hitX + (end - t) * pxPerMs;
        ctx.fillStyle = TAIKO.roll;
        ctx.strokeStyle = lit ? HIGHLIGHT : "#fff";
        ctx.lineWidth = 3;
        ctx.beginPath();
        ctx.moveTo(Math.max(x0, hitX - radius), laneY - radius);
        ctx.lineTo(x1, laneY - radius);
        ctx.arc(x1, laneY, radius, -Math.PI / 2, Math.PI / 2);
        ctx.lineTo(Math.max(x0, hitX - radius), laneY + radius);
        if (x0 >= hitX - radius) ctx.arc(x0, laneY, radius, Math.PI / 2, Math.PI * 1.5);
        ctx.closePath();
        ctx.fill();
        ctx.stroke();
        continue;
      }
      if (start < t - 80) continue;
      const x = hitX + (start - t) * pxPerMs;
      ctx.globalAlpha = start < t ? clamp(1 - (t - start) / 80, 0, 1) : 1;
      ctx.fillStyle = m.kat && m.kat[i] ? TAIKO.kat : TAIKO.don;
      ctx.beginPath();
      ctx.arc(x, laneY, radius, 0, Math.PI * 2);
      ctx.fill();
      ctx.strokeStyle = lit ? HIGHLIGHT : "#fff";
      ctx.lineWidth = lit ? 6 : 3;
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
  }

  /** osu!catch: falling fruits, droplets and bananas, the catcher and its path. */
  function drawCatch(p, ctx, t, w, h) {
    const m = p.map, c = m.catch, L = p.layout();
    const s = L.scale, preempt = m.preempt, r = m.radius;
    ctx.fillStyle = "#000";
    ctx.fillRect(L.ox, L.oy, OSU_W * s, OSU_H * s);
    ctx.save();
    ctx.translate(L.ox, L.oy);
    ctx.scale(s, s);
    const catcherY = L.catcherY;
    const yAt = (time) => catcherY - (time - t) / preempt * catcherY;
    ctx.beginPath();
    ctx.rect(-2 * r, 0, OSU_W + 4 * r, OSU_H + 2 * r);  // fruits enter at the playfield's top edge
    ctx.clip();
    if (c && c.time.length) {
      // the catcher follows fruits and droplets (not tiny droplets or bananas)
      const path = p.catcherPath(), n = path.time.length;
      let k = Math.max(0, upperBound(path.time, t) - 1);
      let xa = p.catcherX(t), ya = catcherY;
      if (path.time[k] > t) { xa = path.x[k]; ya = yAt(path.time[k]); }
      ctx.lineWidth = 3;
      ctx.lineCap = "round";
      for (; k < n - 1 && path.time[k] <= t + preempt; k++) {
        const xb = path.x[k + 1], yb = yAt(path.time[k + 1]);
        ctx.strokeStyle = path.hyper[k] ? "rgba(255,60,60,0.8)" : "rgba(255,255,255,0.35)";
        ctx.beginPath();
        ctx.moveTo(xa, ya);
        ctx.lineTo(xb, yb);
        ctx.stroke();
        xa = xb;
        ya = yb;
      }
      const i0 = lowerBound(c.time, t - 60), i1 = upperBound(c.time, t + preempt);
      for (let i = i1 - 1; i >= i0; i--) {
        const kind = c.kind[i], x = c.x[i], y = yAt(c.time[i]);
        const size = kind === 0 ? r : kind === 1 ? r * 0.55 : kind === 2 ? r * 0.3 : r * 0.7;
        ctx.globalAlpha = c.time[i] < t ? clamp(1 - (t - c.time[i]) / 60, 0, 1) : 1;
        ctx.fillStyle = kind === 3 ? "#ffe14d" : m.colourCss[c.colour[i] % m.colourCss.length];
        ctx.beginPath();
        ctx.arc(x, y, size, 0, Math.PI * 2);
        ctx.fill();
        if (kind === 0 || kind === 3) {
          ctx.strokeStyle = c.hyper[i] ? "#ff2d2d" : "#fff";
          ctx.lineWidth = c.hyper[i] ? r * 0.25 : r * 0.1;
          ctx.stroke();
        }
      }
      ctx.globalAlpha = 1;
      // the catcher's plate
      const cw = m.json.catcher_width || 85;
      const cx = p.catcherX(t);
      ctx.fillStyle = "#e9eaf0";
      ctx.fillRect(cx - cw / 2, catcherY + r * 0.15, cw, r * 0.35);
    }
    // highlighted objects: a ring where they land
    if (p.highlighted.size) {
      const [from, to] = m.range(t, 60, preempt);
      ctx.strokeStyle = HIGHLIGHT;
      ctx.lineWidth = r * 0.2;
      for (let i = from; i < to; i++) {
        if (!p.isHighlighted(i) || m.end[i] < t - 60) continue;
        ctx.beginPath();
        ctx.arc(m.x[i], yAt(m.time[i]), r * 1.3, 0, Math.PI * 2);
        ctx.stroke();
      }
    }
    ctx.restore();
  }

  function maniaColour(column, keys) {
    if (keys % 2 === 1 && column === (keys - 1) / 2) return "#ffd54a";
    const mirrored = Math.min(column, keys - 1 - column);
    return mirrored % 2 === 0 ? "#e8e8f0" : "#5aa9ff";
  }

  /** osu!mania: columns at the map's key count, notes and hold bodies falling to the judgement line. */
  function drawMania(p, ctx, t, w, h) {
    const m = p.map, L = p.layout();
    const {stageX, colW, judgeY, pxPerMs, keys} = L;
    ctx.fillStyle = "#0c0c10";
    ctx.fillRect(stageX, 0, colW * keys, h);
    ctx.strokeStyle = "rgba(255,255,255,0.08)";
    ctx.lineWidth = 1;
    for (let k = 0; k <= keys; k++) {
      const x = Math.round(stageX + k * colW) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, h);
      ctx.stroke();
    }
    const ahead = judgeY / pxPerMs;
    ctx.strokeStyle = "rgba(255,255,255,0.25)";
    for (const bt of m.barLines(t, t + ahead)) {
      const y = Math.round(judgeY - (bt - t) * pxPerMs) + 0.5;
      ctx.beginPath();
      ctx.moveTo(stageX, y);
      ctx.lineTo(stageX + colW * keys, y);
      ctx.stroke();
    }
    ctx.fillStyle = "rgba(255,255,255,0.85)";
    ctx.fillRect(stageX, judgeY, colW * keys, 2);
    const noteH = Math.max(6, colW * 0.3);
    const [from, to] = m.range(t, 40, ahead);
    for (let i = from; i < to; i++) {
      const start = m.time[i], end = m.end[i];
      const column = m.column ? m.column[i] : 0;
      const x = stageX + column * colW + 2, cw = colW - 4;
      const colour = maniaColour(column, keys);
      const lit = p.isHighlighted(i);
      if (m.kind[i] === 3) {
        if (end < t) continue;
        const yHead = Math.min(judgeY, judgeY - (start - t) * pxPerMs), yTail = judgeY - (end - t) * pxPerMs;
        ctx.globalAlpha = 0.55;
        ctx.fillStyle = colour;
        ctx.fillRect(x + cw * 0.12, yTail, cw * 0.76, yHead - yTail);
        ctx.globalAlpha = 1;
        ctx.fillRect(x, yTail - noteH / 2, cw, noteH / 2);
        ctx.fillRect(x, yHead - noteH, cw, noteH);
        if (lit) { ctx.strokeStyle = HIGHLIGHT; ctx.lineWidth = 3; ctx.strokeRect(x, yTail - noteH / 2, cw, yHead - yTail + noteH / 2); }
        continue;
      }
      if (start < t - 40) continue;
      const y = judgeY - (start - t) * pxPerMs;
      ctx.globalAlpha = start < t ? clamp(1 - (t - start) / 40, 0, 1) : 1;
      ctx.fillStyle = colour;
      ctx.fillRect(x, y - noteH, cw, noteH);
      if (lit) { ctx.strokeStyle = HIGHLIGHT; ctx.lineWidth = 3; ctx.strokeRect(x, y - noteH, cw, noteH); }
      ctx.globalAlpha = 1;
    }
  }

  const RENDERERS = [drawOsu, drawTaiko, drawCatch, drawMania];

  // --------------------------------------------------------------------------------------- player
  const registry = new Map();
  let nextId = 1;

  class MapperatorPlayer {
    /**
     * @param {HTMLElement} container  where the player is built (its content is replaced)
     * @param {object|string} mapJson  engine.preview.preview_json output (object or JSON text)
     * @param {string|null} audioUrl   the song; null or "" plays silently on the wall clock
     * @param {object} [options]       {id, hitsounds: bool, rate: number}
     */
    constructor(container, mapJson, audioUrl, options = {}) {
      if (!container) throw new Error("MapperatorPlayer: no container element");
      this.map = new MapData(typeof mapJson === "string" ? JSON.parse(mapJson) : mapJson);
      this.container = container;
      this.id = options.id || container.dataset.playerId || `player-${nextId++}`;
      this.texts = options.texts || readTexts(container.dataset.texts);  // the page's language (player.py)
      this.highlighted = new Set();
      this.highlightRange = null;
      this.stats = {frames: 0, drawMs: 0};
      this.rate = 1;
      this.hitsounds = false;
      this.destroyed = false;
      this.raf = 0;
      this.lastLabel = "";
      this.audio = null;
      if (audioUrl) {
        this.audio = new Audio();
        this.audio.preload = "auto";
        this.audio.src = audioUrl;
        this.audio.addEventListener("loadedmetadata", () => this.onAudioMetadata());
        this.audio.addEventListener("error", () => this.message(
          this.text("player.song_failed", "The song could not be played; the map runs silently.")));
        this.audio.addEventListener("ended", () => { if (this.clock.time >= this.duration - 50) this.pause(); });
        this.audio.addEventListener("playing", () => { if (this.clock.holding) this.clock.release(this.audio.currentTime * 1000); });
        this.audio.addEventListener("seeked", () => {
          if (this.clock.holding && !this.audio.paused) this.clock.release(this.audio.currentTime * 1000);
        });
        this.audio.addEventListener("waiting", () => { if (this.clock.playing && !this.clock.holding) this.clock.hold(); });
      }
      this.clock = new Clock(this.audio);
      this.ticks = new Ticks(this.map.soundTimes, this.map.soundPitches);
      this.duration = this.map.endTime + 1000;
      this.build();
      if (options.rate) this.setRate(options.rate);
      if (options.hitsounds) this.setHitsounds(true);
      registry.set(this.id, this);
      this.container.mapperatorPlayer = this;
      this.resize();
      this.requestDraw();
    }

    static get(id) { return registry.get(id) || null; }
    static all() { return Array.from(registry.values()); }

    // -- public API ------------------------------------------------------------------------------
    get currentTime() { return this.clock.now(); }
    get playing() { return this.clock.playing; }

    play() {
      if (this.destroyed || this.clock.playing) return;
      if (this.clock.time >= this.duration - 1) this.clock.set(0);
      this.clock.rate = this.rate;
      this.clock.set(this.clock.time);
      this.clock.playing = true;
      const a = this.audio;
      if (a && !a.error && this.audioCovers(this.clock.time)) {
        a.playbackRate = this.rate;
        if (a.readyState >= 1 && Math.abs(a.currentTime * 1000 - this.clock.time) > 5) a.currentTime = this.clock.time / 1000;
        this.clock.hold();
        const started = a.play();
        if (started && started.catch) {
          started.catch(() => {
            if (this.clock.holding) this.clock.release();
            this.message(this.text("player.song_blocked",
                                   "The browser did not start the song; the map runs silently."));
          });
        }
      }
      if (this.hitsounds) { this.ticks.enable(); this.ticks.reset(this.clock.time); }
      this.playButton.textContent = this.text("player.pause", "Pause");
      this.requestDraw();
    }

    pause() {
      if (!this.clock.playing) return;
      const t = this.clock.now();
      this.clock.playing = false;
      this.clock.set(Math.min(t, this.duration));
      if (this.audio) this.audio.pause();
      this.playButton.textContent = this.text("player.play", "Play");
      this.requestDraw();
    }

    toggle() { if (this.clock.playing) this.pause(); else this.play(); }

    /** Jump to ms (clamped to the song); draws the new frame at once. */
    seek(ms) {
      const t = clamp(Number(ms) || 0, 0, this.duration);
      this.clock.set(t);
      const a = this.audio;
      if (a && a.readyState >= 1) {
        if (this.audioCovers(t)) {
          a.currentTime = t / 1000;
          if (this.clock.playing) {
            this.clock.hold();
            if (a.paused) a.play().catch(() => this.clock.release());
          }
        } else if (!a.paused) a.pause();
      } else if (a) this.pendingSeek = t;
      this.ticks.reset(t);
      this.draw();
    }

    /** Playback rate, 0.5 to 1 (pitch is kept). */
    setRate(rate) {
      const r = clamp(Number(rate) || 1, 0.5, 1);
      const t = this.clock.now();
      this.rate = r;
      this.clock.rate = r;
      this.clock.set(t);
      if (this.audio) this.audio.playbackRate = r;
      this.ticks.reset(t);
      const best = RATES.reduce((a, b) => (Math.abs(b - r) < Math.abs(a - r) ? b : a));
      this.rateSelect.value = String(best);
    }

    setHitsounds(on) {
      this.hitsounds = !!on && this.ticks.enable();
      this.ticks.reset(this.clock.now());
      this.tickBox.checked = this.hitsounds;
    }

    /**
     * Mark objects: an array of indices into Beatmap.hit_objects, {indices}, {from, to} (ms), an osu! editor
     * timestamp string, {time, combo: [numbers]} or {time, notes: [[time, column]]}; null clears.
     */
    highlight(what) {
      this.highlighted = new Set(this.resolve(what));
      this.highlightRange = null;
      if (what && typeof what === "object" && !Array.isArray(what) && what.from !== undefined) {
        this.highlightRange = [Number(what.from), Number(what.to === undefined ? what.from : what.to)];
      }
      this.timelineDirty = true;
      this.draw();
      return Array.from(this.highlighted).sort((a, b) => a - b);
    }

    /** What MaiMod calls for a suggestion: pause, seek to ms and highlight `what` (default: the objects at ms). */
    focus(ms, what) {
      this.pause();
      const spec = what === undefined || what === null || what === "" ? {from: ms, to: ms} : what;
      this.seek(ms);
      return this.highlight(spec);
    }

    /** Geometry of the current view, in CSS pixels of the view canvas. */
    layout() {
      const w = this.viewW, h = this.viewH, m = this.map;
      if (this.cachedLayout && this.cachedLayout.w === w && this.cachedLayout.h === h) return this.cachedLayout;
      const L = {w, h, mode: m.mode};
      if (m.mode === 0 || m.mode === 2) {
        L.scale = Math.min(w / SCREEN_W, h / SCREEN_H);
        L.ox = (w - OSU_W * L.scale) / 2;
        L.oy = (h - OSU_H * L.scale) / 2;
        L.catcherY = OSU_H - m.radius * 0.6;
      } else if (m.mode === 1) {
        L.laneH = Math.min(h * 0.5, 160);
        L.laneY = h / 2;
        L.hitX = Math.max(L.laneH * 0.9, w * 0.12);
        // osu!taiko scrolls SliderMultiplier * 140 osu! pixels per beat across a 640 px wide screen
        const sm = (m.json.difficulty && m.json.difficulty.slider_multiplier) || 1.4;
        const beats = clamp(SCREEN_W / (sm * 140), 1.5, 8);
        L.pxPerMs = (w - L.hitX) / (beats * m.mainBeat);
      } else {
        L.keys = m.keys;
        L.colW = Math.min(64, (w * 0.7) / m.keys);
        L.stageX = (w - L.colW * m.keys) / 2;
        L.judgeY = h - Math.max(30, h * 0.1);
        L.pxPerMs = L.judgeY / MANIA_SCROLL_MS;
      }
      this.cachedLayout = L;
      return L;
    }

    destroy() {
      if (this.destroyed) return;
      this.destroyed = true;
      cancelAnimationFrame(this.raf);
      if (this.resizeObserver) this.resizeObserver.disconnect();
      if (this.audio) { this.audio.pause(); this.audio.removeAttribute("src"); this.audio.load(); }
      this.ticks.close();
      if (registry.get(this.id) === this) registry.delete(this.id);
      if (this.container.mapperatorPlayer === this) delete this.container.mapperatorPlayer;
      this.root.remove();
    }

    // -- internals -------------------------------------------------------------------------------
    build() {
      const root = document.createElement("div");
      root.className = "mp-player " + ["mp-osu", "mp-taiko", "mp-catch", "mp-mania"][this.map.mode];
      root.tabIndex = 0;
      root.innerHTML =
        '<canvas class="mp-view"></canvas>' +
        '<canvas class="mp-timeline"></canvas>' +
        '<div class="mp-controls">' +
        '<button type="button" class="mp-play"></button>' +
        '<span class="mp-time"></span>' +
        '<label><span class="mp-rate-label"></span> <select class="mp-rate"></select></label>' +
        '<label><input type="checkbox" class="mp-ticks"> <span class="mp-ticks-label"></span></label>' +
        '<span class="mp-message"></span>' +
        '<span class="mp-info"></span>' +
        "</div>";
      this.container.replaceChildren(root);
      this.root = root;
      this.view = root.querySelector(".mp-view");
      this.timeline = root.querySelector(".mp-timeline");
      this.ctx = this.view.getContext("2d", {alpha: false});
      this.tctx = this.timeline.getContext("2d");
      this.playButton = root.querySelector(".mp-play");
      this.timeLabel = root.querySelector(".mp-time");
      this.rateSelect = root.querySelector(".mp-rate");
      this.tickBox = root.querySelector(".mp-ticks");
      this.messageBox = root.querySelector(".mp-message");
      this.timeline.title = this.text("player.seek", "Click or drag to seek");
      this.playButton.textContent = this.text("player.play", "Play");
      root.querySelector(".mp-rate-label").textContent = this.text("player.speed", "Speed");
      root.querySelector(".mp-ticks-label").textContent = this.text("player.ticks", "Hitsound ticks");
      for (const r of RATES) {
        const option = document.createElement("option");
        option.value = String(r);
        option.textContent = `${r}\u00d7`;
        this.rateSelect.appendChild(option);
      }
      this.rateSelect.value = "1";
      const meta = this.map.json.meta || {};
      root.querySelector(".mp-info").textContent =
        [meta.artist && meta.title ? `${meta.artist} - ${meta.title}` : meta.title, meta.version && `[${meta.version}]`]
          .filter(Boolean).join(" ");

      this.playButton.addEventListener("click", () => this.toggle());
      this.view.addEventListener("click", () => { root.focus({preventScroll: true}); this.toggle(); });
      this.rateSelect.addEventListener("change", () => this.setRate(this.rateSelect.value));
      this.tickBox.addEventListener("change", () => this.setHitsounds(this.tickBox.checked));
      root.addEventListener("keydown", (e) => this.onKey(e));
      const seekAt = (e) => {
        const box = this.timeline.getBoundingClientRect();
        this.seek(clamp((e.clientX - box.left) / Math.max(box.width, 1), 0, 1) * this.duration);
      };
      this.timeline.addEventListener("pointerdown", (e) => {
        this.scrubbing = true;
        if (this.timeline.setPointerCapture) this.timeline.setPointerCapture(e.pointerId);
        seekAt(e);
      });
      this.timeline.addEventListener("pointermove", (e) => { if (this.scrubbing) seekAt(e); });
      const stop = () => { this.scrubbing = false; };
      this.timeline.addEventListener("pointerup", stop);
      this.timeline.addEventListener("pointercancel", stop);
      if (global.ResizeObserver) {
        this.resizeObserver = new ResizeObserver(() => { this.resize(); this.draw(); });
        this.resizeObserver.observe(root);
      }
      this.frameBound = (now) => this.frame(now);
    }

    onKey(e) {
      if (e.target && e.target.tagName === "SELECT") return;
      if (e.key === " " || e.key === "k") { this.toggle(); e.preventDefault(); }
      else if (e.key === "ArrowLeft") { this.seek(this.clock.now() - (e.shiftKey ? 10000 : 2000)); e.preventDefault(); }
      else if (e.key === "ArrowRight") { this.seek(this.clock.now() + (e.shiftKey ? 10000 : 2000)); e.preventDefault(); }
    }

    onAudioMetadata() {
      const a = this.audio;
      if (isFinite(a.duration) && a.duration > 0) {
        this.duration = Math.max(this.map.endTime + 1000, a.duration * 1000);
        this.timelineDirty = true;
      }
      if (this.pendingSeek !== undefined) {
        const t = this.pendingSeek;
        this.pendingSeek = undefined;
        if (this.audioCovers(t)) a.currentTime = t / 1000;
      }
      a.playbackRate = this.rate;
      this.draw();
    }

    audioCovers(t) {
      const a = this.audio;
      return !!a && (!isFinite(a.duration) || !(a.duration > 0) || t < a.duration * 1000 - 20);
    }

    message(text) { if (this.messageBox) this.messageBox.textContent = text; }

    text(key, english) { return this.texts[key] || english; }

    resize() {
      const dpr = Math.min(2, global.devicePixelRatio || 1);
      const vw = Math.max(1, this.view.clientWidth), vh = Math.max(1, this.view.clientHeight);
      const tw = Math.max(1, this.timeline.clientWidth), th = Math.max(1, this.timeline.clientHeight);
      if (this.view.width !== Math.round(vw * dpr) || this.view.height !== Math.round(vh * dpr)) {
        this.view.width = Math.round(vw * dpr);
        this.view.height = Math.round(vh * dpr);
      }
      if (this.timeline.width !== Math.round(tw * dpr) || this.timeline.height !== Math.round(th * dpr)) {
        this.timeline.width = Math.round(tw * dpr);
        this.timeline.height = Math.round(th * dpr);
      }
      this.dpr = dpr;
      this.viewW = vw;
      this.viewH = vh;
      this.timelineDirty = true;
    }

    requestDraw() {
      if (!this.raf && !this.destroyed) this.raf = requestAnimationFrame(this.frameBound);
    }

    frame() {
      this.raf = 0;
      if (this.destroyed) return;
      if (!this.root.isConnected) {  // the page removed us (e.g. a new result replaced the component)
        if (this.wasConnected) this.destroy();
        return;  // not in a page yet: the resize observer draws once we are
      }
      let t = this.clock.now();
      if (this.clock.playing) {
        if (t >= this.duration) { this.pause(); t = this.duration; }
        if (this.audio && this.clock.playing && !this.audioCovers(t) && !this.audio.paused) this.audio.pause();
        if (this.hitsounds) this.ticks.schedule(t, this.rate);
      }
      this.draw(t);
      if (this.clock.playing) this.requestDraw();
    }

    /** Draw the frame for time t (default: now). */
    draw(t) {
      if (this.destroyed) return;
      if (t === undefined) t = this.clock.now();
      const started = performance.now();
      if (this.root.isConnected) this.wasConnected = true;
      if (!this.resizeObserver && (this.viewW !== this.view.clientWidth || this.viewH !== this.view.clientHeight)) {
        this.resize();
      }
      const ctx = this.ctx, w = this.viewW, h = this.viewH;
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      ctx.globalAlpha = 1;
      ctx.fillStyle = this.inKiai(t) ? "#221a14" : "#15161c";
      ctx.fillRect(0, 0, w, h);
      (RENDERERS[this.map.mode] || drawOsu)(this, ctx, t, w, h);
      this.drawTimeline(t);
      const label = `${formatTime(t)} / ${formatTime(this.duration)}`;
      if (label !== this.lastLabel && (!this.clock.playing || this.stats.frames % 4 === 0)) {
        this.timeLabel.textContent = label;
        this.lastLabel = label;
      }
      this.stats.frames++;
      this.stats.drawMs += performance.now() - started;
    }

    inKiai(t) {
      const k = this.map.kiai;
      for (let i = 0; i < k.length; i++) if (t >= k[i][0] && t < k[i][1]) return true;
      return false;
    }

    isHighlighted(i) {
      if (this.highlighted.has(i)) return true;
      const r = this.highlightRange;
      return !!r && this.map.end[i] >= r[0] && this.map.time[i] <= r[1];
    }

    /** Sorted-order indices named by a highlight() argument. */
    resolve(what) {
      const m = this.map;
      if (what === null || what === undefined || what === "") return [];
      if (typeof what === "number") what = [what];
      if (typeof what === "string") what = parseTimestamp(what) || [];
      if (Array.isArray(what)) return what.map((i) => m.sortedIndex(Number(i))).filter((i) => i >= 0);
      if (what.indices) return this.resolve(Array.from(what.indices));
      if (what.from !== undefined) {
        const from = Number(what.from), to = Number(what.to === undefined ? what.from : what.to);
        const out = [];
        const [a, b] = m.range(from, 0, to - from + 1);
        for (let i = a; i < b; i++) if (m.end[i] >= from - 1 && m.time[i] <= to + 1) out.push(i);
        if (!out.length && m.n) {  // nothing there: the nearest object
          const j = lowerBound(m.time, from);
          const best = j >= m.n || (j > 0 && from - m.time[j - 1] < m.time[j] - from) ? j - 1 : j;
          if (Math.abs(m.time[best] - from) <= 50) out.push(best);
        }
        return out;
      }
      if (what.time !== undefined) {
        const out = [], time = Number(what.time);
        for (const [nt, column] of what.notes || []) {
          for (let i = lowerBound(m.time, nt - 1); i < m.n && m.time[i] <= nt + 1; i++) {
            if (!m.column || m.column[i] === column) { out.push(i); break; }
          }
        }
        const wanted = new Set(what.combo || []);
        for (let i = lowerBound(m.time, time - 1); i < m.n && wanted.size && i < lowerBound(m.time, time - 1) + 256; i++) {
          if (wanted.has(m.combo[i])) { out.push(i); wanted.delete(m.combo[i]); }
        }
        if (!out.length) return this.resolve({from: time, to: time});
        return out;
      }
      return [];
    }

    /** Catcher positions over time: fruits and droplets (not tiny droplets or bananas), built once. */
    catcherPath() {
      if (this.catcherCache) return this.catcherCache;
      const c = this.map.catch, time = [], x = [], hyper = [];
      for (let i = 0; i < c.time.length; i++) {
        if (c.kind[i] > 1) continue;
        time.push(c.time[i]); x.push(c.x[i]); hyper.push(c.hyper[i]);
      }
      if (!time.length) { time.push(0); x.push(OSU_W / 2); hyper.push(0); }
      this.catcherCache = {time: Float64Array.from(time), x: Float64Array.from(x), hyper: Int8Array.from(hyper)};
      return this.catcherCache;
    }

    catcherX(t) {
      const p = this.catcherPath();
      const k = upperBound(p.time, t);
      if (k === 0) return p.x[0];
      if (k >= p.time.length) return p.x[p.time.length - 1];
      const t0 = p.time[k - 1], t1 = p.time[k];
      return p.x[k - 1] + (p.x[k] - p.x[k - 1]) * (t1 > t0 ? (t - t0) / (t1 - t0) : 1);
    }

    drawTimeline(t) {
      const dpr = this.dpr, w = this.timeline.width / dpr, h = this.timeline.height / dpr;
      if (this.timelineDirty || !this.timelineLayer) {
        this.timelineLayer = this.timelineLayer || document.createElement("canvas");
        const layer = this.timelineLayer;
        layer.width = this.timeline.width;
        layer.height = this.timeline.height;
        const c = layer.getContext("2d");
        c.setTransform(dpr, 0, 0, dpr, 0, 0);
        this.paintTimeline(c, w, h);
        this.timelineDirty = false;
      }
      const c = this.tctx;
      c.setTransform(1, 0, 0, 1, 0, 0);
      c.clearRect(0, 0, this.timeline.width, this.timeline.height);
      c.drawImage(this.timelineLayer, 0, 0);
      c.setTransform(dpr, 0, 0, dpr, 0, 0);
      const x = (t / this.duration) * w;
      c.fillStyle = "#fff";
      c.fillRect(Math.round(x) - 1, 0, 2, h);
    }

    paintTimeline(c, w, h) {
      const m = this.map, d = this.duration, X = (time) => (time / d) * w;
      c.clearRect(0, 0, w, h);
      c.fillStyle = "rgba(255,255,255,0.05)";
      for (const [a, b] of m.breaks) c.fillRect(X(a), 0, Math.max(1, X(b) - X(a)), h);
      c.fillStyle = "rgba(255,150,40,0.35)";
      for (const [a, b] of m.kiai) c.fillRect(X(a), 0, Math.max(1, X(b) - X(a)), h);
      const density = m.json.density;
      if (density && density.counts && density.counts.length) {
        const counts = density.counts, bin = density.bin;
        const sorted = Array.from(counts).sort((a, b) => a - b);
        const top = Math.max(1, sorted[Math.floor(sorted.length * 0.98)] || 1);
        c.fillStyle = "rgba(160,190,255,0.75)";
        for (let k = 0; k < counts.length; k++) {
          if (!counts[k]) continue;
          const bh = Math.min(1, counts[k] / top) * (h - 8);
          c.fillRect(X(k * bin), h - bh, Math.max(1, X(bin) - 0.5), bh);
        }
      }
      c.fillStyle = "#ff3b3b";
      for (const line of m.redLines) c.fillRect(Math.round(X(line[0])), 0, 1, h * 0.45);
      c.fillStyle = HIGHLIGHT;
      for (const i of this.highlighted) c.fillRect(Math.round(X(m.time[i])) - 1, 0, 3, h);
      if (this.highlightRange) {
        const [a, b] = this.highlightRange;
        c.fillRect(X(a) - 1, 0, Math.max(3, X(b) - X(a)), h);
      }
    }
  }

  // ------------------------------------------------------------------------------------ auto-mount
  /** Build players for `.mapperator-player` elements not yet mounted (see the header comment). */
  MapperatorPlayer.mountAll = function (root) {
    const scope = root || document;
    const found = scope.querySelectorAll ? scope.querySelectorAll(".mapperator-player:not([data-mp-mounted])") : [];
    for (const el of found) {
      el.setAttribute("data-mp-mounted", "1");
      const start = (json) => {
        try {
          const old = registry.get(el.dataset.playerId);
          if (old && !old.root.isConnected) old.destroy();
          new MapperatorPlayer(el, json, el.dataset.audio || null, {id: el.dataset.playerId || undefined});
        } catch (e) {
          const texts = readTexts(el.dataset.texts);
          el.textContent = `${texts["player.not_shown"] || "The preview could not be shown:"} ${e.message}`;
        }
      };
      const inline = el.querySelector('script[type="application/json"]');
      if (el.dataset.map) start(el.dataset.map);
      else if (inline) start(inline.textContent);
      else if (el.dataset.mapUrl) {
        fetch(el.dataset.mapUrl).then((r) => r.json()).then(start)
          .catch((e) => {
            const texts = readTexts(el.dataset.texts);
            el.textContent = `${texts["player.not_loaded"] || "The preview could not be loaded:"} ${e.message}`;
          });
      }
    }
  };

  /** The player's texts in the page's language: `data-texts` JSON written by player.py (English when absent). */
  function readTexts(json) {
    try { return json ? JSON.parse(json) : {}; } catch (e) { return {}; }
  }

  MapperatorPlayer.parseTimestamp = parseTimestamp;
  global.MapperatorPlayer = MapperatorPlayer;

  if (typeof document !== "undefined") {
    let pending = false;
    const scan = () => { pending = false; MapperatorPlayer.mountAll(document); };
    const observe = () => {
      scan();
      new MutationObserver(() => {
        if (!pending) { pending = true; requestAnimationFrame(scan); }
      }).observe(document.documentElement, {childList: true, subtree: true});
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", observe);
    else observe();
  }
})(typeof window !== "undefined" ? window : globalThis);
