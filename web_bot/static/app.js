// web-bot chat page: wires the socket, the conversation view, the list of conversations (with search, export and
// import), voice in and out, and file uploads together, behind the sign-in the server asks for (none, a password, or
// a proxy that names the user).
// Every piece of user or model text is shown through textContent, never parsed as HTML.
"use strict";

import { Account } from "./account.js";
import { ok, problem, request } from "./api.js";
import { Player, audioContext, unlockOnGesture } from "./audio.js";
import { CLOSE, Connection } from "./connection.js";
import { Conversation } from "./conversation.js";
import { Drawer } from "./drawer.js";
import { AUDIO_CODES, friendlyError } from "./errors.js";
import {
  formatNumber, language, languages, msg, onLanguageChange, setLanguage, startLanguage, t,
} from "./i18n.js";
import { Gate } from "./gate.js";
import { Notice } from "./notice.js";
import * as route from "./route.js";
import { Search } from "./search.js";
import { ConversationList } from "./sidebar.js";
import { Suggest } from "./suggest.js";
import { clearlyNotAudio, dropZone, uploadAudio } from "./uploads.js";
import { Voice } from "./voice.js";

const $ = (id) => document.getElementById(id);
const ID_KEY = "web-bot-client-id"; // signed in: one per username, ID_KEY + ":" + username
const VOICE_KEY = "web-bot-voice-replies";
const OUTBOX_KEY = "web-bot-outbox:";
const CLIENT_ID = /^[A-Za-z0-9_-]{1,64}$/;
const HISTORY_PAGE = 50; // what the server's welcome carries, and what "load earlier" asks for
const SEEK_PAGE = 500; // pages back to a message searched for come this big (the server's largest)
const EARLIER_NEAR_PX = 240; // scrolled this close to the top, earlier messages load by themselves
const SCROLL_INTENT_MS = 1500; // ... when the user scrolled (wheel, touch, keys, scrollbar) this recently
const BRAND = document.title;
const LIST_NOTICE = "conversations"; // the notice's key for what the list says (exports, imports, deletions)
// Errors that mean the message still marked "sending" was refused before it was stored.
const REFUSED = /^(message-too-long|empty-message|bad-message|bad-json|history-.*|internal-error|rate-limited)$/;
const AUTH_RETRY_MS = 5000; // the server could not say who is signed in: ask again after this
const DEFAULT_SETTINGS = {
  voice_replies: false, voice_available: false, speech_input: false, max_upload_mb: 16, commands: [],
};

await startLanguage(); // before anything is written on the page

const ui = {
  log: $("log"), empty: $("empty"), jump: $("jump"), earlier: $("earlier"),
  form: $("composer"), input: $("input"), suggest: $("suggest"),
  mic: $("mic"), attach: $("attach"), file: $("file"), drop: $("drop"),
  handsFree: $("hands-free"), voiceReplies: $("voice-replies"), newChat: $("new-chat"),
  conn: $("conn"), connText: $("conn-text"), connDetail: $("conn-detail"), retry: $("retry"),
  panel: $("voice-panel"), panelText: $("voice-text"), panelHint: $("voice-hint"), panelTime: $("voice-time"),
  panelStop: $("voice-stop"),
  language: $("language"), languageName: $("language-name"), languagePicker: $("language-picker"),
  sideNew: $("side-new"),
};

const storage = {
  get(key) {
    try {
      return localStorage.getItem(key);
    } catch {
      return null;
    }
  },
  set(key, value) {
    try {
      if (value == null) localStorage.removeItem(key);
      else localStorage.setItem(key, value);
    } catch {
      // storage is full or switched off: the page still works, it only forgets on reload
    }
  },
};

/** 12 random bytes in hex: randomUUID needs a secure page; this does not. */
function randomHex() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function newClientId() {
  return "c-" + randomHex();
}

/** Where this browser keeps the conversation id: two people signed in on one browser never share one. */
function idKey() {
  return session.user ? ID_KEY + ":" + session.user.username : ID_KEY;
}

function loadClientId() {
  let id = storage.get(idKey());
  if (!id || !CLIENT_ID.test(id)) {
    id = newClientId();
    storage.set(idKey(), id);
  }
  return id;
}

/** Who is signed in (user null: nobody, which mode "none" needs not), as GET /api/auth/me said. */
const session = { mode: "none", user: null, authTimer: null };

