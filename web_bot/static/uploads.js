// Audio files: picking, dropping, and sending them to POST /upload_audio with upload progress.
"use strict";

const AUDIO_EXTENSIONS = /\.(wav|wave|mp3|flac|aiff?|aifc|m4a|mp4|aac|ogg|oga|opus|webm|weba)$/i;

/** True when the file is clearly not audio (so there is no point sending it). */
export function clearlyNotAudio(file) {
  if (AUDIO_EXTENSIONS.test(file.name)) return false;
  const type = file.type || "";
  return type !== "" && !type.startsWith("audio/") && !type.startsWith("video/");
}

/**
 * Sends one file; resolves with {status, body} for any HTTP answer (status 0: the server could not be reached).
 * `onProgress(fraction)` follows the upload, `onSent()` fires when the last byte has left.
 */
export function uploadAudio(file, clientId, { onProgress, onSent } = {}) {
  return new Promise((resolve) => {
    const form = new FormData();
    form.append("client_id", clientId);
    form.append("file", file, file.name || "audio");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", new URL("upload_audio", document.baseURI));
    xhr.responseType = "json";
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable && onProgress) onProgress(event.loaded / event.total);
    };
    xhr.upload.onload = () => {
      if (onProgress) onProgress(1);
      if (onSent) onSent();
    };
    xhr.onload = () => resolve({ status: xhr.status, body: xhr.response || {} });
    xhr.onerror = () => resolve({ status: 0, body: { code: "network" } });
    xhr.ontimeout = xhr.onerror;
    xhr.send(form);
  });
}

/** Shows `overlay` while files are dragged over the window and hands dropped files to `onFiles`. */
export function dropZone(overlay, onFiles) {
  let depth = 0;
  const carriesFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth += 1;
    overlay.hidden = false;
  });
  window.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  window.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    overlay.hidden = true;
    onFiles(Array.from(event.dataTransfer.files));
  });
}
