// The open conversation in the address: "?c=<client_id>" once the user switched to it in this tab, so a reload
// keeps it and back and forward move between conversations. A plain "/" opens the one this browser used last (what
// localStorage keeps); each history entry also remembers its conversation in its state, for back and forward.
"use strict";

const PARAM = "c";
const CLIENT_ID = /^[A-Za-z0-9_-]{1,64}$/;

function valid(id) {
  return typeof id === "string" && CLIENT_ID.test(id) ? id : null;
}

function address(id) {
  const url = new URL(location.href);
  if (id) url.searchParams.set(PARAM, id);
  else url.searchParams.delete(PARAM);
  url.hash = "";
  return url.pathname + url.search;
}

/** The conversation the address names ("?c="), or null. */
export function named() {
  return valid(new URL(location.href).searchParams.get(PARAM));
}

/** The conversation a history entry (popstate's state) was, else the one its address names. */
export function entry(stateObject) {
  return valid(stateObject?.[PARAM]) || named();
}

/** Records `id` in this entry's state without changing the address (the first page load). */
export function remember(id) {
  history.replaceState({ [PARAM]: id }, "", location.href);
}

/** A new history entry for `id` (a switch the user made). */
export function push(id) {
  if (named() === id) return remember(id);
  history.pushState({ [PARAM]: id }, "", address(id));
}

/** This entry becomes `id` (a conversation replaced without the user asking: deleted, someone else's). */
export function replace(id) {
  history.replaceState({ [PARAM]: id }, "", address(id));
}

/** The address names no conversation (signed out: the next person starts from their own). */
export function forget() {
  history.replaceState(null, "", address(null));
}
