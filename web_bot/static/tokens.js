// The "API tokens" dialog: the signed-in user's tokens (name, prefix, created, last used), a new one shown once
// with a copy button, and revoking one after a confirmation. Names are shown as text, never parsed as HTML.
"use strict";

import { ok, problem, request, showError } from "./api.js";
import { el } from "./conversation.js";
import { confirmAction, flashLabel, openDialog } from "./dialogs.js";
import { formatDate, live, msg, t } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const WHEN = { dateStyle: "medium", timeStyle: "short" };

/** A stored time in the page's language ("" when there is none or it cannot be read). */
export function when(iso) {
  const date = iso ? new Date(iso) : null;
  return date && !Number.isNaN(date.getTime()) ? formatDate(date, WHEN) : "";
}

export class TokensPanel {
  constructor() {
    this.dialog = $("tokens-dialog");
    this.form = $("token-form");
    this.name = $("token-name");
    this.error = $("token-error");
    this.list = $("tokens-list");
    this.status = $("tokens-status");
    this.fresh = $("token-new");
    this.value = $("token-value");
    this.copyLabel = $("token-copy-label");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    $("token-copy").addEventListener("click", () => this.copy());
    $("token-done").addEventListener("click", () => this.forgetNew(true));
    this.dialog.addEventListener("close", () => this.forgetNew(false));
  }

  async open() {
    this.form.reset();
    showError(this.error, "");
    this.forgetNew(false);
    openDialog(this.dialog, { focus: this.name });
    await this.load();
  }

  async load() {
    showError(this.status, msg("account.loading"));
    const result = await request("GET", "api/tokens");
    if (!ok(result)) {
      showError(this.status, problem(result));
      return;
    }
    const tokens = Array.isArray(result.body.tokens) ? result.body.tokens : [];
    this.list.replaceChildren(...tokens.map((token) => this.row(token)));
    showError(this.status, tokens.length ? "" : msg("tokens.none"));
  }

  row(token) {
    const item = el("li", "row");
    item.dataset.tokenId = String(token.id);
    const main = el("div", "row-main");
    const name = el("span", "row-title", token.name);
    const prefix = el("code", "mono prefix");
    const meta = el("p", "row-meta");
    live(prefix, () => {
      prefix.textContent = t("tokens.prefix", { prefix: token.prefix || "" });
      const created = t("tokens.created", { date: when(token.created_at) });
      const used = token.last_used_at ? t("tokens.last-used", { date: when(token.last_used_at) }) : t("tokens.never-used");
      meta.textContent = created + " · " + used;
    });
    main.append(name, prefix);
    const revoke = el("button", "secondary danger-text");
    revoke.type = "button";
    live(revoke, () => {
      revoke.textContent = t("tokens.revoke");
      revoke.setAttribute("aria-label", t("tokens.revoke-name", { name: token.name }));
    });
    revoke.addEventListener("click", () => this.revoke(token));
    const actions = el("div", "row-actions");
    actions.append(revoke);
    item.append(main, meta, actions);
    return item;
  }

  async create() {
    const name = this.name.value.trim();
    if (!name) {
      showError(this.error, msg("tokens.name-missing"));
      this.name.focus();
      return;
    }
    const submit = this.form.querySelector("[type=submit]");
    submit.disabled = true;
    showError(this.error, "");
    const result = await request("POST", "api/tokens", { name });
    submit.disabled = false;
    if (!ok(result) || !result.body.token) {
      showError(this.error, problem(result));
      return;
    }
    this.form.reset();
    this.value.value = result.body.token;
    this.fresh.hidden = false;
    this.value.focus();
    this.value.select();
    await this.load();
  }

  async copy() {
    this.value.focus();
    this.value.select();
    let copied = false;
    try {
      await navigator.clipboard.writeText(this.value.value);
      copied = true;
    } catch {
      // no clipboard API on a plain-HTTP page: the older command still copies the selection
      copied = document.execCommand("copy");
    }
    flashLabel(this.copyLabel, copied ? "tokens.copied" : "tokens.copy-by-hand", "tokens.copy", copied ? 2000 : 6000);
  }

  /** The new token leaves the page: it is never shown again. */
  forgetNew(refocus) {
    this.value.value = "";
    this.fresh.hidden = true;
    if (refocus) this.name.focus();
  }

  async revoke(token) {
    const sure = await confirmAction(t("tokens.revoke-confirm", { name: token.name }), "tokens.revoke");
    if (!sure) return;
    const result = await request("DELETE", `api/tokens/${encodeURIComponent(token.id)}`);
    // Already gone (revoked in another tab): what the user wanted.
    if (!ok(result) && result.status !== 404) showError(this.error, problem(result));
    await this.load();
    this.name.focus(); // the row (and its button) may be gone
  }
}
