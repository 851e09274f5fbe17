// What the page shows instead of the chat to someone not signed in: the sign-in form, the one-time form that
// creates the first admin account, or a plain message (a proxy that named nobody, a server out of reach).
"use strict";

import { errorCode, ok, problem, request, showError } from "./api.js";
import { live, msg, resolve, t } from "./i18n.js";

const $ = (id) => document.getElementById(id);

export class Gate {
  /** `onSignedIn(user)` runs after a sign-in or the first account's creation; `onRetry()` asks the server again. */
  constructor({ onSignedIn, onRetry }) {
    this.onSignedIn = onSignedIn;
    this.box = $("gate");
    this.signin = $("signin-form");
    this.setup = $("setup-form");
    this.message = $("gate-message");
    this.waitTimer = null;
    this.signin.addEventListener("submit", (event) => {
      event.preventDefault();
      this.signIn();
    });
    this.setup.addEventListener("submit", (event) => {
      event.preventDefault();
      this.createFirst();
    });
    $("gate-retry").addEventListener("click", () => onRetry());
  }

  get shown() {
    return !this.box.hidden;
  }

  /** `kind`: "signin" | "setup" | "proxy" | "unreachable"; `note` (a msg()) says why, above the sign-in form. */
  open(kind, { note = null } = {}) {
    this.box.hidden = false;
    for (const form of [this.signin, this.setup]) {
      form.reset();
      showError(form.querySelector(".form-error"), "");
    }
    this.signin.hidden = kind !== "signin";
    this.setup.hidden = kind !== "setup";
    this.message.hidden = kind !== "proxy" && kind !== "unreachable";
    const noteLine = $("signin-note");
    noteLine.hidden = !note;
    live(noteLine, () => {
      noteLine.textContent = resolve(note);
    });
    if (!this.message.hidden) {
      const [title, text] = kind === "proxy" ? ["proxy.title", "proxy.text"] : ["gate.unreachable", "error.network"];
      const [titleLine, textLine] = [$("gate-message-title"), $("gate-message-text")];
      live(titleLine, () => {
        titleLine.textContent = t(title);
        textLine.textContent = t(text);
      });
    }
    const first = kind === "signin" ? $("signin-username") : kind === "setup" ? $("setup-username") : $("gate-retry");
    first.focus();
  }

  hide() {
    this.box.hidden = true;
    clearTimeout(this.waitTimer);
    for (const form of [this.signin, this.setup]) form.reset(); // no password stays in the page
  }

  async signIn() {
    const error = $("signin-error");
    const username = $("signin-username").value.trim();
    const password = $("signin-password").value;
    if (!username || !password) {
      showError(error, msg("account.missing"));
      (username ? $("signin-password") : $("signin-username")).focus();
      return;
    }
    const submit = this.signin.querySelector("[type=submit]");
    submit.disabled = true;
    showError(error, "");
    const result = await request("POST", "api/auth/login", { username, password });
    submit.disabled = false;
    if (ok(result) && result.body.user) {
      this.onSignedIn(result.body.user);
      return;
    }
    const code = errorCode(result);
    if (code === "rate-limited") {
      // No point trying before the server allows it: the button waits too.
      const waitMs = Number(result.body.retry_after_ms) || 0;
      showError(error, msg("signin.too-many", { count: Math.max(1, Math.ceil(waitMs / 1000)) }));
      submit.disabled = waitMs > 0;
      clearTimeout(this.waitTimer);
      this.waitTimer = setTimeout(() => {
        submit.disabled = false;
      }, waitMs);
      return;
    }
    showError(error, problem(result));
    $("signin-password").value = "";
    $("signin-password").focus();
  }

  async createFirst() {
    const error = $("setup-error");
    const username = $("setup-username").value.trim();
    const password = $("setup-password").value;
    if (!username) {
      showError(error, msg("account.missing"));
      $("setup-username").focus();
      return;
    }
    const local = checkNewPassword(password, $("setup-repeat").value);
    if (local) {
      showError(error, local);
      $("setup-password").focus();
      return;
    }
    const submit = this.setup.querySelector("[type=submit]");
    submit.disabled = true;
    showError(error, "");
    const result = await request("POST", "api/auth/setup", { username, password });
    submit.disabled = false;
    if (ok(result) && result.body.user) {
      this.onSignedIn(result.body.user);
      return;
    }
    showError(error, problem(result));
    if (errorCode(result) === "setup-closed") {
      // Someone else made the first account meanwhile: the sign-in form is what is left.
      this.open("signin", { note: problem(result) });
    }
  }
}

/** What is wrong with a new password and its repetition, before asking the server (or null). How long it must be
 * is the server's rule (a setting): it answers weak-password. */
export function checkNewPassword(password, repeat) {
  if (!password) return msg("account.missing");
  if (password !== repeat) return msg("account.mismatch");
  return null;
}
