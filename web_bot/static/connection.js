// The chat socket: reconnects with exponential backoff and jitter, keeps itself alive with pings, and tells
// the page what state it is in. A close the server means as final (sign in first, a foreign page, someone
// else's conversation) is not retried: the page decides what follows.
"use strict";

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;
const PING_EVERY_MS = 20000;
const SILENT_LIMIT_MS = 45000; // no frame at all for this long: the connection is dead even if TCP says not
/** Close codes after which trying again as before cannot help. */
export const CLOSE = { signIn: 4401, foreignPage: 4403, foreignConversation: 4404 };
const FINAL = new Set(Object.values(CLOSE));

export class Connection {
  /**
   * @param {() => string} url  the socket URL (asked again on every attempt: the client id may change)
   * @param {{onEvent, onBinary, onState, onClose}} handlers  onClose(code, {opened, final}) after every close
   */
  constructor(url, { onEvent, onBinary, onState, onClose = () => {} }) {
    this.url = url;
    this.onEvent = onEvent;
    this.onBinary = onBinary;
    this.onState = onState;
    this.onClose = onClose;
    this.socket = null;
    this.attempts = 0;
    this.retryAt = 0;
    this.retryTimer = null;
    this.tickTimer = null;
    this.pingTimer = null;
    this.lastFrame = 0;
    this.state = "connecting";
    window.addEventListener("online", () => this.retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.retryNow();
    });
  }

  get open() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  /** Sends a JSON object, a string, or binary; false when the socket is not open (nothing was sent). */
  send(message) {
    if (!this.open) return false;
    const frame = typeof message === "string" || message instanceof Blob || message instanceof ArrayBuffer ||
      ArrayBuffer.isView(message) ? message : JSON.stringify(message);
    this.socket.send(frame);
    return true;
  }

  connect() {
    this.clearTimers();
    this.setState("connecting", { attempt: this.attempts });
    let socket;
    try {
      socket = new WebSocket(this.url());
    } catch {
      this.scheduleRetry();
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.lastFrame = Date.now();
      this.pingTimer = setInterval(() => this.keepAlive(), PING_EVERY_MS);
    };
    socket.onmessage = (message) => {
      this.lastFrame = Date.now();
      if (typeof message.data !== "string") {
        this.onBinary(message.data);
        return;
      }
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event.type === "welcome") {
        // Only a welcome proves the server really took us: a socket accepted then closed must still back off.
        this.attempts = 0;
        this.setState("open");
      }
      this.onEvent(event);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      const final = FINAL.has(event.code);
      if (final) this.stop();
      else this.scheduleRetry();
      this.onClose(event.code, { opened, final });
    };
  }

  /** Drop the current socket (if any) and connect again at once, e.g. for another client id. */
  restart() {
    this.attempts = 0;
    this.dropSocket();
    this.connect();
  }

  /** No socket and no retries until restart(): signed out, or refused for good. */
  stop() {
    this.dropSocket();
    this.clearTimers();
    this.setState("stopped");
  }

  /** After a final close that may pass (a session that is still valid after all): try again after the backoff. */
  retryLater() {
    this.dropSocket();
    this.scheduleRetry();
  }

  retryNow() {
    if (this.socket === null && this.state === "offline") {
      this.attempts = 0;
      this.connect();
    }
  }

  keepAlive() {
    if (Date.now() - this.lastFrame > SILENT_LIMIT_MS) {
      this.dropSocket();
      this.scheduleRetry();
      return;
    }
    this.send({ type: "ping" });
  }

  dropSocket() {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      try {
        socket.close();
      } catch {
        // closing a socket that never opened
      }
    }
  }

  scheduleRetry() {
    this.clearTimers();
    // Full jitter over the upper half: tabs reconnecting after a restart do not all knock at once.
    const ceiling = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempts);
    const delay = Math.round(ceiling * (0.5 + Math.random() / 2));
    this.attempts += 1;
    this.retryAt = Date.now() + delay;
    this.retryTimer = setTimeout(() => this.connect(), delay);
    const tick = () => this.setState("offline", { retryInMs: Math.max(0, this.retryAt - Date.now()) });
    tick();
    this.tickTimer = setInterval(tick, 1000);
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearInterval(this.tickTimer);
    clearInterval(this.pingTimer);
    this.retryTimer = this.tickTimer = this.pingTimer = null;
  }

  setState(state, info = {}) {
    const changed = state !== this.state;
    this.state = state;
    this.onState(state, info, changed);
  }
}