const state = {
  clientId: null, // set once the page knows who is signed in
  settings: { ...DEFAULT_SETTINGS },
  foreignCloses: 0, // 4404 closes since the last welcome (a new id each time: more than a few is a loop)
  welcomed: false, // the current socket's welcome arrived
  outbox: [], // typed while offline: {kind: "text"|"command", text, message}
  unconfirmed: [], // text messages sent, waiting for the server's user_message
  audioSlots: [], // voice messages and uploads sent, waiting for their transcription, oldest first
  turnLanguage: null, // what the server heard the current turn's speech in (its reply is in it too); typed: null
  connection: ["connecting", {}], // the socket's last state, to say again in another language
  reveal: null, // a message (searched for) to show once the conversation's history is in
  loadingEarlier: false,
  scrolledAt: 0, // when the user last scrolled the log themselves (performance.now())
};

// ---- the pieces ----------------------------------------------------------------------------------------------

const notice = new Notice({ box: $("notice"), text: $("notice-text"), action: $("notice-action"), close: $("notice-close") });
const view = new Conversation({
  log: ui.log, empty: ui.empty, jump: ui.jump, top: ui.earlier,
  onPick: (text) => {
    ui.input.value = text;
    autosize();
    ui.input.focus();
  },
});
const suggest = new Suggest(ui.input, ui.suggest);
const player = new Player({
  onSpeaking: () => {
    voice.refresh();
    refreshControls();
  },
  onBlocked: () => notice.show(msg("sound.paused"), {
    action: msg("sound.play"), onAction: () => audioContext().resume(), key: "sound",
  }),
});
const connection = new Connection(socketUrl, { onEvent, onBinary: (data) => player.frame(data), onState, onClose });
const voice = new Voice({
  ui, player, connection, notice,
  unavailable: () => (state.settings.speech_input ? null : () => friendlyError("stt-unavailable")),
  onChange: () => refreshControls(),
});
const drawer = new Drawer({
  panel: $("sidebar"), button: $("drawer-button"), close: $("drawer-close"), scrim: $("scrim"),
  behind: [document.querySelector(".bar"), document.querySelector(".stage"), document.querySelector(".dock")],
  onOpen: () => conversations.refresh(),
});
const conversations = new ConversationList({
  current: () => state.clientId,
  onOpen: (id) => pick(id),
  onGone: (id, { elsewhere, next }) => conversationGone(id, { elsewhere, next }),
  onChange: () => showTitle(),
  notify: (text) => notice.show(text, { timeout: 8000, key: LIST_NOTICE }),
  quiet: () => notice.hide(LIST_NOTICE),
});
const search = new Search({ onOpen: (id, messageId) => pick(id, messageId) });

