// The page runtime: the script qrl installs in a game's page before any of
// the page's own scripts run (Page.addScriptToEvaluateOnNewDocument), so
// that from then on the page sees only virtual time and a seeded
// Math.random, and window.__qrl steps the game, sends its keys and reads
// its canvas. The file is one function expression of the episode's seed (a
// uint32); the C++ side (page_runtime.hpp) appends the call `(seed);`.
// CMake embeds this text in qrl::dino; `node --check` tests its syntax.
((seed) => {
  if (window.__qrl) return;
  let now = 0;
  const epoch = 1767225600000;  // fixed wall clock: 2026-01-01T00:00:00Z
  let state = seed >>> 0;
  // mulberry32: small, fast, and the same sequence in every browser.
  Math.random = () => {
    state = (state + 0x6D2B79F5) | 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  performance.now = () => now;
  Date.now = () => epoch + Math.floor(now);
  let queue = [];
  let nextId = 1;
  window.requestAnimationFrame = (cb) => { const id = nextId++; queue.push([id, cb]); return id; };
  window.cancelAnimationFrame = (id) => { queue = queue.filter((e) => e[0] !== id); };
  const frame = () => {
    now += 1000 / 60;
    const due = queue;
    queue = [];
    for (const [, cb] of due) cb(now);
  };
  // qrl::kernels::AxisResampler as tables: for output o, the source taps
  // [first[o], last[o]) and their integer weights.
  const axis = (src, out) => {
    const box = src >= out;
    const taps = (o) => {
      if (box) return [Math.floor(o * src / out), Math.floor(((o + 1) * src + out - 1) / out)];
      const unit = 2 * out;
      const position = Math.max(0, (2 * o + 1) * src - out);
      const i0 = Math.floor(position / unit);
      return [i0, Math.min(i0 + 1, src - 1) + 1];
    };
    const weight = (o, i) => {
      if (box) {
        const lo = o * src, hi = lo + src, plo = i * out, phi = plo + out;
        return Math.max(0, Math.min(hi, phi) - Math.max(lo, plo));
      }
      const unit = 2 * out;
      const position = Math.max(0, (2 * o + 1) * src - out);
      const i0 = Math.floor(position / unit);
      const i1 = i0 + 1 < src ? i0 + 1 : src - 1;
      const frac = i1 === i0 ? 0 : position % unit;
      return (i === i0 ? unit - frac : 0) + (i === i1 ? frac : 0);
    };
    const first = new Int32Array(out), last = new Int32Array(out);
    let stride = 1;
    for (let o = 0; o < out; ++o) {
      [first[o], last[o]] = taps(o);
      stride = Math.max(stride, last[o] - first[o]);
    }
    const weights = new Float64Array(out * stride);
    for (let o = 0; o < out; ++o)
      for (let i = first[o]; i < last[o]; ++i) weights[o * stride + i - first[o]] = weight(o, i);
    return {first, last, weight: weights, stride, total: box ? src : 2 * out};
  };
  window.__qrl = {
    frames: 0,
    now: () => now,
    reseed(s) { state = s >>> 0; this.frames = 0; },
    // One step in one call: the keys' events, then up to n frames (stopping
    // at game over so the last frame shows it), then what the agent sees.
    // capture: 0 nothing, 1 the canvas as PNG, 2 the observation (observe()).
    step(n, capture, keys) {
      if (keys) for (const k of keys) this.key(k[0], k[1], k[2], k[3], k[4]);
      const g = window.__qrl_game;
      let over = g.over();
      for (let i = 0; i < n && !over; ++i) { frame(); ++this.frames; over = g.over(); }
      const out = [Number(g.score()), !!over, this.frames];
      if (capture === 1) out.push(this.pixels());
      else if (capture === 2) out.push(this.observe());
      return out;
    },
    // A key event as the keyboard would send it to the focused element; the
    // legacy keyCode/which that older games (Dino) read are set explicitly.
    key(type, key, code, keyCode, text) {
      const target = document.activeElement || document.body || document;
      const init = {key, code, keyCode, which: keyCode, bubbles: true, cancelable: true, composed: true};
      const send = (t, c) => {
        const e = new KeyboardEvent(t, Object.assign({}, init, {keyCode: c, which: c, charCode: t === 'keypress' ? c : 0}));
        if (e.keyCode !== c) {
          Object.defineProperty(e, 'keyCode', {get: () => c});
          Object.defineProperty(e, 'which', {get: () => c});
        }
        target.dispatchEvent(e);
      };
      send(type, keyCode);
      if (type === 'keydown' && text) send('keypress', text.charCodeAt(0));
    },
    // The canvas need not be painted when only its pixels are read: a hidden
    // canvas spares Chromium a composited frame per step.
    setVisible(visible) { this.canvas().style.visibility = visible ? '' : 'hidden'; },
    setObservation(height, width, background) { this.obs = {height, width, background, tables: null}; },
    // The observation computed in the page, so that out_h*out_w bytes leave
    // it instead of a PNG to decode: the canvas over the background, BT.601
    // luma times 1000 and the separable integer resampling of
    // qrl/kernels/preprocess.cuh (box when shrinking, bilinear with
    // half-pixel centres when growing), rounded half up. Every intermediate
    // is an integer below 2^53, so doubles hold it exactly and the result
    // equals the C++ functor's bit for bit (tested against it).
    observe() {
      const c = this.canvas();
      const W = c.width, H = c.height;
      let data;
      const ctx = c.getContext('2d');
      if (ctx) {
        data = ctx.getImageData(0, 0, W, H).data;
      } else {  // a WebGL canvas: copy it to a 2D one first
        const s = this.scratch || (this.scratch = document.createElement('canvas'));
        s.width = W; s.height = H;
        const sc = s.getContext('2d', {willReadFrequently: true});
        sc.clearRect(0, 0, W, H);
        sc.drawImage(c, 0, 0);
        data = sc.getImageData(0, 0, W, H).data;
      }
      const o = this.obs;
      if (!o.tables || o.W !== W || o.H !== H) {
        o.W = W; o.H = H;
        o.tables = [axis(H, o.height), axis(W, o.width)];
        o.luma = new Float64Array(W * H);
        o.rows = new Float64Array(H * o.width);
      }
      const [ys, xs] = o.tables;
      const [br, bg, bb] = o.background;
      const luma = o.luma;
      for (let i = 0, p = 0; i < W * H; ++i, p += 4) {
        const a = data[p + 3];
        let r = data[p], gr = data[p + 1], b = data[p + 2];
        if (a !== 255) {
          r = Math.floor((r * a + br * (255 - a) + 127) / 255);
          gr = Math.floor((gr * a + bg * (255 - a) + 127) / 255);
          b = Math.floor((b * a + bb * (255 - a) + 127) / 255);
        }
        luma[i] = 299 * r + 587 * gr + 114 * b;
      }
      const rows = o.rows, ow = o.width, oh = o.height;
      for (let y = 0; y < H; ++y) {
        for (let x = 0; x < ow; ++x) {
          let sum = 0;
          for (let t = xs.first[x]; t < xs.last[x]; ++t) sum += xs.weight[x * xs.stride + t - xs.first[x]] * luma[y * W + t];
          rows[y * ow + x] = sum;
        }
      }
      const den = 1000 * ys.total * xs.total, half = Math.floor(den / 2);
      const out = new Uint8Array(oh * ow);
      for (let y = 0; y < oh; ++y) {
        for (let x = 0; x < ow; ++x) {
          let sum = 0;
          for (let t = ys.first[y]; t < ys.last[y]; ++t) sum += ys.weight[y * ys.stride + t - ys.first[y]] * rows[t * ow + x];
          out[y * ow + x] = Math.floor((sum + half) / den);
        }
      }
      let bin = '';
      for (let i = 0; i < out.length; i += 8192) bin += String.fromCharCode.apply(null, out.subarray(i, i + 8192));
      return btoa(bin);
    },
    canvas() { return document.querySelector(window.__qrl_game.selector); },
    rect() {
      const c = this.canvas();
      if (!c) return null;
      const r = c.getBoundingClientRect();
      return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height, c.width, c.height];
    },
    // The canvas's own pixels, losslessly: PNG is a few KB for a game frame
    // where raw RGBA is hundreds, and parsing the JSON string that carries
    // the data dominated the cost of a step.
    pixels() {
      const url = this.canvas().toDataURL('image/png');
      return url.substring(url.indexOf(',') + 1);
    },
  };
})
