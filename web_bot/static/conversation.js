// The conversation view. Every piece of user or model text goes in through textContent (or as a Text node),
// never parsed as HTML.
"use strict";

import { formatDate, formatNumber, live, msg, resolve, t } from "./i18n.js";

const SVG = "http://www.w3.org/2000/svg";
const NEAR_BOTTOM_PX = 96;
const CLOCK = { hour: "numeric", minute: "2-digit" };
const LONG_DATE = { dateStyle: "full", timeStyle: "short" };
const DAY_NAME = { weekday: "long", day: "numeric", month: "long" };

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
  if (dayKey(date) === dayKey(today)) return t("day.today");
  if (dayKey(date) === dayKey(yesterday)) return t("day.yesterday");
  return formatDate(date, DAY_NAME);
}

function seconds(ms) {
  if (ms < 1000) return t("unit.milliseconds", { value: formatNumber(Math.round(ms)) });
  return t("unit.seconds", { value: formatNumber(ms / 1000, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) });
}

/** How long the server has been up: the largest unit, and the next one below it when there is one. */
function uptime(total) {
  const s = Math.max(0, Math.floor(total));
  const [days, hours, minutes] = [Math.floor(s / 86400), Math.floor(s / 3600) % 24, Math.floor(s / 60) % 60];
  const parts = days ? [["duration.days", days], ["duration.hours", hours]]
    : hours ? [["duration.hours", hours], ["duration.minutes", minutes]]
      : minutes ? [["duration.minutes", minutes]] : [["duration.seconds", s]];
  return parts.filter(([, count], i) => i === 0 || count).map(([key, count]) => t(key, { count })).join(" ");
}

const SOURCE_LABEL = { voice: "source.voice", upload: "source.upload" };
const STATE_LABEL = {
  pending: "state.pending",
  sending: "state.sending",
  recording: "state.recording",
  uploading: "state.uploading",
  transcribing: "state.transcribing",
  failed: "state.failed",
  interrupted: "state.interrupted",
  error: "state.error",
};

/** One message in the view; `lang` is the language of its text, when the server knows it; `recording` is the id
 * of a message whose recording the server keeps (the user's own voice), which gets a play button. */
export class Message {
  constructor(kind, text, {
    source = "text", created = null, id = null, state = null, lang = null, recording = null,
  } = {}) {
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
    this.setLanguage(lang);
    if (id != null) this.article.dataset.messageId = String(id);
    if (recording != null) this.addPlay(recording);
  }

  /** A small play button; pressed, it becomes the browser's own player (which can seek: the server answers ranges). */
  addPlay(messageId) {
    const play = el("button", "play");
    play.type = "button";
    const label = el("span");
    play.append(icon("play", "icon-svg small"), label);
    live(play, () => {
      label.textContent = t("recording.play");
      play.setAttribute("aria-label", t("recording.name"));
    });
    play.addEventListener("click", () => {
      const audio = document.createElement("audio");
      audio.className = "recording";
      audio.controls = true;
      audio.preload = "none";
      audio.src = new URL(`api/recordings/${encodeURIComponent(messageId)}`, document.baseURI).href;
      live(audio, () => audio.setAttribute("aria-label", t("recording.name")));
      audio.addEventListener("error", () => {
        const gone = el("p", "recording-gone");
        live(gone, () => {
          gone.textContent = t("recording.gone");
        });
        audio.replaceWith(gone);
      }, { once: true });
      this.bubble.after(audio);
      play.remove();
      audio.focus();
      audio.play().catch(() => {
        // the browser wants another gesture first: its own play button is right there
      });
    });
    this.meta.append(play);
  }

  get text() {
    return this.body.textContent;
  }

  setText(text) {
    this.body.textContent = text;
  }

  /** The language of the text (so a screen reader pronounces it right); unknown: the page's. */
  setLanguage(lang) {
    if (lang) this.body.lang = lang;
    else this.body.removeAttribute("lang");
  }

  append(text) {
    this.body.append(text); // a string becomes a Text node
  }

  setSource(source) {
    this.article.dataset.source = source || "text";
    const label = SOURCE_LABEL[source];
    live(this.sourceTag, () => {
      this.sourceTag.replaceChildren();
      if (label) this.sourceTag.append(icon(source === "voice" ? "mic" : "file", "icon-svg small"), t(label));
    });
  }

  setTime(created) {
    const date = parseTime(created);
    this.date = date;
    this.time.dateTime = date.toISOString();
    live(this.time, () => {
      this.time.textContent = formatDate(date, CLOCK);
      this.time.title = formatDate(date, LONG_DATE);
    });
  }

