// The conversation view. Every piece of user or model text goes in through textContent (or as a Text node),
// never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const NEAR_BOTTOM_PX = 96;
const clock = new Intl.DateTimeFormat([], { hour: "numeric", minute: "2-digit" });
const longDate = new Intl.DateTimeFormat([], { dateStyle: "full", timeStyle: "short" });
const dayName = new Intl.DateTimeFormat([], { weekday: "long", day: "numeric", month: "long" });

/** An element with a class and text; the text is never interpreted as markup. */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/** An icon from the page's SVG sprite (`<symbol id="i-NAME">`). */
export function icon(name, className = "icon-svg") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", className);
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const use = document.createElementNS(SVG, "use");
  use.setAttribute("href", "#i-" + name);
  svg.append(use);
  return svg;
}

function parseTime(iso) {
  const date = iso ? new Date(iso) : new Date();
  return Number.isNaN(date.getTime()) ? new Date() : date;
}

function dayKey(date) {
  return date.getFullYear() + "-" + date.getMonth() + "-" + date.getDate();
}

function dayLabel(date) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(date) === dayKey(today)) return "Today";
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  return dayName.format(date);
}

function seconds(ms) {
  return ms >= 1000 ? (ms / 1000).toFixed(1) + " s" : Math.round(ms) + " ms";
}

const SOURCE_LABEL = { voice: "voice", upload: "audio file" };
const STATE_LABEL = {
  pending: "Waiting for the connection…",
  sending: "Sending…",
  recording: "Recording…",
  uploading: "Uploading…",
  transcribing: "Transcribing…",
  failed: "Not sent",
  interrupted: "Interrupted",
  error: "Incomplete",
};

/** One message in the view. */
export class Message {
  constructor(kind, text, { source = "text", created = null, id = null, state = null } = {}) {
    this.kind = kind;
    this.article = el("article", "msg " + kind);
    this.article.message = this; // so a later event (audio_done) can find this message by its id
    this.timings = {};
    this.article.dataset.role = kind;
    this.article.dataset.source = source;
    this.bubble = el("div", "bubble");
    this.body = el("p", "text", text);
    this.bubble.append(this.body);
    this.meta = el("div", "meta");
    this.sourceTag = el("span", "source");
    this.time = el("time");
    this.stateTag = el("span", "state");
    this.meta.append(this.sourceTag, this.time, this.stateTag);
    this.article.append(this.bubble, this.meta);
    this.setSource(source);
    this.setTime(created);
    this.setState(state);
    if (id != null) this.article.dataset.messageId = String(id);
  }

  get text() {
    return this.body.textContent;
  }

  setText(text) {
    this.body.textContent = text;
  }

  append(text) {
    this.body.append(text); // a string becomes a Text node
  }

  setSource(source) {
    this.article.dataset.source = source || "text";
    this.sourceTag.replaceChildren();
    const label = SOURCE_LABEL[source];
    if (label) this.sourceTag.append(icon(source === "voice" ? "mic" : "file", "icon-svg small"), label);
  }

  setTime(created) {
    const date = parseTime(created);
    this.date = date;
    this.time.dateTime = date.toISOString();
    this.time.textContent = clock.format(date);
    this.time.title = longDate.format(date);
  }

  /** pending, sending, uploading, transcribing, failed, interrupted, error — or null when settled. */
  setState(state, label) {
    if (state) this.article.dataset.state = state;
    else delete this.article.dataset.state;
    this.stateTag.textContent = state ? label || STATE_LABEL[state] || "" : "";
  }

  confirm({ message_id: id, created_at: created, source }) {
    if (id != null) this.article.dataset.messageId = String(id);
    if (created) this.setTime(created);
    if (source) this.setSource(source);
    this.setState(null);
  }

  /** An upload's progress bar (0..1); records the highest value seen for whoever wants to know. */
  progress(fraction) {
    if (!this.bar) {
      this.bar = el("progress", "upload-progress");
      this.bar.max = 1;
      this.bar.setAttribute("aria-label", "Upload progress");
      this.bubble.append(this.bar);
    }
    this.bar.value = fraction;
    const best = Math.max(fraction, Number(this.article.dataset.progressMax || 0));
    this.article.dataset.progressMax = String(best);
  }

