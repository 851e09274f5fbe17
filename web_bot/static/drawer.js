// The conversation list is a sidebar on wide screens and a drawer on narrow ones: opened from the header's
// button, closed by Escape, a tap outside it, its close button, or picking a conversation. While it is open the
// rest of the page is inert, so the keyboard and screen readers stay in it; closed, the drawer itself is inert.
"use strict";

const NARROW = "(max-width: 860px)"; // keep in step with style.css

export class Drawer {
  /** `panel` is the list, `button` opens it, `scrim` covers the page behind it; `behind` are made inert while open;
   * `onOpen()` runs each time it opens (the list refreshes). */
  constructor({ panel, button, close, scrim, behind, onOpen = () => {} }) {
    this.panel = panel;
    this.button = button;
    this.scrim = scrim;
    this.behind = behind;
    this.onOpen = onOpen;
    this.query = matchMedia(NARROW);
    this.isOpen = false;
    button.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    close.addEventListener("click", () => this.close());
    scrim.addEventListener("click", () => this.close());
    panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen && !event.defaultPrevented) {
        event.preventDefault();
        this.close();
      }
    });
    this.query.addEventListener("change", () => this.layout());
    this.layout();
  }

  /** True when the list is a drawer (a narrow screen), false when it is a sidebar. */
  get narrow() {
    return this.query.matches;
  }

  layout() {
    if (!this.narrow && this.isOpen) this.close({ refocus: false });
    this.panel.inert = this.narrow && !this.isOpen;
    this.panel.dataset.mode = this.narrow ? "drawer" : "sidebar";
  }

  open() {
    if (!this.narrow || this.isOpen) return;
    this.isOpen = true;
    this.panel.inert = false;
    for (const node of this.behind) node.inert = true;
    this.panel.dataset.open = "";
    this.scrim.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    // The open conversation, for the keyboard to start from (or the search box, when results are shown).
    const current = this.panel.querySelector("nav:not([hidden]) [aria-current=page]");
    (current || this.panel.querySelector("input[type=search]"))?.focus();
    this.onOpen();
  }

  /** Closes the drawer; the focus goes back to its button unless `refocus` is false (it goes somewhere else). */
  close({ refocus = true } = {}) {
    if (!this.isOpen) return;
    this.isOpen = false;
    const hadFocus = this.panel.contains(document.activeElement);
    delete this.panel.dataset.open;
    this.scrim.hidden = true;
    for (const node of this.behind) node.inert = false;
    this.panel.inert = this.narrow;
    this.button.setAttribute("aria-expanded", "false");
    if (refocus && hadFocus) this.button.focus();
  }
}
