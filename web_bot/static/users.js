// The "Users" dialog, for admins: everyone's account (role, disabled, created, last seen), adding a user,
// disabling or enabling one, resetting a password, changing a role. Usernames are shown as text only.
"use strict";

import { ok, problem, request, showError } from "./api.js";
import { el } from "./conversation.js";
import { confirmAction, openDialog } from "./dialogs.js";
import { checkNewPassword } from "./gate.js";
import { live, msg, t } from "./i18n.js";
import { when } from "./tokens.js";

const $ = (id) => document.getElementById(id);
const ROLE_KEY = { user: "users.role-user", admin: "users.role-admin" };

export class UsersPanel {
  /** `me()` is the signed-in user; `onSelfChanged(user)` runs when an admin changes their own account. */
  constructor({ me, onSelfChanged }) {
    this.me = me;
    this.onSelfChanged = onSelfChanged;
    this.dialog = $("users-dialog");
    this.form = $("user-form");
    this.error = $("user-error");
    this.list = $("users-list");
    this.status = $("users-status");
    this.resetDialog = $("reset-dialog");
    this.resetForm = $("reset-form");
    this.resetError = $("reset-error");
    this.resetting = null; // the user whose password the reset dialog sets
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.add();
    });
    this.resetForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.reset();
    });
    this.resetDialog.addEventListener("close", () => this.resetForm.reset());
    this.dialog.addEventListener("close", () => this.form.reset());
  }

  async open() {
    this.form.reset();
    showError(this.error, "");
    openDialog(this.dialog, { focus: $("user-username") });
    await this.load();
  }

  async load() {
    showError(this.status, msg("account.loading"));
    const result = await request("GET", "api/users");
    if (!ok(result)) {
      showError(this.status, problem(result));
      return;
    }
    const users = Array.isArray(result.body.users) ? result.body.users : [];
    this.list.replaceChildren(...users.map((user) => this.row(user)));
    showError(this.status, "");
  }

  row(user) {
    const self = user.id === this.me()?.id;
    const item = el("li", "row");
    item.dataset.userId = String(user.id);
    item.dataset.username = user.username;
    if (user.disabled) item.dataset.disabled = "";
    const main = el("div", "row-main");
    const name = el("span", "row-title", user.username);
    name.translate = false;
    const badges = el("span", "badges");
    const meta = el("p", "row-meta");
    live(badges, () => {
      const parts = [el("span", "badge role", t(ROLE_KEY[user.role] || "users.role-user"))];
      if (self) parts.push(el("span", "badge", t("users.you")));
      if (user.disabled) parts.push(el("span", "badge off", t("users.disabled")));
      badges.replaceChildren(...parts);
      const created = t("users.created", { date: when(user.created_at) });
      const seen = user.last_seen_at ? t("users.last-seen", { date: when(user.last_seen_at) }) : t("users.never-seen");
      meta.textContent = created + " · " + seen;
    });
    main.append(name, badges);

    const role = el("select", "role-select");
    role.id = "role-" + user.id;
    const roleLabel = el("label", "sr-only");
    roleLabel.htmlFor = role.id;
    for (const value of Object.keys(ROLE_KEY)) {
      const option = el("option");
      option.value = value;
      role.append(option);
    }
    role.value = user.role;
    const toggle = el("button", "secondary");
    toggle.type = "button";
    const reset = el("button", "secondary");
    reset.type = "button";
    live(role, () => {
      roleLabel.textContent = t("users.role-of", { username: user.username });
      for (const option of role.options) option.textContent = t(ROLE_KEY[option.value]);
      toggle.textContent = t(user.disabled ? "users.enable" : "users.disable");
      toggle.setAttribute("aria-label", t(user.disabled ? "users.enable-name" : "users.disable-name", {
        username: user.username,
      }));
      reset.textContent = t("users.reset");
      reset.setAttribute("aria-label", t("users.reset-name", { username: user.username }));
    });
    const rowError = el("p", "form-error");
    rowError.setAttribute("role", "alert");
    role.addEventListener("change", () => this.change(user, { role: role.value }, rowError, () => {
      role.value = user.role;
    }));
    toggle.addEventListener("click", () => this.toggle(user, rowError));
    reset.addEventListener("click", () => this.openReset(user));
    const actions = el("div", "row-actions");
    actions.append(roleLabel, role, toggle, reset);
    item.append(main, meta, actions, rowError);
    return item;
  }

  async add() {
    const username = $("user-username").value.trim();
    const password = $("user-password").value;
    if (!username) {
      showError(this.error, msg("account.missing"));
      $("user-username").focus();
      return;
    }
    const local = checkNewPassword(password, password);
    if (local) {
      showError(this.error, local);
      $("user-password").focus();
      return;
    }
    const submit = this.form.querySelector("[type=submit]");
    submit.disabled = true;
    showError(this.error, "");
    const result = await request("POST", "api/users", { username, password, role: $("user-role").value });
    submit.disabled = false;
    if (!ok(result)) {
      showError(this.error, problem(result));
      return;
    }
    this.form.reset();
    $("user-username").focus();
    await this.load();
    showError(this.status, msg("users.added", { username }));
  }

  async toggle(user, rowError) {
    if (!user.disabled) {
      const sure = await confirmAction(t("users.disable-confirm", { username: user.username }), "users.disable");
      if (!sure) return;
    }
    await this.change(user, { disabled: !user.disabled }, rowError);
  }

  /** PATCHes `changes`; on a refusal the row says why and `undo()` puts its control back. */
  async change(user, changes, rowError, undo = () => {}) {
    showError(rowError, "");
    const result = await request("PATCH", `api/users/${encodeURIComponent(user.id)}`, changes);
    if (!ok(result)) {
      undo();
      showError(rowError, problem(result));
      return;
    }
    const focusId = document.activeElement?.id || "";
    if (user.id === this.me()?.id) this.onSelfChanged({ ...user, ...result.body });
    await this.load();
    // The list is rebuilt: the focus goes back to the same control of the same row.
    const row = this.list.querySelector(`[data-user-id="${CSS.escape(String(user.id))}"]`);
    const again = focusId ? document.getElementById(focusId) : null;
    (again || row?.querySelector("button") || this.list).focus?.();
  }

  openReset(user) {
    this.resetting = user;
    this.resetForm.reset();
    $("reset-username").value = user.username; // whose password this is, for a password manager
    showError(this.resetError, "");
    const title = $("reset-title");
    live(title, () => {
      title.textContent = t("users.reset-title", { username: user.username });
    });
    openDialog(this.resetDialog, { focus: $("reset-password") });
  }

  async reset() {
    const user = this.resetting;
    const password = $("reset-password").value;
    const local = checkNewPassword(password, password);
    if (local) {
      showError(this.resetError, local);
      return;
    }
    const result = await request("PATCH", `api/users/${encodeURIComponent(user.id)}`, { password });
    if (!ok(result)) {
      showError(this.resetError, problem(result));
      return;
    }
    this.resetDialog.close();
    showError(this.status, msg("users.password-set", { username: user.username }));
  }
}
