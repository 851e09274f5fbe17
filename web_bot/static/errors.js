// Error codes from the server (and the upload request) as sentences people can act on.
// The server's codes are core.errors.ErrorCode; each code in FRIENDLY and PAGE_CODES has its sentence under
// "error.<code>" in every static/i18n/<language>.json. tests/test_error_codes.py checks that FRIENDLY and
// SERVER_WORDS cover exactly ErrorCode, and that every translation has those sentences; it reads this file with
// a regex: keep only quoted codes inside the `new Set([...])` lists.
"use strict";

import { formatNumber, t } from "./i18n.js";

// The server codes the page has its own sentence for, in the order of core.errors.ErrorCode.
const FRIENDLY = new Set([
  "bot-error", "internal-error", "config-invalid", "bad-json", "bad-message", "unknown-type", "empty-message",
  "bad-client-id", "llm-timeout", "llm-rate-limited", "llm-auth", "llm-unavailable", "llm-failed", "context-too-long", "no-speech",
  "stt-unavailable", "stt-auth", "stt-rate-limited", "stt-failed", "tts-unavailable", "tts-failed", "tts-no-voice",
  "audio-too-large", "audio-too-long", "unsupported-audio", "corrupt-audio", "empty-audio", "history-unavailable",
  "history-failed", "auth-required", "bad-credentials", "account-disabled", "not-allowed", "bad-origin", "not-found",
  "rate-limited", "username-taken", "weak-password", "bad-username", "setup-closed", "last-admin",
]);

// Codes whose server message is already the most useful thing to show (it names limits or commands).
const SERVER_WORDS = new Set(["unknown-command", "bad-command", "message-too-long", "bad-request"]);

// Page-only codes: the page makes these itself and the server never sends them. A failed upload with no JSON
// body is reported as "http-<status>", which falls back to the server's words or the generic sentence.
const PAGE_CODES = new Set(["network"]);

/** A sentence for `code` in the page's language; `message` is the server's own text, used when it says more.
 * `retryAfterMs` (what a rate-limited answer says) turns "too fast" into "wait so many seconds". */
export function friendlyError(code, message, { maxUploadMb, retryAfterMs } = {}) {
  if (SERVER_WORDS.has(code) && message) return sentence(message);
  if (code === "audio-too-large" && maxUploadMb) {
    return t("problem.too-large-limit", { limit: formatNumber(maxUploadMb, { maximumFractionDigits: 1 }) });
  }
  if (code === "rate-limited" && retryAfterMs > 0) {
    return t("problem.wait", { count: Math.max(1, Math.ceil(retryAfterMs / 1000)) });
  }
  if (FRIENDLY.has(code) || PAGE_CODES.has(code)) return t("error." + code);
  if (message) return sentence(message);
  return t("problem.unknown", { code });
}

/** Codes that come from audio a client sent, before any turn started. */
export const AUDIO_CODES = new Set([
  "no-speech", "unsupported-audio", "corrupt-audio", "empty-audio", "audio-too-large", "audio-too-long",
  "stt-unavailable", "stt-failed", "stt-auth", "stt-rate-limited",
]);

function sentence(text) {
  return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
}
