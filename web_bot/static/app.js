// web-bot chat page. Every piece of user or model text goes through textContent, never parsed as HTML.
"use strict";

const COMMANDS = ["/help", "/status", "/clear", "/info"];
const $ = (id) => document.getElementById(id);
const log = $("log"), input = $("input"), conn = $("conn"), suggest = $("suggest");

function clientId() {
  let id = localStorage.getItem("web-bot-client-id");
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    id = "c-" + (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)).replace(/[^A-Za-z0-9_-]/g, "");
    id = id.slice(0, 64);
    localStorage.setItem("web-bot-client-id", id);
  }
  return id;
}

let socket = null, attempts = 0, pending = [], streaming = null;
const id = clientId();

function nearBottom() { return log.scrollHeight - log.scrollTop - log.clientHeight < 80; }
function scroll(stick) { if (stick) log.scrollTop = log.scrollHeight; }

function bubble(kind, text, meta) {
  const stick = nearBottom();
  const el = document.createElement("div");
  el.className = "msg " + kind;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  el.appendChild(body);
  if (meta) {
    const m = document.createElement("span");
    m.className = "meta";
    m.textContent = meta;
    el.appendChild(m);
  }
  log.appendChild(el);
  scroll(stick);
  return el;
}

function time(iso) {
  const d = iso ? new Date(iso) : new Date();
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function timingText(t) {
  if (!t) return "";
  const parts = [];
  if (t.stt_ms != null) parts.push("speech " + Math.round(t.stt_ms) + " ms");
  if (t.llm_total_ms != null) parts.push("LLM " + Math.round(t.llm_total_ms) + " ms");
  if (t.tts_first_audio_ms != null) parts.push("voice " + Math.round(t.tts_first_audio_ms) + " ms");
  return parts.join(" | ");
}

function setMeta(el, text) {
  let m = el.querySelector(".meta");
  if (!m) { m = document.createElement("span"); m.className = "meta"; el.appendChild(m); }
  m.textContent = text;
}

function handle(event) {
  switch (event.type) {
    case "welcome":
      log.replaceChildren();
      for (const m of event.history) {
        const el = bubble(m.role === "user" ? "user" : "bot", m.content, time(m.created_at));
        if (m.status === "interrupted") el.classList.add("interrupted");
      }
      break;
    case "user_message":
      bubble("user", event.text, time(event.created_at));
      break;
    case "reply_delta":
      if (!streaming) streaming = bubble("bot", "");
      { const stick = nearBottom(); streaming.querySelector(".text").textContent += event.text; scroll(stick); }
      break;
    case "reply":
      if (!streaming) streaming = bubble("bot", "");
      streaming.querySelector(".text").textContent = event.text;
      setMeta(streaming, [time(), timingText(event.timings)].filter(Boolean).join(" · "));
      streaming = null;
      break;
    case "interrupted":
      if (streaming) { streaming.classList.add("interrupted"); streaming = null; }
      break;
    case "command":
      bubble("command", event.text);
      break;
    case "cleared":
      log.replaceChildren();
      streaming = null;
      break;
    case "error":
      if (streaming) streaming = null;
      bubble("error", event.message + " (" + event.code + ")");
      break;
  }
}

function setState(state, text) { conn.dataset.state = state; conn.textContent = text; }

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  setState("connecting", attempts ? "reconnecting…" : "connecting…");
  socket = new WebSocket(`${scheme}://${location.host}/ws/${encodeURIComponent(id)}`);
  socket.onopen = () => {
    attempts = 0;
    setState("open", "connected");
    const queued = pending; pending = [];
    for (const text of queued) socket.send(JSON.stringify({ type: "text", text }));
  };
  socket.onmessage = (msg) => { if (typeof msg.data === "string") handle(JSON.parse(msg.data)); };
  socket.onclose = () => {
    setState("closed", "offline — retrying");
    const delay = Math.min(30000, 500 * 2 ** attempts) * (0.5 + Math.random() / 2);
    attempts += 1;
    setTimeout(connect, delay);
  };
}

function send(text) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ type: "text", text }));
  else { pending.push(text); bubble("command", "Offline: your message will be sent when the connection returns."); }
}

function showSuggestions() {
  const v = input.value;
  const matches = v.startsWith("/") && !v.includes(" ") ? COMMANDS.filter((c) => c.startsWith(v)) : [];
  suggest.replaceChildren();
  for (const c of matches) {
    const li = document.createElement("li");
    li.textContent = c;
    li.setAttribute("role", "option");
    li.addEventListener("mousedown", (e) => { e.preventDefault(); input.value = c; suggest.hidden = true; input.focus(); });
    suggest.appendChild(li);
  }
  suggest.hidden = matches.length === 0;
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  send(text);
  input.value = "";
  suggest.hidden = true;
});
input.addEventListener("input", showSuggestions);
input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
  if (e.key === "Escape") suggest.hidden = true;
});
$("new-chat").addEventListener("click", () => {
  localStorage.removeItem("web-bot-client-id");
  location.reload();
});

connect();
