"use strict";
// The demo page's timeline: watch the chosen clip like a stream (POST /timeline), or follow the stream's
// running watcher (its Server-Sent Events), and draw the product segments as a bar with each product's
// shop image. Clicking a segment shows its best frame with the boxes that matched (the uploaded clip seeked
// to that moment, or the event's own small picture for a live watcher) and the segment's details. Uses demo.js's helpers ($, el, colour, api, postForm,
// catalogueImage, loadImage, drawFrame, selectedStream).

const timeline = { segments: [], duration: 0, streamId: null, videoUrl: null, events: null };

function setTimelineStatus(text, kind = "") {
  const status = $("timeline-status");
  status.textContent = text;
  status.className = `status ${kind}`;
}

function formatSeconds(seconds) {
  return `${seconds.toFixed(1)} s`;
}

async function watchClip(event) {
  event.preventDefault();
  const file = $("video-file").files[0];
  if (!file) {
    setTimelineStatus("Choose a clip (MP4 or WebM) above first.", "error");
    return;
  }
  stopFollowing();
  const streamId = selectedStream();
  const form = new FormData();
  form.append("stream_id", streamId);
  form.append("video", file);
  setTimelineStatus("Watching the clip…", "busy");
  try {
    const answer = await postForm("/timeline", form);
    if (timeline.videoUrl) URL.revokeObjectURL(timeline.videoUrl);
    Object.assign(timeline, { segments: answer.segments, duration: answer.duration_s, streamId,
                              videoUrl: URL.createObjectURL(file) });
    drawTimeline();
    setTimelineStatus(`${answer.segments.length} segments in ${formatSeconds(answer.duration_s)} ` +
                      `(${answer.frames} frames analysed).`, "ok");
  } catch (error) {
    setTimelineStatus(error.message, "error");
  }
}

async function followWatcher(event) {
  event.preventDefault();
  stopFollowing();
  const streamId = selectedStream();
  Object.assign(timeline, { segments: [], duration: 0, streamId, videoUrl: null });
  drawTimeline();
  // fetch, not EventSource: it can send the API key header.
  const controller = new AbortController();
  timeline.events = controller;
  setTimelineStatus(`Following ${streamId}'s watcher…`, "busy");
  try {
    const response = await api(`/streams/${encodeURIComponent(streamId)}/events`, { signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const message = parseEvent(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
        if (message) onWatchEvent(message.event, message.data);
      }
    }
  } catch (error) {
    if (error.name !== "AbortError") setTimelineStatus(error.message, "error");
  }
}

function parseEvent(block) {
  // One server-sent event: its `event:` name and its `data:` JSON (comments and ids are skipped).
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { event: name, data: JSON.parse(data.join("\n")) } : null;
}

function onWatchEvent(kind, data) {
  if (kind === "segment_ended") {
    timeline.segments.push({ ...data, title: "" });
    timeline.duration = Math.max(timeline.duration, data.end_s);
    drawTimeline();
  } else if (kind === "watch_ended" || kind === "watch_failed") {
    const ended = kind === "watch_ended";
    setTimelineStatus(`The watch ${ended ? "ended" : "failed"}: ${data.message || ""} ` +
                      `(${timeline.segments.length} segments).`, ended ? "ok" : "error");
    stopFollowing();
  }
}

function stopFollowing() {
  if (timeline.events) timeline.events.abort();
  timeline.events = null;
}

function drawTimeline() {
  const bar = $("timeline-bar");
  bar.replaceChildren();
  $("timeline").hidden = false;
  $("segment-detail").hidden = true;
  const duration = Math.max(timeline.duration, 0.001);
  timeline.segments.forEach((segment, i) => {
    const block = el("button", "segment");
    block.type = "button";
    block.style.left = `${(100 * segment.start_s) / duration}%`;
    block.style.width = `${(100 * (segment.end_s - segment.start_s)) / duration}%`;
    block.style.background = colour(i);
    block.title = `${segment.product_id} ${formatSeconds(segment.start_s)}–${formatSeconds(segment.end_s)}`;
    block.dataset.product = segment.product_id;
    const imageId = segment.best && segment.best.image_id;
    if (imageId) {
      catalogueImage(timeline.streamId, imageId).then((image) => {
        const thumb = el("img", "segment-thumb");
        thumb.src = image.src;
        thumb.alt = segment.product_id;
        block.append(thumb);
      }, () => {});
    }
    block.append(el("span", "segment-label", segment.product_id));
    block.addEventListener("click", () => showSegment(segment, i));
    bar.append(block);
  });
  $("timeline-end").textContent = formatSeconds(timeline.duration);
}

async function showSegment(segment, index) {
  const detail = $("segment-detail");
  detail.hidden = false;
  for (const block of document.querySelectorAll("#timeline-bar .segment")) block.classList.remove("chosen");
  document.querySelectorAll("#timeline-bar .segment")[index].classList.add("chosen");
  const best = segment.best;
  $("segment-text").textContent =
    `${segment.product_id}${segment.title ? ` · ${segment.title}` : ""}: ${formatSeconds(segment.start_s)}–` +
    `${formatSeconds(segment.end_s)}, score ${segment.score.toFixed(3)}` +
    (best ? `; best frame at ${formatSeconds(best.time_s)} (${best.boxes.length} matching boxes)` : "");
  const canvas = $("segment-frame");
  canvas.classList.remove("drawn");
  if (!best || !(best.jpeg || timeline.videoUrl)) {
    canvas.hidden = true;
    return;
  }
  canvas.hidden = false;
  // The uploaded clip's own frame (full size), else the event's small picture (a live watch's frame is gone).
  const image = timeline.videoUrl
    ? await frameAt(timeline.videoUrl, best.time_s)
    : await loadImage(`data:image/jpeg;base64,${best.jpeg}`);
  const scale = image.naturalWidth / best.width;
  const boxes = best.boxes.map((b) => ({ ...b, box: b.box.map((v) => v * scale) }));
  drawFrame(canvas, image, boxes, -1);
}

function frameAt(url, seconds) {
  // The uploaded clip's frame at `seconds`, as an image (a hidden video element, seeked, drawn once).
  return new Promise((resolve, reject) => {
    const video = document.createElement("video");
    video.muted = true;
    video.preload = "auto";
    video.addEventListener("error", () => reject(new Error("this browser cannot play the clip")));
    video.addEventListener("loadedmetadata", () => {
      video.currentTime = Math.min(seconds + 0.01, Math.max(0, video.duration - 0.01));
    });
    video.addEventListener("seeked", () => {
      const still = document.createElement("canvas");
      still.width = video.videoWidth;
      still.height = video.videoHeight;
      still.getContext("2d").drawImage(video, 0, 0);
      still.toBlob((blob) => loadImage(URL.createObjectURL(blob)).then(resolve, reject), "image/png");
    }, { once: true });
    video.src = url;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("watch-clip").addEventListener("click", watchClip);
  $("follow-watcher").addEventListener("click", followWatcher);
});
