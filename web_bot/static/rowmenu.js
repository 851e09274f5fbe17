// The small menu of one conversation in the list (rename, export, delete), shown beside its "⋯" button: the
// arrow keys move through it, Escape or Tab closes it (the focus back on its button), as does a click elsewhere.
"use strict";

/** The small menu of one conversation (rename, export, delete), shown beside its button. */
export class RowMenu {
  constructor(box, onPick) {
    this.box = box;
    this.row = null;
    this.button = null;
    box.addEventListener("click", (event) => {
      const action = event.target.closest("[data-action]")?.dataset.action;
      if (!action || !this.row) return;
      const row = this.row;
      this.close(true);
      onPick(action, row);
    });
    box.addEventListener("keydown", (event) => this.key(event));
    box.addEventListener("focusout", (event) => {
      if (!box.contains(event.relatedTarget) && event.relatedTarget !== this.button) this.close(false);
    });
    document.addEventListener("pointerdown", (event) => {
      if (!box.hidden && !box.contains(event.target) && !this.button?.contains(event.target)) this.close(false);
    });
    window.addEventListener("resize", () => this.close(false));
  }

  items() {
    return [...this.box.querySelectorAll(".menu-item")];
  }

  toggle(row, button) {
    if (!this.box.hidden && this.button === button) this.close(true);
    else this.open(row, button);
  }

  open(row, button) {
    this.close(false);
    this.row = row;
    this.button = button;
    button.setAttribute("aria-expanded", "true");
    this.box.hidden = false;
    this.place();
    this.items()[0]?.focus();
  }

  /** Beside its button, inside the window: below it when there is room, else above. */
  place() {
    const at = this.button.getBoundingClientRect();
    const size = this.box.getBoundingClientRect();
    const below = at.bottom + 4 + size.height <= window.innerHeight - 8;
    this.box.style.top = Math.max(8, below ? at.bottom + 4 : at.top - 4 - size.height) + "px";
    this.box.style.left = Math.max(8, Math.min(at.right - size.width, window.innerWidth - size.width - 8)) + "px";
  }

  /** The list scrolled: the menu moves with its button, and closes when the button is scrolled out of sight. */
  follow(scroller) {
    if (this.box.hidden || !this.button) return;
    const at = this.button.getBoundingClientRect();
    const view = scroller.getBoundingClientRect();
    if (at.bottom < view.top || at.top > view.bottom) this.close(false);
    else this.place();
  }

  close(refocus) {
    if (this.box.hidden) return;
    this.box.hidden = true;
    const button = this.button;
    this.button?.setAttribute("aria-expanded", "false");
    this.row = null;
    this.button = null;
    if (refocus && button?.isConnected) button.focus();
  }

  key(event) {
    const items = this.items();
    const at = items.indexOf(document.activeElement);
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: items.length - 1 };
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation(); // the drawer stays open
      this.close(true);
    } else if (event.key === "Tab") {
      event.preventDefault(); // out of the menu is back to its button
      this.close(true);
    } else if (event.key in moves) {
      event.preventDefault();
      items[(moves[event.key] + items.length) % items.length].focus();
    }
  }
}
