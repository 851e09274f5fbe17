// The notice above the message box: one short message (a microphone problem, "sound is paused", "new
// conversation started"), with an optional action and a close button.
"use strict";

import { live, resolve } from "./i18n.js";

export class Notice {
  constructor({ box, text, action, close }) {
    this.box = box;
    this.text = text;
    this.action = action;
    this.timer = null;
    close.addEventListener("click", () => this.hide());
  }

  /** `message` and `action` are strings or msg()s (which follow a language switch); `key` names what the notice
   * is about, so its cause can take it down again (hide(key)) once resolved. */
  show(message, { action = null, onAction = null, timeout = 0, key = "mic" } = {}) {
    live(this.text, () => {
      this.text.textContent = resolve(message);
      this.action.textContent = resolve(action);
    });
    this.box.dataset.key = key;
    this.action.hidden = !action;
    this.action.onclick = onAction
      ? () => {
        this.hide();
        onAction();
      }
      : null;
    this.box.hidden = false;
    clearTimeout(this.timer);
    if (timeout) this.timer = setTimeout(() => this.hide(), timeout);
  }

  hide(key = null) {
    if (key && this.box.dataset.key !== key) return;
    clearTimeout(this.timer);
    this.box.hidden = true;
  }
}
