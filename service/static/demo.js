"use strict";
// The watchbuy demo page: pick a stream, send frames (a video clip, images or a labelled clip),
// then draw what the service found: boxes on the frames, each box's matched shop images, the ranked
// products, the abstain decision and the stage timings. Plain browser JavaScript, no build step.
// Every request carries the API key (X-API-Key) when one is set; images are fetched with it and shown
// through blob URLs.

const KEY_STORAGE = "watchbuy.apiKey";
const COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#808000"];
const THUMB_HEIGHT = 112;
const imageCache = new Map(); // API path → Promise<HTMLImageElement>

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function colour(index) {
  return COLOURS[index % COLOURS.length];
}

// --- talking to the API ---------------------------------------------------------------------

function apiHeaders() {
  const key = localStorage.getItem(KEY_STORAGE);
  return key ? { "X-API-Key": key } : {};
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${response.status} ${body.error.code}: ${body.error.message}`;
  } catch (ignored) {
    // not JSON: fall through to the status line
  }
  return `${response.status} ${response.statusText}`;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...apiHeaders(), ...(options.headers || {}) } });
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

async function getJson(path) {
  return (await api(path)).json();
}

async function postForm(path, form) {
  return (await api(path, { method: "POST", body: form })).json();
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`cannot show image ${src.slice(0, 60)}`));
    image.src = src;
  });
}

async function fetchBlobUrl(path) {
  const blob = await (await api(path)).blob();
  return URL.createObjectURL(blob);
}

function apiImage(path) {
  if (!imageCache.has(path)) {
    imageCache.set(path, fetchBlobUrl(path).then(loadImage));
  }
  return imageCache.get(path);
}

function catalogueImage(streamId, imageId) {
  return apiImage(`/streams/${encodeURIComponent(streamId)}/images/${encodeURIComponent(imageId)}`);
}

// --- status line --------------------------------------------------------------------------

function setStatus(text, kind = "") {
  const status = $("status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

// --- choosing what to send ----------------------------------------------------------------

function selectedStream() {
  return $("stream").value;
}

function selectedSource() {
  return document.querySelector("input[name=source]:checked").value;
}

function showSource() {
  const source = selectedSource();
  for (const field of document.querySelectorAll("[data-source]")) {
    field.hidden = field.dataset.source !== source;
  }
}

async function loadStreams() {
  const select = $("stream");
  select.replaceChildren();
  const { streams } = await getJson("/streams");
  for (const stream of streams) {
    const option = el("option", "", `${stream.stream_id} (${stream.products} products)`);
    option.value = stream.stream_id;
    select.append(option);
  }
  if (!streams.length) {
    setStatus("No stream has an index yet: build one with `make build-index STREAM=...`.", "error");
    return;
  }
  await loadClips();
}

async function loadClips() {
  const select = $("clip");
  select.replaceChildren();
  const { clips } = await getJson(`/streams/${encodeURIComponent(selectedStream())}/clips`);
  for (const clip of clips) {
    const truth = clip.product_id || "nothing from the catalogue";
    const option = el("option", "", `${clip.clip_id} — ${truth}`);
    option.value = clip.clip_id;
    option.dataset.frames = clip.frames;
    option.dataset.product = clip.product_id || "";
    select.append(option);
  }
  $("source-clip").disabled = !clips.length;
  if (!clips.length && selectedSource() === "clip") {
    document.querySelector("input[name=source][value=video]").checked = true;
    showSource();
  }
}

// --- asking the service -------------------------------------------------------------------

function baseForm(streamId) {
  const form = new FormData();
  form.append("stream_id", streamId);
  form.append("top_k", $("top-k").value || "5");
  return form;
}

async function identifyVideo(streamId) {
  const file = $("video-file").files[0];
  if (!file) throw new Error("Choose a video clip first.");
  const form = baseForm(streamId);
  form.append("return_frames", "true");
  form.append("video", file);
  const answer = await postForm("/identify/video", form);
  const pictures = answer.video.sampled.map((s) => ({
    src: s.image,
    caption: `frame ${s.frame_index} · ${s.time_s.toFixed(2)} s`,
  }));
  return { answer, pictures, truth: null };
}

async function identifyImages(streamId) {
  const files = [...$("image-files").files];
  if (!files.length) throw new Error("Choose one or more images first.");
  const form = baseForm(streamId);
  files.forEach((file) => form.append("frames", file));
  const answer = await postForm("/identify", form);
  const pictures = files.map((file) => ({ src: URL.createObjectURL(file), caption: file.name }));
  return { answer, pictures, truth: null };
}

async function identifyClip(streamId) {
  const option = $("clip").selectedOptions[0];
  if (!option) throw new Error("This stream has no labelled clips.");
  const base = `/streams/${encodeURIComponent(streamId)}/clips/${encodeURIComponent(option.value)}/frames`;
  const count = Number(option.dataset.frames);
  const blobs = await Promise.all(
    Array.from({ length: count }, (_, i) => api(`${base}/${i}`).then((response) => response.blob())),
  );
  const form = baseForm(streamId);
  blobs.forEach((blob, i) => form.append("frames", blob, `frame-${i}.jpg`));
  const answer = await postForm("/identify", form);
  const pictures = blobs.map((blob, i) => ({ src: URL.createObjectURL(blob), caption: `${option.value} · frame ${i}` }));
  return { answer, pictures, truth: { productId: option.dataset.product || null } };
}

const ASK = { video: identifyVideo, images: identifyImages, clip: identifyClip };

async function identify(event) {
  event.preventDefault();
  const button = $("go");
  button.disabled = true;
  setStatus("Identifying…", "busy");
  const started = performance.now();
  try {
    const { answer, pictures, truth } = await ASK[selectedSource()](selectedStream());
    await render(answer, pictures, truth);
    setStatus(`Answered in ${((performance.now() - started) / 1000).toFixed(1)} s (index ${answer.index_version}).`, "ok");
  } catch (error) {
    setStatus(error.message, "error");
  } finally {
    button.disabled = false;
  }
}

// --- drawing the answer -------------------------------------------------------------------

async function render(answer, pictures, truth) {
  $("results").hidden = false;
  renderDecision(answer, truth);
  renderTimings(answer.timings_ms);
  renderProducts(answer);
  await renderFrames(answer, pictures);
}

function renderDecision(answer, truth) {
  const box = $("decision");
  box.replaceChildren();
  const best = answer.products[0];
  const badge = el("span", `badge ${answer.abstain ? "abstain" : "match"}`, answer.abstain ? "abstains" : "match");
  const text = answer.abstain
    ? "No product is confident enough (best score below the abstain threshold)."
    : `Top product: ${best ? productName(best) : "none"}`;
  const line = el("span", "", text);
  line.title = text;
  box.append(badge, line);
  if (truth) box.append(truthNote(answer, truth.productId));
}

function truthNote(answer, productId) {
  if (!productId) {
    const right = answer.abstain;
    return el("span", `truth ${right ? "right" : "wrong"}`, `labelled: nothing from the catalogue ${right ? "✓ abstained" : "✗ should abstain"}`);
  }
  const rank = answer.products.findIndex((p) => p.product_id === productId) + 1;
  const shown = rank === 1 ? "✓ top-1" : rank ? `✗ rank ${rank}` : "✗ not in the list";
  return el("span", `truth ${rank === 1 ? "right" : "wrong"}`, `labelled: ${productId} ${shown}`);
}

function renderTimings(timings) {
  const box = $("timings");
  box.replaceChildren();
  const stages = Object.entries(timings).filter(([name]) => name !== "total");
  const sum = stages.reduce((acc, [, ms]) => acc + ms, 0) || 1;
  const bar = el("div", "timing-bar");
  const legend = el("div", "timing-legend");
  stages.forEach(([name, ms], i) => {
    const part = el("span", "timing-part");
    part.style.width = `${(100 * ms) / sum}%`;
    part.style.background = colour(i + 2);
    part.title = `${name} ${ms.toFixed(1)} ms`;
    bar.append(part);
    const item = el("span", "timing-item", `${name} ${ms.toFixed(0)} ms`);
    item.style.setProperty("--dot", colour(i + 2));
    legend.append(item);
  });
  legend.append(el("strong", "timing-item total", `total ${Number(timings.total).toFixed(0)} ms`));
  box.append(bar, legend);
}

function productName(product) {
  return product.title || product.product_id;
}

function bestMatchOf(answer, productId) {
  let best = null;
  for (const frame of answer.frames) {
    for (const box of frame.boxes) {
      for (const match of box.matches) {
        if (match.product_id === productId && (!best || match.similarity > best.similarity)) best = match;
      }
    }
  }
  return best;
}

function renderProducts(answer) {
  const list = $("products");
  list.replaceChildren();
  const top = answer.products.length ? answer.products[0].score : 1;
  for (const product of answer.products) {
    const item = el("li", "product");
    const match = bestMatchOf(answer, product.product_id);
    item.append(match ? thumbnail(answer.stream_id, match) : el("div", "thumb empty", "no box match"));
    const text = el("div", "product-text");
    text.append(el("div", "product-title", productName(product)));
    if (product.title) text.append(el("div", "product-id", product.product_id));
    const meter = el("div", "meter");
    const fill = el("span");
    fill.style.width = `${Math.max(0, Math.min(1, product.score / (top || 1))) * 100}%`;
    meter.append(fill);
    text.append(meter, el("div", "score", `score ${product.score.toFixed(3)}`));
    item.append(text);
    list.append(item);
  }
  if (!answer.products.length) list.append(el("li", "empty", "No product found."));
}

function thumbnail(streamId, match) {
  const canvas = el("canvas", "thumb");
  canvas.title = `${match.image_id} (similarity ${match.similarity.toFixed(3)})`;
  catalogueImage(streamId, match.image_id)
    .then((image) => drawThumbnail(canvas, image, match.image_box))
    .catch(() => canvas.classList.add("missing"));
  return canvas;
}

function drawThumbnail(canvas, image, box) {
  const scale = THUMB_HEIGHT / image.naturalHeight;
  canvas.width = Math.round(image.naturalWidth * scale);
  canvas.height = THUMB_HEIGHT;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  if (box) {
    ctx.strokeStyle = "#ffd400";
    ctx.lineWidth = 2;
    ctx.strokeRect(box[0] * scale, box[1] * scale, (box[2] - box[0]) * scale, (box[3] - box[1]) * scale);
  }
  canvas.classList.add("drawn");
}

async function renderFrames(answer, pictures) {
  const container = $("frames");
  container.replaceChildren();
  const cards = answer.frames.map((frame, i) => frameCard(answer.stream_id, frame, pictures[i]));
  container.append(...cards.map((card) => card.node));
  await Promise.all(cards.map((card) => card.ready));
}

function frameCard(streamId, frame, picture) {
  const node = el("article", "frame");
  const canvas = el("canvas", "frame-canvas");
  const caption = el("div", "caption", `${picture ? picture.caption : `frame ${frame.frame_index}`} · ${frame.boxes.length} boxes`);
  const boxes = el("ol", "boxes");
  node.append(canvas, caption, boxes);
  const rows = frame.boxes.map((box, j) => boxRow(streamId, box, j));
  boxes.append(...rows);
  const ready = picture
    ? loadImage(picture.src).then((image) => {
      const draw = (highlight) => drawFrame(canvas, image, frame.boxes, highlight);
      draw(-1);
      linkBoxes(canvas, frame, rows, draw);
    })
    : Promise.resolve();
  return { node, ready };
}

function boxRow(streamId, box, index) {
  const row = el("li", "box-row");
  const head = el("div", "box-head");
  const swatch = el("span", "swatch", String(index + 1));
  swatch.style.background = colour(index);
  head.append(swatch, el("span", "", `${box.label} · detector ${box.detector_score.toFixed(2)}`));
  const matches = el("div", "matches");
  for (const match of box.matches) {
    const figure = el("figure", "match");
    figure.append(thumbnail(streamId, match));
    const caption = el("figcaption", "", match.product_id);
    caption.title = match.product_id;
    caption.prepend(el("b", "", match.similarity.toFixed(3)));
    figure.append(caption);
    matches.append(figure);
  }
  row.append(head, matches);
  return row;
}

function drawFrame(canvas, image, boxes, highlight) {
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  const line = Math.max(2, Math.round(Math.max(canvas.width, canvas.height) / 250));
  ctx.font = `bold ${line * 6}px system-ui, sans-serif`;
  boxes.forEach((box, j) => {
    const [x1, y1, x2, y2] = box.box;
    const dim = highlight >= 0 && highlight !== j;
    ctx.globalAlpha = dim ? 0.25 : 1;
    ctx.strokeStyle = colour(j);
    ctx.lineWidth = highlight === j ? line * 2 : line;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const tag = String(j + 1);
    const width = ctx.measureText(tag).width + line * 3;
    ctx.fillStyle = colour(j);
    ctx.fillRect(x1, y1, width, line * 8);
    ctx.fillStyle = "#fff";
    ctx.fillText(tag, x1 + line * 1.5, y1 + line * 6.5);
  });
  ctx.globalAlpha = 1;
  canvas.dataset.boxes = String(boxes.length);
  canvas.classList.add("drawn");
}

function boxAt(frame, canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) * canvas.width) / rect.width;
  const y = ((event.clientY - rect.top) * canvas.height) / rect.height;
  let found = -1;
  let smallest = Infinity;
  frame.boxes.forEach((box, j) => {
    const [x1, y1, x2, y2] = box.box;
    const area = (x2 - x1) * (y2 - y1);
    if (x >= x1 && x <= x2 && y >= y1 && y <= y2 && area < smallest) {
      found = j;
      smallest = area;
    }
  });
  return found;
}

function linkBoxes(canvas, frame, rows, draw) {
  const select = (j) => {
    draw(j);
    rows.forEach((row, k) => row.classList.toggle("active", k === j));
  };
  rows.forEach((row, j) => {
    row.addEventListener("mouseenter", () => select(j));
    row.addEventListener("mouseleave", () => select(-1));
  });
  canvas.addEventListener("mousemove", (event) => select(boxAt(frame, canvas, event)));
  canvas.addEventListener("mouseleave", () => select(-1));
}

// --- start-up -----------------------------------------------------------------------------

function setUpKey() {
  const input = $("api-key");
  input.value = localStorage.getItem(KEY_STORAGE) || "";
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    input.blur();
  });
  input.addEventListener("change", () => {
    const key = input.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    imageCache.clear();
    loadStreams().then(() => setStatus("API key saved.", "ok"), (error) => setStatus(error.message, "error"));
  });
}

function start() {
  setUpKey();
  for (const radio of document.querySelectorAll("input[name=source]")) radio.addEventListener("change", showSource);
  $("stream").addEventListener("change", () => loadClips().catch((error) => setStatus(error.message, "error")));
  $("ask").addEventListener("submit", identify);
  showSource();
  loadStreams().catch((error) => setStatus(error.message, "error"));
}

document.addEventListener("DOMContentLoaded", start);
