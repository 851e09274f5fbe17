// The signed-in user's menu in the header: who is signed in, change password, API tokens, users and the
// operator's page (admins only) and sign out. The username is shown as text only.
"use strict";

import { errorCode, ok, problem, request, showError } from "./api.js";
import { closeDialogs, openDialog } from "./dialogs.js";
import { checkNewPassword } from "./gate.js";
import { live, msg, t } from "./i18n.js";
import { TokensPanel } from "./tokens.js";
import { UsersPanel } from "./users.js";

const $ = (id) => document.getElementById(id);

export class Account {
  /** `onSignOut()` signs out (the page decides what follows); `notify(text)` says something in the notice;
   * `onChanged(user)` runs when the user's own account changed (an admin demoted or disabled themselves). */
  constructor({ onSignOut, notify, onChanged }) {
    this.user = null;
    this.mode = "none";
    this.notify = notify;
    this.box = $("account");
    this.button = $("account-button");
    this.menu = $("account-menu");
    this.passwordDialog = $("password-dialog");
    this.passwordForm = $("password-form");
    this.passwordError = $("password-error");
    this.tokens = new TokensPanel();
    this.users = new UsersPanel({ me: () => this.user, onSelfChanged: (user) => onChanged(user) });

    this.button.addEventListener("click", () => (this.menu.hidden ? this.openMenu() : this.closeMenu(true)));
    this.menu.addEventListener("keydown", (event) => this.menuKey(event));
    this.box.addEventListener("focusout", (event) => {
      if (!this.box.contains(event.relatedTarget)) this.closeMenu(false);
    });
    document.addEventListener("pointerdown", (event) => {
      if (!this.menu.hidden && !this.box.contains(event.target)) this.closeMenu(false);
    });
    this.button.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.closeMenu(true);
    });
    $("menu-password").addEventListener("click", () => this.pick(() => this.openPassword()));
    $("menu-tokens").addEventListener("click", () => this.pick(() => this.tokens.open()));
    $("menu-users").addEventListener("click", () => this.pick(() => this.users.open()));
    $("menu-sign-out").addEventListener("click", () => this.pick(() => onSignOut()));
    this.passwordForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.changePassword();
    });
    this.passwordDialog.addEventListener("close", () => this.passwordForm.reset());
  }

  /** Shows the menu for `user` (null: hides it); `mode` is the server's auth mode. */
  show(user, mode) {
    this.user = user;
    this.mode = mode;
    this.closeMenu(false);
    this.box.hidden = !user;
    if (!user) {
      closeDialogs();
      return;
    }
    const name = $("account-name");
    const who = $("account-who");
    const role = $("account-role");
    live(this.button, () => {
      name.textContent = user.username;
      who.textContent = user.username;
      role.textContent = t(user.role === "admin" ? "users.role-admin" : "users.role-user");
      this.button.setAttribute("aria-label", t("account.button", { username: user.username }));
      this.button.title = t("account.button", { username: user.username });
    });
    $("menu-users").hidden = user.role !== "admin";
    $("menu-admin").hidden = user.role !== "admin"; // a link to the operator's page, /admin
    if (user.role !== "admin" && this.users.dialog.open) this.users.dialog.close();
    // Behind a proxy, the proxy says who is signed in: there is no password here and nothing to sign out of.
    $("menu-password").hidden = mode === "proxy";
    $("menu-sign-out").hidden = mode === "proxy";
    $("password-username").value = user.username; // for password managers: whose password changes
  }

  items() {
    return [...this.menu.querySelectorAll(".menu-item")].filter((item) => !item.hidden);
  }

  openMenu() {
    this.menu.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.items()[0]?.focus();
  }

  closeMenu(refocus) {
    if (this.menu.hidden) return;
    this.menu.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus) this.button.focus();
  }

  /** Closes the menu, the focus back on its button (where a dialog returns it), then does `action`. */
  pick(action) {
    this.closeMenu(true);
    action();
  }

  menuKey(event) {
    const items = this.items();
    const at = items.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 };
    if (event.key === "Escape") {
      event.preventDefault();
      this.closeMenu(true);
    } else if (event.key in moves && items.length) {
      event.preventDefault();
      items[(moves[event.key] + items.length) % items.length].focus();
    }
  }

  openPassword() {
    this.passwordForm.reset();
    $("password-username").value = this.user?.username || "";
    showError(this.passwordError, "");
    openDialog(this.passwordDialog, { focus: $("password-current") });
  }

  async changePassword() {
    const current = $("password-current").value;
    const fresh = $("password-new").value;
    if (!current) {
      showError(this.passwordError, msg("account.missing"));
      $("password-current").focus();
      return;
    }
    const local = checkNewPassword(fresh, $("password-repeat").value);
    if (local) {
      showError(this.passwordError, local);
      $("password-new").focus();
      return;
    }
    const submit = this.passwordForm.querySelector("[type=submit]");
    submit.disabled = true;
    showError(this.passwordError, "");
    const result = await request("POST", "api/auth/password", { current_password: current, new_password: fresh });
    submit.disabled = false;
    if (ok(result)) {
      this.passwordDialog.close();
      this.notify(msg("password.changed"));
      return;
    }
    // Here a wrong password is the current one: say so, rather than "wrong username or password".
    showError(this.passwordError, errorCode(result) === "bad-credentials" ? msg("password.wrong") : problem(result));
    if (errorCode(result) === "bad-credentials") $("password-current").focus();
  }
}
