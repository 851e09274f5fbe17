// Modal dialogs on the native <dialog>: the browser keeps the focus inside and closes them with Escape; these
// helpers add the close buttons, give the focus back to whatever opened them, and ask yes-or-no questions.
"use strict";

import { t, translate } from "./i18n.js";

/** Opens `dialog` modally, focusing `focus` (or its first field); the focus returns to the opener on close. */
export function openDialog(dialog, { focus = null } = {}) {
  if (dialog.open) return;
  const opener = document.activeElement;
  if (!dialog.dataset.wired) {
    dialog.dataset.wired = "yes";
    for (const button of dialog.querySelectorAll("[data-close]")) {
      button.addEventListener("click", () => dialog.close());
    }
    dialog.addEventListener("close", () => {
      const back = dialog.opener;
      dialog.opener = null;
      if (back && back.isConnected && !back.closest("[hidden]")) back.focus();
    });
  }
  dialog.opener = opener instanceof HTMLElement ? opener : null;
  dialog.showModal();
  const first = focus || dialog.querySelector(":is(input, textarea):not([hidden]):not([readonly]), select");
  (first || dialog).focus();
}

/** Closes every open dialog (signing out, say). */
export function closeDialogs() {
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
}

/** Asks `question` (words, already filled in); resolves true when the user picks the button named by `actionKey`. */
export function confirmAction(question, actionKey) {
  const dialog = document.getElementById("confirm-dialog");
  const form = document.getElementById("confirm-form");
  const text = document.getElementById("confirm-text");
  const ok = document.getElementById("confirm-ok");
  text.textContent = question;
  ok.setAttribute("data-i18n", actionKey);
  translate(form);
  return new Promise((resolve) => {
    let answer = false;
    const submit = (event) => {
      event.preventDefault();
      answer = true;
      dialog.close();
    };
    form.addEventListener("submit", submit);
    dialog.addEventListener("close", () => {
      form.removeEventListener("submit", submit);
      resolve(answer);
    }, { once: true });
    // The safe answer has the focus: Enter on a stray key press does not delete anything.
    openDialog(dialog, { focus: document.getElementById("confirm-cancel") });
  });
}

/** The "copied" label of a copy button, for a moment. */
export function flashLabel(node, key, restoreKey, ms = 2000) {
  node.textContent = t(key);
  clearTimeout(node.flashTimer);
  node.flashTimer = setTimeout(() => {
    node.textContent = t(restoreKey);
  }, ms);
}
