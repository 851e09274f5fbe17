// Error codes from the server (and the upload request) as sentences people can act on.
// The server's codes are core.errors.ErrorCode; tests/test_error_codes.py checks that FRIENDLY and SERVER_WORDS
// cover exactly those, and reads this file with a regex: keep one `"code": "sentence",` per line in the objects,
// and only quoted codes inside the `new Set([...])` lists.
"use strict";

// One sentence per server code, in the order of core.errors.ErrorCode.
const FRIENDLY = {
  "bot-error": "Something went wrong on the server.",
  "internal-error": "Something went wrong on the server.",
  "config-invalid": "The server's configuration is invalid; whoever runs it needs to fix it.",
  "bad-json": "The server couldn't read a message from this page. Reloading the page may help.",
  "bad-message": "The server couldn't understand a message from this page. Reloading the page may help.",
  "unknown-type": "This page sent something the server doesn't know; it may be out of date. Reload it and try again.",
  "empty-message": "The message is empty.",
  "bad-client-id": "This browser's conversation id is invalid; start a new conversation.",
  "llm-timeout": "The model took too long to answer. Please try again.",
  "llm-rate-limited": "The model is busy right now. Wait a moment and try again.",
  "llm-auth": "The server couldn't sign in to its language model (check its API key).",
  "llm-unavailable": "The language model can't be reached right now.",
  "llm-failed": "The language model failed to answer. Please try again.",
  "no-speech": "I couldn't hear any speech in that recording. Try again, a little closer to the microphone.",
  "stt-unavailable": "Speech recognition is turned off on this server, so voice and audio files can't be used.",
  "stt-auth": "The server couldn't sign in to its speech-recognition service.",
  "stt-rate-limited": "Speech recognition is busy right now. Wait a moment and try again.",
  "stt-failed": "Speech recognition failed. Please try again.",
  "tts-unavailable": "Spoken replies aren't available right now; the text is still shown.",
  "tts-failed": "The spoken reply failed; the text is still shown.",
  "audio-too-large": "That file is too large for the server{limit}.",
  "audio-too-long": "That recording is too long for the server; try a shorter one.",
  "unsupported-audio": "That file isn't audio I can read. Try WAV, MP3, FLAC, AIFF, M4A, OGG or WebM.",
  "corrupt-audio": "That audio seems damaged: it could not be decoded.",
  "empty-audio": "The recording was empty.",
  "history-unavailable": "The conversation store can't be reached right now.",
  "history-failed": "The conversation could not be saved.",
};

// Codes whose server message is already the most useful thing to show (it names limits or commands).
const SERVER_WORDS = new Set(["unknown-command", "bad-command", "message-too-long", "bad-request"]);

// Page-only codes: the page makes these itself and the server never sends them. A failed upload with no JSON
// body is reported as "http-<status>", which falls back to the server's words or the generic sentence.
const PAGE_CODES = {
  "network": "Couldn't reach the server. Check the connection and try again.",
};

/** A sentence for `code`; `message` is the server's own text, used when it says more. */
export function friendlyError(code, message, { maxUploadMb } = {}) {
  if (SERVER_WORDS.has(code) && message) return capitalise(message) + (/[.!?]$/.test(message) ? "" : ".");
  const text = FRIENDLY[code] ?? PAGE_CODES[code];
  if (text) return text.replace("{limit}", maxUploadMb ? ` (the limit is ${maxUploadMb} MB)` : "");
  if (message) return capitalise(message) + (/[.!?]$/.test(message) ? "" : ".");
  return "Something went wrong (" + code + ").";
}

/** Codes that come from audio a client sent, before any turn started. */
export const AUDIO_CODES = new Set([
  "no-speech", "unsupported-audio", "corrupt-audio", "empty-audio", "audio-too-large", "audio-too-long",
  "stt-unavailable", "stt-failed", "stt-auth", "stt-rate-limited",
]);

function capitalise(text) {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