function socketUrl() {
  const url = new URL("ws/" + encodeURIComponent(state.clientId), document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

// ---- server events -------------------------------------------------------------------------------------------

function onEvent(event) {
  switch (event.type) {
    case "welcome":
      welcome(event);
      break;
    case "user_message":
      userMessage(event);
      break;
    case "transcription":
      transcription(event);
      break;
    case "reply_delta":
      view.delta(event.text, state.turnLanguage);
      break;
    case "reply":
      view.reply({ ...event, language: event.language ?? state.turnLanguage });
      voice.setThinking(false);
      conversations.replied();
      break;
    case "reply_paused":
      player.duck(true); // the server is checking whether the user is interrupting
      break;
    case "reply_resumed":
      player.duck(false);
      break;
    case "interrupted":
      player.stop();
      view.interrupted(event);
      voice.setThinking(false);
      break;
    case "audio":
      player.announce(event); // its binary frame comes next
      break;
    case "audio_done":
      view.speechDone(event);
      break;
    case "speech_started":
      voice.speechStarted();
      break;
    case "speech_stopped":
      voice.speechStopped();
      break;
    case "command":
      view.command(event);
      if (event.name === "voice" && event.data) {
        applySettings(event.data);
        if (typeof event.data.voice_replies === "boolean") storage.set(VOICE_KEY, event.data.voice_replies ? "on" : "off");
      }
      break;
    case "cleared":
      player.stop();
      view.clear();
      state.audioSlots = [];
      state.unconfirmed = [];
      break;
    case "config":
      applySettings(event);
      break;
    case "conversation":
      conversations.titled(event.client_id, event.title);
      break;
    case "conversation_deleted":
      conversations.deleted(event.client_id);
      break;
    case "error":
      serverError(event);
      break;
    default:
      break;
  }
}

function welcome(event) {
  state.welcomed = true;
  state.foreignCloses = 0;
  applySettings(event.settings || {});
  const history = Array.isArray(event.history) ? event.history : [];
  view.reset(history);
  ui.earlier.hidden = history.length < HISTORY_PAGE;
  // Sent just before the connection dropped: delivered if the history has its id, else sent again (with it).
  const stored = new Set(history.map((m) => m.client_msg_id).filter(Boolean));
  const lost = state.unconfirmed.filter((m) => !stored.has(m.clientMsgId));
  state.unconfirmed = [];
  state.outbox.unshift(...lost.map((message) => ({ kind: "text", text: message.text, message })));
  // Uploads and voice messages still on their way stay in sight, after the history.
  for (const slot of state.audioSlots) view.add(slot.message, { quiet: true });
  flushOutbox();
  syncVoicePreference();
  syncLocale();
  voice.openStream();
  if (!conversations.titleFor(state.clientId)) conversations.refresh(); // listed now (the socket registered it)
  if (state.reveal != null) revealMessage(state.reveal);
  else fillScreen();
}

/** The server answers commands (/help, /status…) in the page's language. */
function syncLocale() {
  if (state.welcomed) connection.send({ type: "config", locale: language });
}

function userMessage(event) {
  if (event.source === "text") {
    state.turnLanguage = null; // typed: its language is not known
    // Matched by the id it was sent with, never by its text: two identical "yes" are two messages.
    const index = state.unconfirmed.findIndex((m) => m.clientMsgId && m.clientMsgId === event.client_msg_id);
    if (index >= 0) state.unconfirmed.splice(index, 1)[0].confirm(event);
    else view.user(event.text, { source: "text", created: event.created_at, id: event.message_id });
  } else {
    const slot = state.audioSlots.find((s) => s.filled && s.message.text === event.text) ||
      state.audioSlots.find((s) => s.filled);
    if (slot) {
      state.audioSlots.splice(state.audioSlots.indexOf(slot), 1);
      slot.message.confirm(event);
    } else {
      view.user(event.text, { source: event.source, created: event.created_at, id: event.message_id });
    }
  }
  view.setTyping(true);
  voice.setThinking(true);
}

/** Words heard in a voice message or an upload: they fill its bubble (or a new one, for hands-free speech). */
function transcription(event) {
  let slot = state.audioSlots.find((s) => !s.filled);
  if (!slot) {
    slot = { kind: "voice", message: view.user("", { source: "voice" }), filled: false };
    state.audioSlots.push(slot);
  }
  slot.filled = true;
  slot.message.article.classList.remove("placeholder");
  slot.message.hideProgress();
  slot.message.setText(event.text);
  slot.message.setLanguage(event.language);
  slot.message.setState(null);
  state.turnLanguage = event.language || null;
  voice.setThinking(true);
}

function serverError(event) {
  const text = () => friendlyError(event.code, event.message, {
    maxUploadMb: state.settings.max_upload_mb, retryAfterMs: Number(event.retry_after_ms) || 0,
  });
  if (AUDIO_CODES.has(event.code)) {
    // A push-to-talk stream with nothing said: the voice button explains it (quietly after a cancel).
    if (event.code === "no-speech" && voice.noSpeech()) return;
    const slot = state.audioSlots.find((s) => !s.filled && s.kind === "voice");
    if (slot) {
      state.audioSlots.splice(state.audioSlots.indexOf(slot), 1);
      slot.message.setText(t("message.voice"));
      slot.message.fail(text, event.code);
      return;
    }
    if (voice.live) {
      if (event.code === "no-speech" || event.code === "empty-audio") {
        voice.missed();
        return;
      }
      voice.stopLive();
    }
  }
  if (REFUSED.test(event.code) && state.unconfirmed.length) {
    state.unconfirmed.shift().fail(text, event.code);
    return;
  }
  // A failed turn ends the reply being written; other errors (a bad command, say) leave it streaming.
  if (/^(llm|history|internal)-/.test(event.code)) view.abandonReply();
  voice.setThinking(false);
  view.error(text, event.code);
}

function applySettings(settings) {
  Object.assign(state.settings, settings);
  suggest.setCommands(state.settings.commands);
  // "auto": the server speaks the replies to speech only, so whatever audio arrives is played.
  player.enabled = Boolean(state.settings.voice_available && state.settings.voice_replies !== false);
  if (!player.enabled) player.stop();
  refreshControls();
}

/** Whether replies are spoken now: the user's choice, or with "auto", while they use their voice. */
function voiceRepliesOn() {
  const s = state.settings;
  if (!s.voice_available) return false;
  if (s.voice_replies === "auto") {
    return voice.live || voice.recording || player.speaking || state.audioSlots.length > 0;
  }
  return Boolean(s.voice_replies);
}

/** What each button can do right now, and why not when it cannot. */
function refreshControls() {
  const s = state.settings;
  const voiceOn = voiceRepliesOn();
  ui.voiceReplies.setAttribute("aria-pressed", String(voiceOn));
  ui.voiceReplies.setAttribute("aria-disabled", String(!s.voice_available));
  ui.voiceReplies.title = t(!s.voice_available ? "voice-replies.unavailable"
    : voiceOn ? "voice-replies.on" : "voice-replies.off");
  const noSpeech = s.speech_input ? null : t("stt.off");
  ui.handsFree.setAttribute("aria-pressed", String(voice.live));
  ui.handsFree.setAttribute("aria-disabled", String(Boolean(noSpeech)));
  ui.handsFree.title = noSpeech || t(voice.live ? "hands-free.on" : "hands-free.off");
  ui.mic.setAttribute("aria-disabled", String(Boolean(noSpeech) || voice.live));
  ui.mic.title = noSpeech || t(voice.live ? "mic.hands-free" : "mic.title");
  ui.attach.setAttribute("aria-disabled", String(Boolean(noSpeech)));
  ui.attach.title = noSpeech || t("attach.title");
}

/** The server forgets a client's voice choice when it restarts; this browser remembers it. */
function syncVoicePreference() {
  const wanted = storage.get(VOICE_KEY);
  if (wanted === null || !state.settings.voice_available) return;
  if (state.settings.voice_replies !== (wanted === "on")) {
    connection.send({ type: "config", voice_replies: wanted === "on" });
  }
}

function onState(kind, info) {
  state.connection = [kind, info];
  showConnection();
  if (kind !== "open") {
    state.welcomed = false;
    view.setTyping(false);
    voice.socketClosed();
  }
}

function showConnection() {
  const [kind, info] = state.connection;
  ui.conn.dataset.state = kind === "stopped" ? "offline" : kind;
  document.body.dataset.connection = kind;
  ui.connText.textContent = t(kind === "open" ? "conn.online"
    : kind === "connecting" ? (info.attempt ? "conn.reconnecting" : "conn.connecting") : "conn.offline");
  ui.connDetail.textContent = kind === "offline"
    ? " · " + t("conn.retry-in", { count: Math.max(1, Math.ceil(info.retryInMs / 1000)) }) : "";
  ui.conn.title = kind === "offline" ? t("conn.lost") : "";
  ui.retry.hidden = kind !== "offline";
}

// ---- sending -------------------------------------------------------------------------------------------------

function submit() {
  const text = ui.input.value.trim();
  if (!text) return;
  ui.input.value = "";
  autosize();
  suggest.close();
  const kind = text.startsWith("/") ? "command" : "text";
  if (connection.open && state.welcomed) {
    if (kind === "command") {
      connection.send({ type: "text", text });
      view.commandLine(text);
    } else {
      const message = view.user(text, { state: "sending" });
      sendText(message, text);
      state.unconfirmed.push(message);
    }
  } else {
    const message = kind === "command" ? view.commandLine(text, "pending") : view.user(text, { state: "pending" });
    state.outbox.push({ kind, text, message });
    saveOutbox();
  }
}

/** A typed message goes with an id of its own (kept if it is sent again), so its user_message is found by id. */
function sendText(message, text) {
  message.clientMsgId = message.clientMsgId || "m-" + randomHex();
  connection.send({ type: "text", text, client_msg_id: message.clientMsgId });
}

function flushOutbox() {
  const items = state.outbox;
  state.outbox = [];
  for (const item of items) {
    view.add(item.message, { quiet: true });
    if (item.kind === "command") {
      connection.send({ type: "text", text: item.text });
      item.message.setState(null);
    } else {
      sendText(item.message, item.text);
      item.message.setState("sending");
      state.unconfirmed.push(item.message);
    }
  }
  saveOutbox();
  view.updateEmpty();
  if (items.length) view.scrollToEnd();
}

/** Queued text survives a reload (the voice button streams: nothing of it is queued). */
function saveOutbox() {
  const texts = state.outbox.map((item) => item.text);
  storage.set(OUTBOX_KEY + state.clientId, texts.length ? JSON.stringify(texts) : null);
}

function restoreOutbox() {
  let texts;
  try {
    texts = JSON.parse(storage.get(OUTBOX_KEY + state.clientId) || "[]");
  } catch {
    texts = [];
  }
  for (const text of Array.isArray(texts) ? texts : []) {
    if (typeof text !== "string") continue;
    const kind = text.startsWith("/") ? "command" : "text";
    const message = kind === "command" ? view.commandLine(text, "pending") : view.user(text, { state: "pending" });
    state.outbox.push({ kind, text, message });
  }
}

// ---- uploads -------------------------------------------------------------------------------------------------

async function uploadFiles(files) {
  for (const file of files) await uploadOne(file);
}

async function uploadOne(file) {
  const message = view.user(file.name || t("message.audio-file"), { source: "upload", state: "uploading" });
  message.article.classList.add("placeholder");
  const s = state.settings;
  const refuse = (code) => message.fail(() => friendlyError(code, null, { maxUploadMb: s.max_upload_mb }), code);
  if (!s.speech_input) return refuse("stt-unavailable");
  if (clearlyNotAudio(file)) return refuse("unsupported-audio");
  if (file.size === 0) return refuse("empty-audio");
  if (file.size > s.max_upload_mb * 1e6) return refuse("audio-too-large");

  message.progress(0);
  const slot = { kind: "upload", message, filled: false };
  const result = await uploadAudio(file, state.clientId, {
    onProgress: (fraction) => {
      message.progress(fraction);
      const percent = formatNumber(fraction, { style: "percent" });
      if (fraction < 1) message.setState("uploading", msg("state.uploading-percent", { percent }));
    },
    onSent: () => {
      // From here the server has it: its transcription is the next one this client gets.
      message.setState("transcribing");
      if (!state.audioSlots.includes(slot)) state.audioSlots.push(slot);
    },
  });
  message.hideProgress();
  const body = result.body || {};
  if (result.status === 200 && body.status === "success") {
    // The socket normally showed all of it already; when it is down (or slow), the response fills the gaps.
    await until(() => view.has(body.message_id), connection.open ? 3000 : 0);
    if (!slot.filled) {
      slot.filled = true;
      message.article.classList.remove("placeholder");
      message.setText(body.transcription || "");
    }
    if (state.audioSlots.includes(slot)) {
      state.audioSlots.splice(state.audioSlots.indexOf(slot), 1);
      message.confirm({ source: "upload" });
    }
    if (!view.has(body.message_id)) {
      view.reply({ text: body.response || "", message_id: body.message_id, timings: body.timings });
    }
    return;
  }
  if (state.audioSlots.includes(slot)) state.audioSlots.splice(state.audioSlots.indexOf(slot), 1);
  if (slot.filled) {
    message.setState(null); // it was transcribed: the socket already showed what went wrong with the turn
    return;
  }
  const code = body.code || (result.status === 413 ? "audio-too-large" : result.status === 0 ? "network" : "");
  const failed = code || "http-" + result.status;
  message.fail(() => friendlyError(failed, body.detail, { maxUploadMb: s.max_upload_mb }), code);
}

function until(test, ms) {
  return new Promise((resolve) => {
    const deadline = performance.now() + ms;
    const check = () => (test() || performance.now() >= deadline ? resolve() : setTimeout(check, 50));
    check();
  });
}

// ---- identity and history ------------------------------------------------------------------------------------

/** Opens conversation `id`: `how` the address follows ("push": a new history entry, "replace", or "none" when back
 * or forward moved it already); `reveal` is a message to scroll to once its history is in. */
function switchConversation(id, { how = "push", reveal = null } = {}) {
  if (id === state.clientId) {
    if (reveal != null) revealMessage(reveal);
    return;
  }
  if (voice.live) voice.stopLive();
  if (voice.recording) voice.stopRecording({ cancel: true });
  player.stop();
  state.clientId = id;
  storage.set(idKey(), id);
  state.outbox = [];
  state.unconfirmed = [];
  state.audioSlots = [];
  state.reveal = reveal;
  view.clear();
  restoreOutbox();
  if (how === "push") route.push(id);
  else if (how === "replace") route.replace(id);
  conversations.setCurrent(id);
  connection.restart();
}

/** A conversation picked in the list or the search results (on a phone the drawer closes: the chat is the point). */
function pick(id, messageId = null) {
  const narrow = drawer.narrow;
  drawer.close({ refocus: false });
  switchConversation(id, { reveal: messageId });
  if (narrow && messageId == null) ui.input.focus({ preventScroll: true });
}

function startNew() {
  const previous = state.clientId;
  drawer.close({ refocus: false });
  switchConversation(newClientId());
  notice.show(msg("new-chat.started"), {
    action: msg("new-chat.back"), onAction: () => switchConversation(previous), timeout: 8000, key: "conversation",
  });
  ui.input.focus();
}

/** A conversation was deleted: when it is the open one, the most recent other opens (or a new one). */
function conversationGone(id, { elsewhere, next }) {
  if (id !== state.clientId) return;
  switchConversation(next || newClientId(), { how: "replace" });
  if (elsewhere) notice.show(msg("conversations.deleted-elsewhere"), { timeout: 10000, key: "conversation" });
}

/** The window's title: the open conversation's, then the bot's name. */
function showTitle() {
  const title = state.clientId ? conversations.titleFor(state.clientId) : null;
  document.title = title ? [title, BRAND].join(" · ") : BRAND;
}

/** Loads a page of earlier messages (`limit` of them); true when it worked. */
async function loadEarlier({ limit = HISTORY_PAGE } = {}) {
  const before = view.oldestId();
  if (before == null || state.loadingEarlier) return false;
  const clientId = state.clientId;
  state.loadingEarlier = true;
  ui.earlier.disabled = true;
  try {
    const url = new URL(`api/history/${encodeURIComponent(clientId)}`, document.baseURI);
    url.search = new URLSearchParams({ limit: String(limit), before: String(before) }).toString();
    const response = await fetch(url);
    if (!response.ok) throw new Error(String(response.status));
    const messages = (await response.json()).messages || [];
    if (clientId !== state.clientId) return false; // another conversation opened meanwhile
    view.prepend(messages);
    ui.earlier.hidden = messages.length < limit;
    return true;
  } catch {
    if (clientId === state.clientId) notice.show(msg("log.earlier-failed"), { timeout: 5000, key: "history" });
    return false;
  } finally {
    state.loadingEarlier = false;
    ui.earlier.disabled = false;
  }
}

/** A screen taller than what the welcome brought cannot be scrolled up: load earlier messages until it can. */
async function fillScreen() {
  const clientId = state.clientId;
  while (clientId === state.clientId && !ui.earlier.hidden && ui.log.scrollHeight <= ui.log.clientHeight) {
    if (!(await loadEarlier())) return;
  }
}

/** Shows a message (a search result): pages back to it when it is older than what is shown, then marks it. */
async function revealMessage(messageId) {
  state.reveal = null;
  const clientId = state.clientId;
  while (!view.has(messageId) && !ui.earlier.hidden && clientId === state.clientId) {
    if (!(await loadEarlier({ limit: SEEK_PAGE }))) return;
  }
  if (clientId !== state.clientId) return;
  if (!view.highlight(messageId)) notice.show(msg("search.gone"), { timeout: 6000, key: "conversation" });
}

/** Scrolled near the top by the user (not by the page itself): earlier messages load, as the button would. */
function scrolled() {
  if (ui.earlier.hidden || state.loadingEarlier || ui.log.scrollTop > EARLIER_NEAR_PX) return;
  if (performance.now() - state.scrolledAt < SCROLL_INTENT_MS) loadEarlier();
}

// ---- signing in ----------------------------------------------------------------------------------------------

const gate = new Gate({ onSignedIn: (user) => enterChat(user), onRetry: () => checkAuth() });
const account = new Account({
  onSignOut: () => signOut(),
  notify: (text) => notice.show(text, { timeout: 8000, key: "account" }),
  onChanged: (user) => {
    // An admin who disabled themselves is signed out by the server; one who is no admin any more loses the menu.
    if (user.disabled) {
      checkAuth();
    } else if (session.user) {
      session.user = { ...session.user, role: user.role };
      account.show(session.user, session.mode);
    }
  },
});

function signedIn() {
  return document.body.dataset.auth === "in";
}

/** Asks the server who is signed in and shows the chat, or what stands before it; `note` says why (a msg()). */
async function checkAuth({ note = null } = {}) {
  clearTimeout(session.authTimer);
  const result = await request("GET", "api/auth/me");
  if (result.status === 404) {
    enterChat(null); // a server without accounts: everything works as it always did
    return;
  }
  if (!ok(result)) {
    showGate("unreachable");
    session.authTimer = setTimeout(() => checkAuth({ note }), AUTH_RETRY_MS);
    return;
  }
  const me = result.body;
  session.mode = me.mode || "none";
  if (session.mode === "none" || me.user) {
    enterChat(session.mode === "none" ? null : me.user);
  } else if (session.mode === "proxy") {
    showGate("proxy");
  } else {
    showGate(me.setup_needed ? "setup" : "signin", note);
  }
}

/** The chat for `user` (null in mode "none"): the conversation the address names, else the one this browser
 * used last (each user their own), the list of conversations, and the socket. */
function enterChat(user) {
  const same = signedIn() && (user?.username ?? null) === (session.user?.username ?? null);
  const someoneElse = signedIn() && !same;
  session.user = user;
  gate.hide();
  document.body.dataset.auth = "in";
  account.show(user, session.mode);
  if (same && state.clientId) return; // asked again, same answer: the socket carries on (or its caller decides)
  leaveChat();
  if (someoneElse) route.forget(); // the address named the previous user's conversation
  const named = route.named();
  state.clientId = named || loadClientId();
  if (named) storage.set(idKey(), named);
  route.remember(state.clientId);
  conversations.start();
  restoreOutbox();
  view.updateEmpty();
  refreshControls();
  connection.restart();
  if (user) ui.input.focus();
}

/** Forgets everything the page holds of the conversation: the next person at this browser sees none of it. */
function leaveChat() {
  if (voice.live) voice.stopLive();
  if (voice.recording) voice.stopRecording({ cancel: true });
  connection.stop();
  player.stop();
  view.clear();
  notice.hide();
  drawer.close({ refocus: false });
  conversations.stop();
  search.clear();
  state.clientId = null;
  state.reveal = null;
  state.settings = { ...DEFAULT_SETTINGS };
  state.outbox = [];
  state.unconfirmed = [];
  state.audioSlots = [];
  state.welcomed = false;
  state.turnLanguage = null;
  state.foreignCloses = 0;
  applySettings({});
  ui.input.value = "";
  autosize();
  suggest.close();
  ui.earlier.hidden = true;
}

function showGate(kind, note = null) {
  if (signedIn()) {
    leaveChat();
    route.forget(); // whoever signs in next starts from their own conversation
  }
  showTitle();
  session.user = null;
  account.show(null, session.mode);
  document.body.dataset.auth = "gate";
  gate.open(kind, { note });
}

async function signOut() {
  const clientId = state.clientId;
  connection.stop(); // first: the server closes this session's sockets, which must not look like an expiry
  const result = await request("POST", "api/auth/logout");
  if (!ok(result) && result.status !== 401) {
    notice.show(problem(result), { timeout: 8000, key: "account" });
    connection.restart();
    return;
  }
  storage.set(OUTBOX_KEY + clientId, null); // words typed but never sent stay with nobody on a shared browser
  showGate("signin", msg("signin.signed-out"));
}

/** A socket closed: a final close says what to do; one refused before it opened may mean the same. */
async function onClose(code, { opened, final }) {
  if (!signedIn()) return;
  if (code === CLOSE.signIn) {
    await checkAuth({ note: msg("signin.expired") });
    if (signedIn()) connection.retryLater(); // still signed in after all: not at once, and not in a loop
  } else if (code === CLOSE.foreignConversation) {
    foreignConversation();
  } else if (code === CLOSE.foreignPage) {
    notice.show(msg("error.bad-origin"), { key: "connection" });
  } else if (!final && !opened && session.mode !== "none") {
    // Refused before the handshake finished (the browser says only 1006): still signed in, and still ours?
    const me = await request("GET", "api/auth/me");
    if (!ok(me) || !signedIn()) return; // the server is away: the socket's own retries will find it back
    if (!me.body.user) {
      checkAuth({ note: msg("signin.expired") });
      return;
    }
    const history = await request("GET", `api/history/${encodeURIComponent(state.clientId)}?limit=1`);
    if (history.status === 404 && history.body.code === "not-found" && signedIn()) foreignConversation();
  }
}

/** The conversation id is another user's: start a new one (not again and again: then back off). */
function foreignConversation() {
  state.foreignCloses += 1;
  if (state.foreignCloses > 3) {
    connection.retryLater();
    return;
  }
  switchConversation(newClientId(), { how: "replace" });
  notice.show(msg("conversation.foreign"), { timeout: 8000, key: "conversation" });
}

// ---- controls ------------------------------------------------------------------------------------------------

/** The language menu: every language the page speaks, each named in itself (hidden when there is one). */
function showLanguages() {
  ui.language.replaceChildren(...Object.entries(languages).map(([code, name]) => {
    const option = new Option(name, code);
    option.lang = code;
    return option;
  }));
  ui.languagePicker.hidden = ui.language.options.length < 2;
  showLanguage();
}

function showLanguage() {
  ui.language.value = language;
  ui.languageName.textContent = languages[language] || language;
  ui.languageName.lang = language;
}

function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = Math.min(ui.input.scrollHeight, 160) + "px";
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
ui.input.addEventListener("keydown", (event) => {
  if (suggest.key(event)) {
    event.preventDefault();
  } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    submit();
  }
});
ui.input.addEventListener("input", autosize);
ui.voiceReplies.addEventListener("click", () => {
  if (voice.refused(ui.voiceReplies)) return;
  const on = ui.voiceReplies.getAttribute("aria-pressed") !== "true";
  storage.set(VOICE_KEY, on ? "on" : "off");
  applySettings({ voice_replies: on });
  connection.send({ type: "config", voice_replies: on });
});
ui.attach.addEventListener("click", () => {
  if (!voice.refused(ui.attach)) ui.file.click();
});
ui.file.addEventListener("change", () => {
  const files = Array.from(ui.file.files || []);
  ui.file.value = "";
  uploadFiles(files);
});
dropZone(ui.drop, (files) => {
  if (signedIn()) uploadFiles(files);
});
ui.newChat.addEventListener("click", startNew);
ui.sideNew.addEventListener("click", startNew);
ui.earlier.addEventListener("click", () => loadEarlier());
// Scrolling up to the top loads earlier messages by itself; the button stays for the keyboard.
for (const type of ["wheel", "touchmove", "keydown", "pointerdown"]) {
  ui.log.addEventListener(type, () => {
    state.scrolledAt = performance.now();
  }, { passive: true });
}
ui.log.addEventListener("scroll", scrolled, { passive: true });
// Back and forward move between conversations.
window.addEventListener("popstate", (event) => {
  if (!signedIn()) return;
  const id = route.entry(event.state) || loadClientId();
  if (id !== state.clientId) switchConversation(id, { how: "none" });
});
// Back to this tab: other tabs may have made, renamed or deleted conversations.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && signedIn()) conversations.refresh();
});
ui.retry.addEventListener("click", () => connection.retryNow());
ui.language.addEventListener("change", () => {
  setLanguage(ui.language.value).catch(() => {
    showLanguage();
    notice.show(msg("language.failed"), { timeout: 5000, key: "language" });
  });
});
onLanguageChange(() => {
  syncLocale();
  showTitle();
  showLanguage();
  showConnection();
  refreshControls();
  voice.refresh();
});
unlockOnGesture((ctxState) => {
  if (ctxState === "running") notice.hide("sound");
});

// A small handle for the console (and the browser tests).
window.webBot = {
  get clientId() {
    return state.clientId;
  },
  session,
  state,
  player,
  voice,
  connection,
  i18n: {
    t,
    setLanguage,
    get language() {
      return language;
    },
  },
};

showLanguages();
refreshControls();
checkAuth();
