"use strict";
// The page of `solov2 serve`: images go to POST /predict once (score_thr=0: every instance the model keeps); the
// score slider and the class toggles then redraw from the answers kept here, without asking the server again.
// Masks arrive as COCO RLE (column-major run lengths, pycocotools' compressed string), decoded below.

const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
  [170, 110, 40], [255, 250, 200], [128, 0, 0], [170, 255, 195], [128, 128, 0], [255, 215, 180], [0, 0, 128],
  [128, 128, 128]];
const CONCURRENT = 2;     // uploads in flight at once; the server queues and batches them
const RETRIES_503 = 5;    // a busy server (full queue) is asked again after 0.5 s, 1 s, ... at most this often

const state = { classes: [], shown: new Set(), thr: 0.3, items: [], queue: [], active: 0 };
const $ = (id) => document.getElementById(id);

function colour(classId) { return PALETTE[classId % PALETTE.length]; }
function css([r, g, b]) { return `rgb(${r}, ${g}, ${b})`; }

// pycocotools' rleFrString: 6-bit chunks (5 data bits, bit 5 "more", bit 4 of the last chunk the sign), each count
// after the second stored as the difference to the count two before. Arithmetic instead of 32-bit shifts, so
// that counts past 2^31 / 5-bit chunks past the 7th stay right.
function decodeCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x += (c & 0x1f) * 2 ** (5 * k);
      more = (c & 0x20) !== 0;
      p++; k++;
      if (!more && (c & 0x10)) x -= 2 ** (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// Calls fn(i) for each pixel index i (column-major: row i % H, column i / H) of the mask's runs of ones.
function forEachRun(counts, fn) {
  let pos = 0;
  for (let k = 0; k < counts.length; k++) {
    if (k % 2 === 1) fn(pos, pos + counts[k]);
    pos += counts[k];
  }
}

function visible(item) {
  return (item.instances || []).filter((inst) => inst.score >= state.thr && state.shown.has(inst.class_id));
}

function setStatus() {
  const done = state.items.filter((it) => it.instances).length;
  const failed = state.items.filter((it) => it.error).length;
  const waiting = state.items.length - done - failed;
  $("status").textContent = state.items.length ? `${state.items.length} image(s): ${done} done` +
    (waiting ? `, ${waiting} waiting` : "") + (failed ? `, ${failed} failed` : "") : "";
  const any = done > 0;
  $("dl-json").disabled = !any;
  $("dl-masks").disabled = !any;
}

async function init() {
  const thr = parseFloat(document.body.dataset.scoreThr);
  state.thr = Number.isFinite(thr) ? thr : 0.3;
  $("thr").value = state.thr;
  $("thr-value").textContent = state.thr.toFixed(2);
  $("thr").addEventListener("input", () => {
    state.thr = parseFloat($("thr").value);
    $("thr-value").textContent = state.thr.toFixed(2);
    redrawAll();
  });
  $("files").addEventListener("change", () => { addFiles($("files").files); $("files").value = ""; });
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); addFiles(e.dataTransfer.files); });
  window.addEventListener("dragover", (e) => e.preventDefault());  // a drop beside the zone does not open the file
  window.addEventListener("drop", (e) => e.preventDefault());
  $("dl-json").addEventListener("click", downloadJson);
  $("dl-masks").addEventListener("click", downloadMasks);
  try {
    const resp = await fetch("/health");
    const health = await resp.json();
    if (!resp.ok) throw new Error(health.error || `HTTP ${resp.status}`);
    state.classes = health.classes;
    $("model").textContent = `${health.model}: ${health.classes.length} classes`;
    buildToggles();
  } catch (err) {
    $("model").textContent = `server not ready: ${err.message}`;
  }
}

