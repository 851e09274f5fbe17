// The server's HTTP routes (the session cookie goes by itself, same-origin): every call resolves with
// {status, body}, never throws; status 0 means the server could not be reached.
"use strict";

import { friendlyError } from "./errors.js";
import { live, resolve } from "./i18n.js";

/** `method` `path` (relative to the page) with an optional JSON body. */
export async function request(method, path, body = undefined) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, document.baseURI), options);
  } catch {
    return { status: 0, body: { code: "network" } };
  }
  let data = {};
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = {};
    }
  }
  return { status: response.status, body: data && typeof data === "object" ? data : {} };
}

/** True for a 2xx answer. */
export function ok(result) {
  return result.status >= 200 && result.status < 300;
}

/** The error an answer carries: its code ("http-<status>" when the body has none). */
export function errorCode(result) {
  return result.body.code || (result.status === 0 ? "network" : "http-" + result.status);
}

/** Words for a failed answer, looked up when shown (they follow a language switch). */
export function problem(result) {
  const code = errorCode(result);
  const retryAfterMs = Number(result.body.retry_after_ms) || 0;
  return () => friendlyError(code, result.body.detail, { retryAfterMs });
}

/** Shows `text` (a string or msg()) in a form's error line; nothing clears it. */
export function showError(node, text) {
  live(node, () => {
    node.textContent = resolve(text);
  });
}

/** Downloads `path` as a file (named as the server says, else `fallback`); resolves {status, body} like
 * request(): on failure the body is the server's {code, detail}, so the page can say what went wrong. */
export async function download(path, fallback) {
  let response;
  try {
    response = await fetch(new URL(path, document.baseURI), { credentials: "same-origin" });
  } catch {
    return { status: 0, body: { code: "network" } };
  }
  if (!response.ok) {
    let body = {};
    try {
      body = await response.json();
    } catch {
      body = {};
    }
    return { status: response.status, body: body && typeof body === "object" ? body : {} };
  }
  let blob;
  try {
    blob = await response.blob();
  } catch {
    return { status: 0, body: { code: "network" } };
  }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = fileName(response.headers.get("content-disposition")) || fallback;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  return { status: response.status, body: {} };
}

/** The file name a Content-Disposition header gives, or "". */
function fileName(disposition) {
  const match = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(disposition || "");
  if (!match) return "";
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}
