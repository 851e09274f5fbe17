// The conversation list: the user's conversations (in mode "none", everyone's), most recent activity first, a page
// at a time (more as the list is scrolled), the open one marked; each can be opened, renamed in place, exported or
// deleted, and the list's foot exports them all or imports one. Titles are shown as text, never parsed as HTML.
"use strict";

import { ok, problem, request } from "./api.js";
import { el, icon } from "./conversation.js";
import { confirmAction } from "./dialogs.js";
import { formatDate, live, msg, t } from "./i18n.js";
import { RowMenu } from "./rowmenu.js";
import { exportConversation, exportEverything, importConversation } from "./transfer.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const MAX_PAGE = 500; // the server's largest page: a refresh asks for everything shown in one go, up to this
const REFRESH_AFTER_MS = 600; // after a reply: the list's order (and a new conversation's first-words title)
const TITLE_AGAIN_MS = 3000; // still untitled then: look once more
const CLOCK = { hour: "numeric", minute: "2-digit" };
const DAY = { day: "numeric", month: "short" };
const DAY_YEAR = { day: "numeric", month: "short", year: "numeric" };
const LONG = { dateStyle: "full", timeStyle: "short" };

function parse(iso) {
  const date = iso ? new Date(iso) : null;
  return date && !Number.isNaN(date.getTime()) ? date : null;
}

/** A time as a list shows it: the time today, the day this year, else the day and year. */
export function shortDate(date) {
  const now = new Date();
  if (date.toDateString() === now.toDateString()) return formatDate(date, CLOCK);
  return formatDate(date, date.getFullYear() === now.getFullYear() ? DAY : DAY_YEAR);
}

/** A `<time>` showing `iso` briefly, in full on hover; empty when there is no time. */
export function timeElement(iso, className) {
  const node = el("time", className);
  const date = parse(iso);
  if (!date) return node;
  node.dateTime = date.toISOString();
  live(node, () => {
    node.textContent = shortDate(date);
    node.title = formatDate(date, LONG);
  });
  return node;
}

/** The words a conversation is called by. */
export function titleOf(conversation) {
  return conversation?.title || t("conversations.untitled");
}

/** Whether the list shows it: an empty conversation nobody named (a "New" never used) only while it is open. */
function worthShowing(conversation, current) {
  return Boolean(conversation.title || conversation.last_message_at || conversation.client_id === current);
}

