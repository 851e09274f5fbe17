// Command suggestions under the message box: typing "/" lists the server's commands; arrows move,
// Enter or Tab picks, Escape closes.
"use strict";

import { el } from "./conversation.js";

export class Suggest {
  constructor(input, list, { onPick } = {}) {
    this.input = input;
    this.list = list;
    this.commands = [];
    this.matches = [];
    this.active = -1;
    this.onPick = onPick || (() => {});
    input.addEventListener("input", () => this.update());
    input.addEventListener("blur", () => setTimeout(() => this.close(), 120));
  }

  setCommands(commands) {
    this.commands = Array.isArray(commands) ? commands : [];
    this.update();
  }

  get open() {
    return !this.list.hidden;
  }

  update() {
    const value = this.input.value;
    const typing = /^\/\S*$/.test(value);
    const word = value.slice(1).toLowerCase();
    this.matches = typing ? this.commands.filter((c) => c.name.toLowerCase().startsWith(word)) : [];
    // A command typed out in full needs no suggestion.
    if (this.matches.length === 1 && this.matches[0].name === word) this.matches = [];
    this.active = this.matches.length ? 0 : -1;
    this.render();
  }

  render() {
    this.list.replaceChildren();
    this.matches.forEach((command, index) => {
      const item = el("li", "suggestion");
      item.id = "suggestion-" + index;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(index === this.active));
      item.append(el("span", "cmd-name", "/" + command.name), el("span", "cmd-summary", command.summary));
      // mousedown, not click: the text box keeps focus.
      item.addEventListener("mousedown", (event) => {
        event.preventDefault();
        this.pick(index);
      });
      this.list.append(item);
    });
    const shown = this.matches.length > 0;
    this.list.hidden = !shown;
    if (shown && this.active >= 0) this.input.setAttribute("aria-activedescendant", "suggestion-" + this.active);
    else this.input.removeAttribute("aria-activedescendant");
  }

  close() {
    this.matches = [];
    this.active = -1;
    this.render();
  }

  pick(index) {
    const command = this.matches[index];
    if (!command) return;
    this.input.value = "/" + command.name + " ";
    this.close();
    this.input.focus();
    this.onPick(command);
  }

  /** Handles a keydown in the text box; true when the key was the list's. */
  key(event) {
    if (!this.open) return false;
    const count = this.matches.length;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      this.active = (this.active + (event.key === "ArrowDown" ? 1 : count - 1)) % count;
      this.render();
      this.list.children[this.active]?.scrollIntoView({ block: "nearest" });
      return true;
    }
    if ((event.key === "Enter" && !event.shiftKey) || event.key === "Tab") {
      this.pick(this.active < 0 ? 0 : this.active);
      return true;
    }
    if (event.key === "Escape") {
      this.close();
      return true;
    }
    return false;
  }
}
