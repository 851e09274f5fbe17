// Searching the messages of every conversation (GET /api/search): while the box holds a query, its results take
// the list's place, newest first, each with its conversation's title, its time and the words around the match,
// the matched ones marked. A snippet's parts are text: each goes in through textContent, never parsed as HTML.
"use strict";

import { ok, problem, request } from "./api.js";
import { el } from "./conversation.js";
import { live, msg, t } from "./i18n.js";
import { timeElement, titleOf } from "./sidebar.js";

const $ = (id) => document.getElementById(id);
const WAIT_MS = 250; // typing pauses this long before the server is asked
const LIMIT = 20;

/** A snippet's parts as [text, matched]: the server sends [text, matched] pairs or {text, matched} objects. */
function parts(snippet) {
  return (Array.isArray(snippet) ? snippet : []).map((part) => {
    const [text, matched] = Array.isArray(part) ? part : [part?.text, part?.matched];
    return [String(text ?? ""), matched === true];
  });
}

export class Search {
  /** `onOpen(clientId, messageId)` opens a result's conversation at its message. */
  constructor({ onOpen }) {
    this.onOpen = onOpen;
    this.input = $("search");
    this.nav = $("conversations");
    this.box = $("results");
    this.list = $("results-list");
    this.status = $("results-status");
    this.moreButton = $("results-more");
    this.query = "";
    this.before = null; // the oldest result shown: the next page ends before it
    this.asked = 0; // answers to an older question are dropped
    this.timer = null;
    this.input.addEventListener("input", () => {
      clearTimeout(this.timer);
      if (this.input.value.trim()) this.timer = setTimeout(() => this.run(), WAIT_MS);
      else this.run();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.input.value) {
        event.preventDefault(); // the drawer stays open: this Escape only empties the box
        this.clear();
      } else if (event.key === "Enter") {
        event.preventDefault();
        clearTimeout(this.timer);
        this.run();
      } else if (event.key === "ArrowDown" && !this.box.hidden) {
        event.preventDefault();
        this.list.querySelector(".result")?.focus();
      }
    });
    this.list.addEventListener("keydown", (event) => this.arrows(event));
    this.moreButton.addEventListener("click", () => this.run({ more: true }));
  }

  get active() {
    return !this.box.hidden;
  }

  /** Empties the box: the list is back. */
  clear() {
    clearTimeout(this.timer);
    this.input.value = "";
    this.run();
  }

  async run({ more = false } = {}) {
    const query = this.input.value.trim();
    if (!query) {
      this.asked += 1;
      this.query = "";
      this.box.hidden = true;
      this.nav.hidden = false;
      this.list.replaceChildren();
      return;
    }
    if (!more && query === this.query && this.active) return;
    const asked = ++this.asked;
    this.box.hidden = false;
    this.nav.hidden = true;
    if (!more) {
      this.query = query;
      this.before = null;
      this.showStatus(msg("search.searching"));
    }
    const params = new URLSearchParams({ q: query, limit: String(LIMIT) });
    if (more && this.before != null) params.set("before", String(this.before));
    const result = await request("GET", "api/search?" + params.toString());
    if (asked !== this.asked) return;
    if (!ok(result)) {
      // Search finds nothing with a 200: a 404 means a server without search.
      this.showStatus(result.status === 404 ? msg("search.unavailable") : problem(result));
      if (!more) this.list.replaceChildren();
      this.moreButton.hidden = true;
      return;
    }
    const results = Array.isArray(result.body.results) ? result.body.results : [];
    if (!more) this.list.replaceChildren();
    this.list.append(...results.map((found) => this.row(found)));
    if (results.length) this.before = results[results.length - 1].message_id;
    this.moreButton.hidden = results.length < LIMIT;
    const count = this.list.children.length;
    this.showStatus(count ? msg("search.found", { count }) : msg("search.none", { query }));
  }

  row(found) {
    const item = el("li");
    const link = el("a", "result");
    link.href = "?c=" + encodeURIComponent(found.client_id);
    link.dataset.clientId = found.client_id;
    link.dataset.messageId = String(found.message_id);
    const head = el("span", "result-head");
    const title = el("span", "result-title");
    const date = timeElement(found.created_at, "result-date");
    head.append(title, date);
    const snippet = el("span", "result-snippet");
    const who = el("span", "result-who");
    snippet.append(who, " ");
    for (const [text, matched] of parts(found.snippet)) snippet.append(matched ? el("mark", null, text) : text);
    live(link, () => {
      title.textContent = titleOf(found);
      who.textContent = t(found.role === "user" ? "search.you" : "search.bot");
    });
    link.append(head, snippet);
    link.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey || event.button !== 0) return; // another tab
      event.preventDefault();
      this.onOpen(found.client_id, Number(found.message_id));
    });
    item.append(link);
    return item;
  }

  showStatus(text) {
    live(this.status, () => {
      this.status.textContent = typeof text === "function" ? text() : text;
    });
  }

  /** Up and down move between the results; up from the first goes back to the box. */
  arrows(event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = [...this.list.querySelectorAll(".result")];
    const at = links.indexOf(document.activeElement);
    if (at < 0) return;
    event.preventDefault();
    const next = at + (event.key === "ArrowDown" ? 1 : -1);
    (next < 0 ? this.input : links[Math.min(next, links.length - 1)]).focus();
  }
}
