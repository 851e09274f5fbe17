// Conversations in and out as files: one conversation as JSON, Markdown or text, all of them as a ZIP (with the
// recordings), and a JSON export imported back as a new conversation. Each resolves with what went wrong, in words
// (a msg()), or with nothing.
"use strict";

import { download, errorCode, ok, problem, request } from "./api.js";
import { msg } from "./i18n.js";

const MAX_IMPORT_BYTES = 20_000_000; // the server's limit
const EXPORT_FORMAT = "web-bot.conversation";

/** Downloads conversation `id` as `format` ("json", "md" or "txt"); null, or why not. */
export async function exportConversation(id, format) {
  const result = await download(
    `api/conversations/${encodeURIComponent(id)}/export?format=${format}`, `conversation-${id}.${format}`,
  );
  return ok(result) ? null : problem(result);
}

/** Downloads every conversation of the user, with the recordings, as one ZIP; null, or why not. */
export async function exportEverything() {
  const result = await download("api/export?recordings=true", "web-bot-conversations.zip");
  return ok(result) ? null : problem(result);
}

/** Imports `file` (a JSON export): {made} the new conversation, or {failed} why not. What is not an export is
 * said before the server is asked. */
export async function importConversation(file) {
  const notExport = { failed: msg("conversations.import-not-export") };
  if (file.size > MAX_IMPORT_BYTES) return { failed: msg("conversations.import-too-large") };
  let data = null;
  try {
    data = JSON.parse(await file.text());
  } catch {
    return notExport;
  }
  if (!data || typeof data !== "object" || data.format !== EXPORT_FORMAT) return notExport;
  const result = await request("POST", "api/conversations/import", data);
  if (ok(result)) return { made: result.body };
  return errorCode(result) === "bad-request" ? notExport : { failed: problem(result) };
}