  hideProgress() {
    if (this.bar) this.bar.hidden = true;
  }

  /** A small bar of where the turn's time went: speech-to-text | LLM | speech. Timings that arrive later (the
   * speech's own, with audio_done) are added to those already shown. */
  setTimings(more) {
    if (!more) return;
    const timings = Object.assign(this.timings, more);
    const parts = [
      ["stt", "STT", "speech-to-text", timings.stt_ms],
      ["llm", "LLM", "language model", timings.llm_total_ms],
      ["tts", "TTS", "speech synthesis (first sentence)", timings.tts_first_audio_ms],
    ].filter((part) => typeof part[3] === "number");
    if (!parts.length) return;
    const total = parts.reduce((sum, part) => sum + part[3], 0) || 1;
    const box = el("div", "timing");
    const bar = el("span", "timing-bar");
    bar.setAttribute("aria-hidden", "true");
    for (const [key, , , ms] of parts) {
      const segment = el("span", "seg " + key);
      segment.style.flexGrow = String(Math.max(ms / total, 0.04));
      bar.append(segment);
    }
    const short = parts.map(([, name, , ms]) => name + " " + seconds(ms));
    const long = parts.map(([, , name, ms]) => name + " " + seconds(ms));
    if (typeof timings.first_audio_ms === "number") {
      short.push("first sound " + seconds(timings.first_audio_ms));
      long.push("first sound after " + seconds(timings.first_audio_ms));
    }
    box.append(bar, el("span", "timing-text", short.join(" · ")));
    box.title = "Where this reply's time went: " + long.join(", ");
    this.article.querySelector(".timing")?.remove();
    this.article.append(box);
  }

  /** Not delivered: say why, in the bubble itself. */
  fail(text, code) {
    this.hideProgress();
    this.setState("failed", "Not sent");
    this.article.querySelector(".reason")?.remove();
    const reason = el("p", "reason", text);
    reason.setAttribute("role", "alert");
    if (code) reason.dataset.code = code;
    this.bubble.append(reason);
  }

  remove() {
    this.article.remove();
  }
}

/** The scrolling list of messages, day dividers and command results. */
export class Conversation {
  constructor({ log, empty, jump, top, onPick }) {
    this.log = log;
    this.top = top; // stays the first child ("load earlier messages")
    this.empty = empty;
    this.jump = jump;
    this.onPick = onPick || (() => {});
    this.stick = true;
    this.streaming = null;
    this.typing = null;
    this.lastDay = null;
    log.addEventListener("scroll", () => {
      this.stick = this.nearBottom();
      if (this.stick) this.jump.hidden = true;
    }, { passive: true });
    jump.addEventListener("click", () => this.scrollToEnd(true));
    // The phone keyboard or a window resize shrinks the view: keep the newest message in sight.
    new ResizeObserver(() => {
      if (this.stick) this.log.scrollTop = this.log.scrollHeight;
    }).observe(log);
  }

  nearBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < NEAR_BOTTOM_PX;
  }

  /** Follow new content only when the reader is already at the end; otherwise offer a jump button. */
  follow(force = false) {
    if (force || this.stick) this.scrollToEnd();
    else this.jump.hidden = false;
  }

  scrollToEnd(smooth = false) {
    this.log.scrollTo({ top: this.log.scrollHeight, behavior: smooth ? "smooth" : "auto" });
    this.stick = true;
    this.jump.hidden = true;
  }

  updateEmpty() {
    this.empty.hidden = this.log.querySelector(".msg, .card") !== null;
  }

  /** Replace everything with the stored history (oldest first). */
  reset(history) {
    this.log.replaceChildren(this.top);
    this.streaming = null;
    this.typing = null;
    this.lastDay = null;
    for (const m of history) this.add(this.fromStored(m), { quiet: true });
    this.updateEmpty();
    this.scrollToEnd();
  }

  /** Put earlier history above what is shown, keeping the reader's place. */
  prepend(history) {
    const before = this.log.scrollHeight - this.log.scrollTop;
    const fragment = document.createDocumentFragment();
    let day = null;
    for (const m of history) {
      const message = this.fromStored(m);
      const key = dayKey(message.date);
      if (key !== day) fragment.append(this.divider(message.date));
      day = key;
      fragment.append(message.article);
    }
    const first = this.log.querySelector(".day");
    if (first && first.dataset.day === day) first.remove();
    this.top.after(fragment);
    this.log.scrollTop = this.log.scrollHeight - before;
    this.updateEmpty();
  }

  has(messageId) {
    return messageId != null && this.log.querySelector(`.msg[data-message-id="${Number(messageId)}"]`) !== null;
  }

  oldestId() {
    const first = this.log.querySelector(".msg[data-message-id]");
    return first ? Number(first.dataset.messageId) : null;
  }

  fromStored(m) {
    const kind = m.role === "user" ? "user" : "bot";
    const state = m.status === "interrupted" ? "interrupted" : m.status === "error" ? "error" : null;
    return new Message(kind, m.content, { source: m.source, created: m.created_at, id: m.id, state });
  }

  divider(date) {
    const node = el("div", "day");
    node.setAttribute("role", "separator");
    node.dataset.day = dayKey(date);
    node.append(el("span", null, dayLabel(date)));
    return node;
  }

  /** Append a message (or a card), with a day divider when the day changes. */
  add(message, { quiet = false, force = false } = {}) {
    const article = message.article || message;
    const date = message.date || new Date();
    const key = dayKey(date);
    if (key !== this.lastDay) {
      this.log.append(this.divider(date));
      this.lastDay = key;
    }
    // The typing indicator and a reply being written stay last.
    this.log.append(article);
    if (this.typing && !message.kind?.startsWith("bot")) this.log.append(this.typing);
    if (!quiet) {
      this.updateEmpty();
      this.follow(force);
    }
    return message;
  }

  user(text, options = {}) {
    return this.add(new Message("user", text, options), { force: true });
  }

  /** Show that the bot is working on an answer (until its first words arrive). */
  setTyping(on) {
    if (on && !this.typing && !this.streaming) {
      const node = el("article", "msg bot typing");
      node.setAttribute("aria-label", "The bot is writing");
      const bubble = el("div", "bubble");
      for (let i = 0; i < 3; i++) bubble.append(el("span", "dot"));
      node.append(bubble);
      this.typing = node;
      this.log.append(node);
      this.follow();
    } else if (!on && this.typing) {
      this.typing.remove();
      this.typing = null;
    }
  }

  delta(text) {
    this.setTyping(false);
    if (!this.streaming) {
      this.streaming = this.add(new Message("bot", ""));
      this.streaming.article.classList.add("streaming");
      this.streaming.article.setAttribute("aria-busy", "true");
    }
    const stick = this.stick;
    this.streaming.append(text);
    if (stick) this.scrollToEnd();
    else this.jump.hidden = false;
  }

  reply(event) {
    this.setTyping(false);
    const message = this.streaming || this.add(new Message("bot", ""));
    this.streaming = null;
    message.article.classList.remove("streaming");
    message.article.removeAttribute("aria-busy");
    message.setText(event.text);
    message.setTime(null);
    message.confirm({ message_id: event.message_id });
    if (event.status === "error") message.setState("error");
    message.setTimings(event.timings);
    this.follow();
    return message;
  }

  /** A spoken reply finished: its speech timings join the reply's. */
  speechDone(event) {
    if (event.message_id == null) return;
    const article = this.log.querySelector(`.msg[data-message-id="${Number(event.message_id)}"]`);
    article?.message?.setTimings(event.timings);
  }

  /** The reply was cut where the user stopped hearing it. */
  interrupted(event) {
    this.setTyping(false);
    let message = this.streaming;
    let article = message ? message.article : null;
    if (!article && event.message_id != null) {
      article = this.log.querySelector(`.msg[data-message-id="${Number(event.message_id)}"]`);
    }
    this.streaming = null;
    if (!article) return;
    article.classList.remove("streaming");
    article.removeAttribute("aria-busy");
    article.dataset.state = "interrupted";
    const body = article.querySelector(".text");
    if (event.text) body.textContent = event.text;
    const state = article.querySelector(".state");
    if (state) state.textContent = STATE_LABEL.interrupted;
    if (event.message_id != null) article.dataset.messageId = String(event.message_id);
  }

  /** A failed turn: whatever was streamed stays, marked incomplete. */
  abandonReply() {
    this.setTyping(false);
    if (this.streaming) {
      this.streaming.article.classList.remove("streaming");
      this.streaming.article.removeAttribute("aria-busy");
      this.streaming.setState("error");
      this.streaming = null;
    }
  }

  /** A typed command, shown as the user's (not stored) line. */
  commandLine(text, state = null) {
    const message = new Message("user", text, { state });
    message.article.classList.add("cmd");
    return this.add(message, { force: true });
  }

  /** A command's answer, as a card. */
  command(event) {
    const card = el("section", "card command");
    card.dataset.command = event.name || "";
    card.setAttribute("aria-label", "/" + (event.name || "command") + " result");
    const title = el("h2", "card-title");
    title.append(icon("terminal", "icon-svg small"), "/" + (event.name || ""));
    card.append(title);
    const data = event.data || {};
    const rich = this.commandBody(event.name, data);
    card.append(rich || el("p", "text", event.text));
    this.add(card);
    return card;
  }

  commandBody(name, data) {
    if (name === "help" && Array.isArray(data.commands)) {
      const list = el("ul", "cmd-list");
      for (const c of data.commands) {
        const item = el("li");
        const pick = el("button", "cmd-name", "/" + c.name);
        pick.type = "button";
        pick.title = "Put /" + c.name + " in the message box";
        pick.addEventListener("click", () => this.onPick("/" + c.name + " "));
        item.append(pick, el("span", "cmd-summary", c.summary));
        list.append(item);
      }
      return list;
    }
    if (name === "status" && data.llm) {
      return facts([
        ["Status", data.status],
        ["Version", data.version],
        ["Up for", seconds((data.uptime_s || 0) * 1000)],
        ["Connections", String(data.active_connections)],
        ["Language model", engine(data.llm) + (data.llm_available ? "" : " (unavailable)")],
        ["Speech-to-text", engine(data.stt)],
        ["Spoken replies", engine(data.tts)],
        ["Database", data.db_connected ? "connected" : "unreachable"],
      ]);
    }
    if (name === "info" && data.engines) {
      return facts([
        ["Conversation", data.client_id],
        ["Messages", String(data.message_count)],
        ["Started", data.first_activity ? longDate.format(new Date(data.first_activity)) : "—"],
        ["Last activity", data.last_activity ? longDate.format(new Date(data.last_activity)) : "—"],
        ["Open tabs", String(data.open_tabs)],
        ["Language model", engine(data.engines.llm)],
        ["Speech-to-text", engine(data.engines.stt)],
        ["Spoken replies", engine(data.engines.tts)],
      ]);
    }
    return null;
  }

  /** A problem, in plain words (the code goes in small print for whoever reports it). */
  error(text, code) {
    const card = el("section", "card error");
    card.setAttribute("role", "alert");
    card.dataset.code = code || "";
    const line = el("p", "text");
    line.append(icon("alert", "icon-svg small"), text);
    card.append(line);
    if (code) card.append(el("span", "code", code));
    this.add(card);
    return card;
  }

  clear() {
    this.log.replaceChildren(this.top);
    this.top.hidden = true;
    this.streaming = null;
    this.typing = null;
    this.lastDay = null;
    this.updateEmpty();
  }
}

function engine(info) {
  if (!info || !info.engine || info.engine === "none") return "off";
  return info.engine + (info.model ? " · " + info.model : "") + (info.ready === false ? " (not ready)" : "");
}

function facts(rows) {
  const list = el("dl", "facts");
  for (const [name, value] of rows) {
    list.append(el("dt", null, name), el("dd", null, value == null ? "—" : String(value)));
  }
  return list;
}
