// The page's words in the reader's language. Each language is one file, static/i18n/<code>.json (flat keys,
// `{name}` placeholders, plural forms as `key.one`, `key.few`, … after Intl.PluralRules), and
// static/i18n/languages.json names the languages there are, each in itself. English fills any gap.
// Translations are text: the HTML's own markup (<strong>, <kbd>) is built as elements, never parsed as HTML.
"use strict";

const FALLBACK = "en";
const STORE_KEY = "web-bot-language";
const QUERY = new URL(import.meta.url).search; // the page's cache-busting ?v=, for the JSON files too
const ATTRIBUTES = ["title", "aria-label", "placeholder"];
const MARKUP = /(<\/?(?:strong|kbd)>)/;

const catalogs = {};
const renderers = new WeakMap();
const listeners = [];
const formats = new Map();

/** The languages the page speaks: code -> its name, written in that language. */
export let languages = {};
/** The page's language now (a code from `languages`). */
export let language = FALLBACK;
/** The browser's own tag for that language (en-GB rather than en), for dates and numbers. */
export let locale = FALLBACK;

async function fetchJson(name) {
  const response = await fetch(new URL("i18n/" + name + QUERY, import.meta.url));
  if (!response.ok) throw new Error(name + ": HTTP " + response.status);
  return response.json();
}

async function load(code) {
  if (!catalogs[code]) catalogs[code] = await fetchJson(code + ".json");
}

function storage(value) {
  try {
    if (value === undefined) return localStorage.getItem(STORE_KEY);
    localStorage.setItem(STORE_KEY, value);
  } catch {
    // storage is switched off: the choice lasts until the page is reloaded
  }
  return null;
}

function browserTags() {
  return navigator.languages?.length ? navigator.languages : [navigator.language || FALLBACK];
}

/** The code of `languages` that `tag` asks for (ru-RU -> ru), or null. */
function supported(tag) {
  const codes = Object.keys(languages);
  const lower = String(tag || "").toLowerCase();
  return codes.find((code) => code.toLowerCase() === lower) ||
    codes.find((code) => code.toLowerCase() === lower.split("-")[0]) || null;
}

function localeFor(code) {
  return browserTags().find((tag) => supported(tag) === code) || code;
}

/** Loads the list of languages and the one to show: the one picked here before, else the browser's first. */
export async function startLanguage() {
  try {
    [languages] = await Promise.all([fetchJson("languages.json"), load(FALLBACK)]);
  } catch (err) {
    console.error("web-bot: the page's words could not be loaded", err);
  }
  const wanted = [storage(), ...browserTags()].map(supported).find(Boolean) || FALLBACK;
  try {
    await load(wanted);
    use(wanted);
  } catch (err) {
    console.error("web-bot: language " + wanted + " could not be loaded", err);
    use(FALLBACK);
  }
}

/** Switches the page to `code` at once and remembers the choice. */
export async function setLanguage(code) {
  if (!(code in languages)) throw new Error("no such language: " + code);
  await load(code);
  storage(code);
  use(code);
}

/** Calls `listener(language)` after each switch, for text that is not tied to one element. */
export function onLanguageChange(listener) {
  listeners.push(listener);
}

function use(code) {
  language = code;
  locale = localeFor(code);
  document.documentElement.lang = code;
  translate(document);
  // Listeners first: live text may read what they write (a notice repeats a button's title).
  for (const listener of listeners) listener(code);
  for (const node of document.querySelectorAll("[data-i18n-live]")) renderers.get(node)?.();
}

function lookup(key, count) {
  for (const code of [language, FALLBACK]) {
    const catalog = catalogs[code];
    if (!catalog) continue;
    if (typeof count === "number") {
      const form = catalog[key + "." + plurals(code).select(count)] ?? catalog[key + ".other"];
      if (form != null) return form;
    }
    if (catalog[key] != null) return catalog[key];
  }
  console.warn("web-bot: no words for " + key);
  return key;
}

function plurals(code) {
  return cached("plural " + code, () => new Intl.PluralRules(code));
}

function cached(name, make) {
  if (!formats.has(name)) formats.set(name, make());
  return formats.get(name);
}

/** A number in the page's language (options as for Intl.NumberFormat). */
export function formatNumber(value, options = {}) {
  return cached(locale + " " + JSON.stringify(options), () => new Intl.NumberFormat(locale, options)).format(value);
}

/** A date in the page's language (options as for Intl.DateTimeFormat). */
export function formatDate(date, options) {
  return cached(locale + " date " + JSON.stringify(options), () => new Intl.DateTimeFormat(locale, options))
    .format(date);
}

/** The words for `key`, with `{name}` replaced by params.name; a number `count` picks the plural form. */
export function t(key, params = {}) {
  return fill(lookup(key, params.count), params);
}

function fill(template, params) {
  return template.replace(/\{([A-Za-z0-9_]+)\}/g, (whole, name) => {
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === "number" ? formatNumber(value) : String(value);
  });
}

/** Words looked up when shown (so they follow a language switch): pass these where a string would do. */
export function msg(key, params = {}) {
  return () => t(key, params);
}

/** A string, or the words a msg() (or any function) gives now. */
export function resolve(text) {
  return typeof text === "function" ? text() : text == null ? "" : String(text);
}

/** Runs `render()` now and again after every language switch while `node` is in the page. */
export function live(node, render) {
  renderers.set(node, render);
  node.setAttribute("data-i18n-live", "");
  render();
  return node;
}

/** Writes the words into data-i18n (text) and data-i18n-title, -aria-label, -placeholder (attributes). */
export function translate(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    node.replaceChildren(...rich(lookup(node.getAttribute("data-i18n"))));
  }
  for (const name of ATTRIBUTES) {
    for (const node of root.querySelectorAll(`[data-i18n-${name}]`)) {
      node.setAttribute(name, t(node.getAttribute(`data-i18n-${name}`)));
    }
  }
}

/** "<kbd>Enter</kbd> sends" as nodes: only <strong> and <kbd> become elements, everything else stays text. */
function rich(template) {
  const stack = [document.createDocumentFragment()];
  for (const part of template.split(MARKUP)) {
    const tag = MARKUP.test(part) ? part.replace(/[</>]/g, "") : null;
    const top = stack[stack.length - 1];
    if (tag && !part.startsWith("</")) {
      const element = document.createElement(tag);
      top.append(element);
      stack.push(element);
    } else if (tag) {
      if (stack.length > 1 && top.localName === tag) stack.pop();
    } else if (part) {
      top.append(part);
    }
  }
  return [...stack[0].childNodes];
}