export class ConversationList {
  /** `current()` is the open conversation's id; `onOpen(id)` opens one; `onGone(id, {elsewhere, next})` says one
   * was deleted (here, or `elsewhere`), `next` being the most recent other; `onChange()` follows any change (the
   * page's title); `notify(text)` says something in the notice (a string or msg()), `quiet()` takes it down. */
  constructor({ current, onOpen, onGone, onChange, notify, quiet }) {
    this.current = current;
    this.onOpen = onOpen;
    this.onGone = onGone;
    this.onChange = onChange;
    this.notify = notify;
    this.quiet = quiet;
    this.scroller = $("conversations");
    this.list = $("conversation-list");
    this.status = $("conversation-status");
    this.moreButton = $("conversation-more");
    this.importFile = $("import-file");
    this.items = []; // as the server listed them, most recent first
    this.rows = new Map(); // client_id -> <li>
    this.nextOffset = null;
    this.loaded = false;
    this.loadingMore = false;
    this.generation = 0; // a new list (signed in as someone else): late answers for the old one are dropped
    this.deleting = new Set(); // deleted from this page: their conversation_deleted event is no news
    this.renaming = false;
    this.stale = false; // a refresh waited for a rename to finish
    this.timers = [];
    this.menu = new RowMenu($("conversation-menu"), (action, row) => this.act(action, row));

    this.moreButton.addEventListener("click", () => this.more());
    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) this.more();
    }, { root: this.scroller, rootMargin: "0px 0px 160px 0px" }).observe(this.moreButton);
    this.scroller.addEventListener("scroll", () => this.menu.follow(this.scroller), { passive: true });
    this.list.addEventListener("keydown", (event) => this.arrows(event));
    $("export-all").addEventListener("click", (event) => this.exportAll(event.currentTarget));
    $("import").addEventListener("click", () => this.importFile.click());
    this.importFile.addEventListener("change", () => {
      const file = this.importFile.files?.[0];
      this.importFile.value = "";
      if (file) this.importOne(file);
    });
  }

  // ---- the list ------------------------------------------------------------------------------------------------

  /** A fresh list (signed in): the first page. */
  start() {
    this.stop();
    this.showStatus(msg("conversations.loading"));
    this.refresh();
  }

  /** Forgets the list (signed out: the next person sees none of it). */
  stop() {
    this.generation += 1;
    this.menu.close(false);
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
    this.items = [];
    this.rows.clear();
    this.list.replaceChildren();
    this.nextOffset = null;
    this.loaded = false;
    this.loadingMore = false;
    this.moreButton.hidden = true;
    this.showStatus("");
  }

  /** Asks the server again for everything shown (its order, titles, what other tabs made or deleted). */
  async refresh() {
    if (this.renaming) {
      this.stale = true;
      return;
    }
    const generation = this.generation;
    const limit = Math.min(MAX_PAGE, Math.max(PAGE, this.items.length));
    const result = await request("GET", `api/conversations?limit=${limit}&offset=0`);
    if (generation !== this.generation) return;
    if (!ok(result)) {
      if (!this.loaded) this.showStatus(problem(result));
      return;
    }
    this.items = Array.isArray(result.body.conversations) ? result.body.conversations : [];
    this.nextOffset = result.body.next_offset ?? null;
    this.loaded = true;
    this.render();
  }

  /** The next page, when the end of the list comes into sight (or its button is pressed). */
  async more() {
    if (this.loadingMore || this.nextOffset == null || !this.loaded) return;
    const generation = this.generation;
    this.loadingMore = true;
    const result = await request("GET", `api/conversations?limit=${PAGE}&offset=${this.nextOffset}`);
    if (generation !== this.generation) return;
    this.loadingMore = false;
    if (!ok(result)) {
      this.notify(problem(result));
      return;
    }
    const known = new Set(this.items.map((c) => c.client_id));
    const page = Array.isArray(result.body.conversations) ? result.body.conversations : [];
    this.items.push(...page.filter((c) => !known.has(c.client_id)));
    this.nextOffset = result.body.next_offset ?? null;
    this.render();
    // Still in sight (a tall screen, a short page): the observer says nothing new, so look again.
    requestAnimationFrame(() => {
      if (!this.moreButton.hidden && this.inSight(this.moreButton)) this.more();
    });
  }

  inSight(node) {
    const box = node.getBoundingClientRect();
    const view = this.scroller.getBoundingClientRect();
    return box.height > 0 && box.top < view.bottom + 160 && box.bottom > view.top;
  }

  /** What the list shows: the server's conversations, and the open one first when the server does not know it yet. */
  shown() {
    const current = this.current();
    const shown = this.items.filter((c) => worthShowing(c, current));
    if (current && !shown.some((c) => c.client_id === current)) {
      shown.unshift({ client_id: current, title: null, created_at: null, last_message_at: null });
    }
    return shown;
  }

  render() {
    const focused = document.activeElement;
    const shown = this.shown();
    const keep = new Set(shown.map((c) => c.client_id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    shown.forEach((conversation, index) => {
      let row = this.rows.get(conversation.client_id);
      if (row) {
        this.fill(row, conversation);
      } else {
        row = this.row(conversation);
        this.rows.set(conversation.client_id, row);
      }
      const there = this.list.children[index];
      if (there !== row) this.list.insertBefore(row, there || null);
    });
    // A row moved up or down (it had a new message) keeps the focus it had.
    if (focused instanceof HTMLElement && focused !== document.activeElement && focused.isConnected) {
      focused.focus({ preventScroll: true });
    }
    this.moreButton.hidden = this.nextOffset == null;
    this.showStatus(shown.length ? "" : this.loaded ? msg("conversations.none") : msg("conversations.loading"));
    this.onChange();
  }

  row(conversation) {
    const row = el("li", "conv");
    row.dataset.clientId = conversation.client_id;
    const link = el("a", "conv-link");
    link.href = "?c=" + encodeURIComponent(conversation.client_id);
    link.append(el("span", "conv-title"), el("time", "conv-date"));
    link.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey || event.button !== 0) return; // another tab
      event.preventDefault();
      this.onOpen(row.conversation.client_id);
    });
    const more = el("button", "tool small conv-more");
    more.type = "button";
    more.setAttribute("aria-expanded", "false");
    more.setAttribute("aria-controls", "conversation-menu");
    more.append(icon("more"));
    more.addEventListener("click", () => this.menu.toggle(row, more));
    row.append(link, more);
    this.fill(row, conversation);
    return row;
  }

  /** Writes `conversation` into its row: title, time, whether it is the open one. */
  fill(row, conversation) {
    row.conversation = conversation;
    const link = row.querySelector(".conv-link");
    const title = link.querySelector(".conv-title");
    const when = link.querySelector(".conv-date");
    const more = row.querySelector(".conv-more");
    const date = parse(conversation.last_message_at || conversation.created_at);
    row.classList.toggle("untitled", !conversation.title);
    if (conversation.client_id === this.current()) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
    if (date) when.dateTime = date.toISOString();
    else when.removeAttribute("datetime");
    live(row, () => {
      title.textContent = titleOf(conversation);
      when.textContent = date ? shortDate(date) : "";
      when.title = date ? formatDate(date, LONG) : "";
      more.setAttribute("aria-label", t("conversations.actions", { title: titleOf(conversation) }));
      more.title = t("conversations.actions", { title: titleOf(conversation) });
    });
  }

  showStatus(text) {
    live(this.status, () => {
      this.status.textContent = typeof text === "function" ? text() : text;
    });
    this.status.hidden = !text;
  }

  /** Up and down move between the conversations. */
  arrows(event) {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = [...this.list.querySelectorAll(".conv-link:not([hidden])")];
    const at = links.indexOf(document.activeElement);
    if (at < 0) return;
    event.preventDefault();
    links[Math.max(0, Math.min(links.length - 1, at + (event.key === "ArrowDown" ? 1 : -1)))].focus();
  }

  // ---- what the page tells the list ------------------------------------------------------------------------------

  /** Another conversation is open: it is marked (and listed, if the server does not know it yet). */
  setCurrent() {
    this.menu.close(false);
    this.render();
  }

  /** The title of `id` (null when it has none, or is not listed). */
  titleFor(id) {
    return this.items.find((c) => c.client_id === id)?.title ?? null;
  }

  /** The model titled a conversation, or it was renamed (here or in another tab). */
  titled(id, title) {
    const conversation = this.items.find((c) => c.client_id === id);
    if (!conversation) {
      this.refresh();
      return;
    }
    conversation.title = title;
    this.render();
  }

  /** A reply in the open conversation: it moves to the top, and a new one gets its first-words title (which the
   * server stores without an event). */
  replied() {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [setTimeout(() => this.refresh(), REFRESH_AFTER_MS)];
    if (!this.titleFor(this.current())) {
      this.timers.push(setTimeout(() => {
        if (!this.titleFor(this.current())) this.refresh();
      }, TITLE_AGAIN_MS));
    }
  }

  /** The socket says the open conversation was deleted; from another tab unless this page is deleting it. */
  deleted(id) {
    if (this.deleting.has(id)) return; // this page deleted it: its own request says what follows
    const next = this.firstOther(id);
    this.drop(id);
    this.onGone(id, { elsewhere: true, next });
  }

  /** The most recent conversation shown other than `id`, or null. */
  firstOther(id) {
    return this.shown().find((c) => c.client_id !== id && (c.title || c.last_message_at))?.client_id ?? null;
  }

  drop(id) {
    this.items = this.items.filter((c) => c.client_id !== id);
    this.render();
  }

  // ---- one conversation's menu -------------------------------------------------------------------------------

  act(action, row) {
    const conversation = row.conversation;
    if (action === "rename") this.rename(row);
    else if (action === "delete") this.remove(row);
    else if (action === "json" || action === "md" || action === "txt") this.exportOne(conversation.client_id, action);
  }

  /** The title becomes a text field: Enter (or leaving it) saves, Escape keeps the old one. */
  rename(row) {
    const conversation = row.conversation;
    const link = row.querySelector(".conv-link");
    const more = row.querySelector(".conv-more");
    const input = el("input", "conv-rename");
    input.type = "text";
    input.maxLength = 200;
    input.autocomplete = "off";
    input.value = conversation.title || "";
    input.setAttribute("aria-label", t("conversations.rename-field", { title: titleOf(conversation) }));
    link.hidden = true;
    more.hidden = true;
    link.before(input);
    this.renaming = true;
    input.focus();
    input.select();
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      input.remove();
      link.hidden = false;
      more.hidden = false;
      this.renaming = false;
      link.focus();
      if (save && title && title !== (conversation.title || "")) await this.saveTitle(conversation, title);
      if (this.stale) {
        this.stale = false;
        this.refresh();
      }
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.isComposing) {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault(); // the drawer stays open
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
  }

  async saveTitle(conversation, title) {
    const before = conversation.title;
    conversation.title = title; // at once; the server's cleaned title follows
    this.render();
    const result = await request("PATCH", `api/conversations/${encodeURIComponent(conversation.client_id)}`, { title });
    if (ok(result)) {
      conversation.title = result.body.title ?? title;
    } else {
      conversation.title = before;
      this.notify(problem(result));
    }
    this.render();
  }

  async remove(row) {
    const conversation = row.conversation;
    const id = conversation.client_id;
    const sure = await confirmAction(
      t("conversations.delete-confirm", { title: titleOf(conversation) }), "conversations.delete",
    );
    if (!sure) return;
    this.deleting.add(id);
    const result = await request("DELETE", `api/conversations/${encodeURIComponent(id)}`);
    if (!ok(result) && result.status !== 404) { // 404: deleted already, which is what was wanted
      this.deleting.delete(id);
      this.notify(problem(result));
      return;
    }
    setTimeout(() => this.deleting.delete(id), 10000);
    const links = [...this.list.querySelectorAll(".conv-link")];
    const at = links.indexOf(row.querySelector(".conv-link"));
    const next = this.firstOther(id);
    this.drop(id);
    this.onGone(id, { elsewhere: false, next });
    // The focus was on the row's button, gone with it: the row now in its place (or the one above) takes it.
    if (!this.list.contains(document.activeElement)) {
      const rest = [...this.list.querySelectorAll(".conv-link")];
      (rest[Math.min(at, rest.length - 1)] || $("search")).focus();
    }
    this.notify(msg("conversations.deleted", { title: titleOf(conversation) }));
  }

  // ---- export and import ---------------------------------------------------------------------------------------

  async exportOne(id, format) {
    const failed = await exportConversation(id, format);
    if (failed) this.notify(failed);
  }

  async exportAll(button) {
    if (button.getAttribute("aria-busy") === "true") return;
    button.setAttribute("aria-busy", "true");
    this.notify(msg("conversations.exporting"));
    const failed = await exportEverything();
    button.removeAttribute("aria-busy");
    if (failed) this.notify(failed);
    else this.quiet();
  }

  /** A JSON export (of this server or another) becomes a new conversation, which opens. */
  async importOne(file) {
    const { made, failed } = await importConversation(file);
    if (failed) {
      this.notify(failed);
      return;
    }
    this.items.unshift(made);
    this.onOpen(made.client_id);
    this.notify(msg("conversations.imported", { title: titleOf(made) }));
  }
}