function buildToggles() {
  const box = $("classes");
  box.textContent = "";
  state.classes.forEach((name, id) => {
    state.shown.add(id);
    const label = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.checked = true;
    check.dataset.classId = id;
    check.addEventListener("change", () => {
      if (check.checked) state.shown.add(id); else state.shown.delete(id);
      redrawAll();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = css(colour(id));
    label.append(check, swatch, document.createTextNode(name));
    box.append(label);
  });
}

function addFiles(files) {
  for (const file of Array.from(files)) {
    const item = { file, name: file.name, url: URL.createObjectURL(file) };
    item.el = makeArticle(item);
    state.items.push(item);
    state.queue.push(item);
  }
  setStatus();
  pump();
}

function makeArticle(item) {
  const article = document.createElement("article");
  article.dataset.state = "waiting";
  const h2 = document.createElement("h2");
  h2.textContent = `${item.name}: waiting…`;
  const canvas = document.createElement("canvas");
  const table = document.createElement("div");
  table.className = "table";
  table.innerHTML = '<table><thead><tr><th>#</th><th>class</th><th class="num">score</th>' +
    '<th class="num">box x, y, w, h</th><th class="num">area</th></tr></thead><tbody></tbody></table>';
  article.append(h2, canvas, table);
  $("results").append(article);
  return { article, h2, canvas, tbody: table.querySelector("tbody") };
}

function pump() {
  while (state.active < CONCURRENT && state.queue.length) {
    const item = state.queue.shift();
    state.active++;
    process(item).finally(() => { state.active--; setStatus(); pump(); });
  }
}

async function process(item) {
  try {
    item.img = new Image();
    item.img.src = item.url;
    const [answer] = await Promise.all([predict(item.file), item.img.decode().catch(() => null)]);
    item.width = answer.width;
    item.height = answer.height;
    item.instances = answer.instances.map((inst) => {
      const counts = decodeCounts(inst.segmentation.counts);
      let area = 0;
      forEachRun(counts, (a, b) => { area += b - a; });
      return { ...inst, counts, area };
    });
    item.el.article.dataset.state = "done";
  } catch (err) {
    item.error = err.message;
    item.el.article.dataset.state = "error";
  }
  redraw(item);
}

async function predict(file) {
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("score_thr", "0");
  for (let attempt = 0; ; attempt++) {
    const resp = await fetch("/predict", { method: "POST", body: form });
    if (resp.status === 503 && attempt < RETRIES_503) {
      await new Promise((done) => setTimeout(done, 500 * (attempt + 1)));
      continue;
    }
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
    return body;
  }
}

function redrawAll() { for (const item of state.items) redraw(item); }

function redraw(item) {
  const { h2, canvas, tbody } = item.el;
  if (item.error) {
    h2.innerHTML = "";
    h2.append(document.createTextNode(`${item.name}: `));
    const span = document.createElement("span");
    span.className = "error";
    span.textContent = item.error;
    h2.append(span);
    canvas.hidden = true;
    return;
  }
  if (!item.instances) return;
  const shown = visible(item);
  h2.textContent = `${item.name}: ${item.width}×${item.height}, ${shown.length} of ${item.instances.length} ` +
    `instances shown`;
  draw(item, shown);
  tbody.textContent = "";
  shown.forEach((inst, k) => {
    const tr = document.createElement("tr");
    const [x, y, w, h] = inst.bbox.map((v) => Math.round(v));
    const cls = document.createElement("td");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = css(colour(inst.class_id));
    cls.append(swatch, document.createTextNode(` ${inst.class_name}`));
    const cells = [String(k + 1), null, inst.score.toFixed(3), `${x}, ${y}, ${w}, ${h}`, String(inst.area)];
    cells.forEach((text, i) => {
      const td = i === 1 ? cls : document.createElement("td");
      if (i !== 1) td.textContent = text;
      if (i >= 2) td.className = "num";
      tr.append(td);
    });
    tbody.append(tr);
  });
}

// The image at an integer scale (small images enlarged so that captions stay legible), the masks at half opacity
// in class colours (the best instance on top), boxes and "class score" captions.
function draw(item, shown) {
  const W = item.width, H = item.height, canvas = item.el.canvas;
  const s = Math.max(1, Math.min(Math.ceil(384 / Math.min(W, H)), Math.floor(4096 / Math.max(W, H))));
  item.scale = s;
  canvas.width = W * s;
  canvas.height = H * s;
  canvas.dataset.scale = s;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  if (item.img && item.img.complete && item.img.naturalWidth) ctx.drawImage(item.img, 0, 0, W * s, H * s);
  if (!shown.length) return;
  if (!item.off) {
    item.off = document.createElement("canvas");
    item.off.width = W;
    item.off.height = H;
  }
  const off = item.off.getContext("2d");
  const pixels = off.createImageData(W, H);
  const d = pixels.data;
  for (const inst of [...shown].reverse()) {
    const [r, g, b] = colour(inst.class_id);
    forEachRun(inst.counts, (a, end) => {
      for (let i = a; i < end; i++) {
        const o = ((i % H) * W + Math.floor(i / H)) * 4;
        d[o] = r; d[o + 1] = g; d[o + 2] = b; d[o + 3] = 255;
      }
    });
  }
  off.putImageData(pixels, 0, 0);
  ctx.globalAlpha = 0.5;
  ctx.drawImage(item.off, 0, 0, W * s, H * s);
  ctx.globalAlpha = 1;
  const font = Math.max(11, Math.round(Math.min(W, H) * s / 26));
  ctx.font = `${font}px "DejaVu Sans", sans-serif`;
  ctx.lineWidth = Math.max(1, Math.round(Math.min(W, H) * s / 300));
  ctx.textBaseline = "top";
  for (const inst of shown) {
    const [x, y, w, h] = inst.bbox.map((v) => v * s);
    const rgb = colour(inst.class_id);
    ctx.strokeStyle = css(rgb);
    ctx.strokeRect(x, y, w, h);
    const text = `${inst.class_name} ${inst.score.toFixed(2)}`;
    const tw = ctx.measureText(text).width + 6, th = font + 4;
    const ty = y >= th ? y - th : y;  // above the box, or inside it at the image's top
    ctx.fillStyle = css(rgb);
    ctx.fillRect(x, ty, tw, th);
    ctx.fillStyle = rgb[0] * 0.299 + rgb[1] * 0.587 + rgb[2] * 0.114 > 150 ? "#000" : "#fff";
    ctx.fillText(text, x + 3, ty + 2);
  }
}

function save(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

// COCO results as `solov2 predict` writes results.json: the instances shown (slider and toggles), image_id 1, 2, ...
// in the order the images were added.
function downloadJson() {
  const out = [];
  state.items.forEach((item, k) => {
    for (const inst of visible(item)) {
      out.push({ image_id: k + 1, category_id: inst.category_id, segmentation: inst.segmentation, bbox: inst.bbox,
        score: inst.score, file_name: item.name, category_name: inst.class_name });
    }
  });
  save(new Blob([JSON.stringify(out)], { type: "application/json" }), "results.json");
}

// One PNG per instance shown (white on black, the image's size), named as `solov2 predict --save-masks` names
// them: IMAGE_masks/NNN_CLASS_SCORE.png, in one .zip (stored: PNG is compressed already).
async function downloadMasks() {
  const files = [], used = new Set();
  for (const item of state.items) {
    const shown = visible(item);
    if (!shown.length) continue;
    let folder = `${item.name}_masks`;
    for (let n = 2; used.has(folder); n++) folder = `${item.name}_masks_${n}`;
    used.add(folder);
    const canvas = document.createElement("canvas");
    canvas.width = item.width;
    canvas.height = item.height;
    const ctx = canvas.getContext("2d");
    for (const [k, inst] of shown.entries()) {
      const pixels = ctx.createImageData(item.width, item.height);
      const d = pixels.data, H = item.height, W = item.width;
      for (let o = 3; o < d.length; o += 4) d[o] = 255;
      forEachRun(inst.counts, (a, end) => {
        for (let i = a; i < end; i++) {
          const o = ((i % H) * W + Math.floor(i / H)) * 4;
          d[o] = d[o + 1] = d[o + 2] = 255;
        }
      });
      ctx.putImageData(pixels, 0, 0);
      const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
      const name = `${folder}/${String(k).padStart(3, "0")}_${inst.class_name}_${inst.score.toFixed(2)}.png`;
      files.push({ name, data: new Uint8Array(await blob.arrayBuffer()) });
    }
  }
  save(zip(files), "masks.zip");
}

let CRC_TABLE = null;
function crc32(bytes) {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// A .zip of stored (uncompressed) entries with UTF-8 names: local headers and data, then the central directory.
function zip(files) {
  const enc = new TextEncoder(), parts = [], central = [];
  let offset = 0;
  for (const file of files) {
    const name = enc.encode(file.name), crc = crc32(file.data), size = file.data.length;
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    local.setUint16(4, 20, true);
    local.setUint16(6, 0x0800, true);   // names in UTF-8
    local.setUint16(12, 0x0021, true);  // 1980-01-01
    local.setUint32(14, crc, true);
    local.setUint32(18, size, true);
    local.setUint32(22, size, true);
    local.setUint16(26, name.length, true);
    parts.push(local, name, file.data);
    const entry = new DataView(new ArrayBuffer(46));
    entry.setUint32(0, 0x02014b50, true);
    entry.setUint16(4, 20, true);
    entry.setUint16(6, 20, true);
    entry.setUint16(8, 0x0800, true);
    entry.setUint16(14, 0x0021, true);
    entry.setUint32(16, crc, true);
    entry.setUint32(20, size, true);
    entry.setUint32(24, size, true);
    entry.setUint16(28, name.length, true);
    entry.setUint32(42, offset, true);
    central.push(entry, name);
    offset += 30 + name.length + size;
  }
  const centralSize = central.reduce((n, part) => n + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, centralSize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end], { type: "application/zip" });
}

init();