  /** pending, sending, uploading, transcribing, failed, interrupted, error — or null when settled; `label`
   * (a string or a msg()) says more than the state's own words. */
  setState(state, label) {
    if (state) this.article.dataset.state = state;
    else delete this.article.dataset.state;
    live(this.stateTag, () => {
      const words = label || (STATE_LABEL[state] ? msg(STATE_LABEL[state]) : "");
      this.stateTag.textContent = state ? resolve(words) : "";
    });
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
      live(this.bar, () => this.bar.setAttribute("aria-label", t("upload.progress")));
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
      ["stt", "timing.stt", "timing.stt-long", timings.stt_ms],
      ["llm", "timing.llm", "timing.llm-long", timings.llm_total_ms],
      ["tts", "timing.tts", "timing.tts-long", timings.tts_first_audio_ms],
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
    const words = parts.map(([, short, long, ms]) => [short, long, ms]);
    if (typeof timings.first_audio_ms === "number") {
      words.push(["timing.first-sound", "timing.first-sound-long", timings.first_audio_ms]);
    }
    const text = el("span", "timing-text");
    box.append(bar, text);
    live(box, () => {
      text.textContent = words.map(([short, , ms]) => t(short, { time: seconds(ms) })).join(" · ");
      const long = words.map(([, name, ms]) => t(name, { time: seconds(ms) })).join(", ");
      box.title = t("timing.title", { parts: long });
    });
    this.article.querySelector(".timing")?.remove();
    this.article.append(box);
  }

  /** Not delivered: say why (a string or a msg()), in the bubble itself. */
  fail(text, code) {
    this.hideProgress();
    this.setState("failed");
    this.article.querySelector(".reason")?.remove();
    const reason = el("p", "reason");
    live(reason, () => {
      reason.textContent = resolve(text);
    });
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
    const recording = kind === "user" && m.has_recording ? m.id : null;
    return new Message(kind, m.content, {
      source: m.source, created: m.created_at, id: m.id, state, lang: m.language, recording,
    });
  }

  /** Scrolls to a stored message and marks it for a moment (a search result); false when it is not shown. */
  highlight(messageId) {
    const article = this.log.querySelector(`.msg[data-message-id="${Number(messageId)}"]`);
    if (!article) return false;
    this.log.querySelector(".msg.found")?.classList.remove("found");
    article.scrollIntoView({ block: "center" });
    this.stick = this.nearBottom();
    article.classList.add("found");
    article.tabIndex = -1;
    article.focus({ preventScroll: true });
    clearTimeout(this.foundTimer);
    this.foundTimer = setTimeout(() => article.classList.remove("found"), 2500);
    return true;
  }

  divider(date) {
    const node = el("div", "day");
    node.setAttribute("role", "separator");
    node.dataset.day = dayKey(date);
    const label = el("span");
    live(label, () => {
      label.textContent = dayLabel(date);
    });
    node.append(label);
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
      live(node, () => node.setAttribute("aria-label", t("typing.name")));
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

  /** Words of the reply being written; `lang` is the language it is written in, when known. */
  delta(text, lang = null) {
    this.setTyping(false);
    if (!this.streaming) {
      this.streaming = this.add(new Message("bot", "", { lang }));
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
    if (event.language) message.setLanguage(event.language);
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
    const body = article.querySelector(".text");
    if (event.text) body.textContent = event.text;
    article.message.setState("interrupted");
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
    const title = el("h2", "card-title");
    title.append(icon("terminal", "icon-svg small"), "/" + (event.name || ""));
    const data = event.data || {};
    live(card, () => {
      card.setAttribute("aria-label", t("card.result", { name: event.name || "" }));
      card.replaceChildren(title, this.commandBody(event.name, data) || el("p", "text", event.text));
    });
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
        pick.title = t("card.pick", { name: c.name });
        pick.addEventListener("click", () => this.onPick("/" + c.name + " "));
        item.append(pick, el("span", "cmd-summary", c.summary));
        list.append(item);
      }
      return list;
    }
    if (name === "status" && data.llm) {
      const llm = engine(data.llm);
      return facts([
        ["card.status", data.status],
        ["card.version", data.version],
        ["card.uptime", uptime(data.uptime_s || 0)],
        ["card.connections", formatNumber(data.active_connections)],
        ["card.llm", data.llm_available ? llm : t("card.engine-unavailable", { engine: llm })],
        ["card.stt", engine(data.stt)],
        ["card.tts", engine(data.tts)],
        ["card.database", t(data.db_connected ? "card.db-connected" : "card.db-unreachable")],
      ]);
    }
    if (name === "info" && data.engines) {
      return facts([
        ["card.conversation", data.client_id],
        ["card.messages", formatNumber(data.message_count)],
        ["card.started", data.first_activity ? formatDate(new Date(data.first_activity), LONG_DATE) : null],
        ["card.last-activity", data.last_activity ? formatDate(new Date(data.last_activity), LONG_DATE) : null],
        ["card.open-tabs", formatNumber(data.open_tabs)],
        ["card.llm", engine(data.engines.llm)],
        ["card.stt", engine(data.engines.stt)],
        ["card.tts", engine(data.engines.tts)],
      ]);
    }
    return null;
  }

  /** A problem, in plain words (a string or a msg(); the code goes in small print for whoever reports it). */
  error(text, code) {
    const card = el("section", "card error");
    card.setAttribute("role", "alert");
    card.dataset.code = code || "";
    const line = el("p", "text");
    live(line, () => line.replaceChildren(icon("alert", "icon-svg small"), resolve(text)));
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
  if (!info || !info.engine || info.engine === "none") return t("card.engine-off");
  const name = info.engine + (info.model ? " · " + info.model : "");
  return info.ready === false ? t("card.engine-not-ready", { engine: name }) : name;
}

/** Rows of [label key, value]; a missing value shows as a dash. */
function facts(rows) {
  const list = el("dl", "facts");
  for (const [key, value] of rows) {
    list.append(el("dt", null, t(key)), el("dd", null, value == null ? "—" : String(value)));
  }
  return list;
}
