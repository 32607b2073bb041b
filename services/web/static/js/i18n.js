// Two languages, English and Simplified Chinese: picked from the browser, switchable with the
// toggle in the header, remembered in localStorage. Keys are flat ("login.title"); a key that a
// language lacks falls back to English. {name} placeholders are filled by t(key, {name}).

const SUPPORTED = ["en", "zh-CN"];
const STORAGE_KEY = "anxin.lang";
const dictionaries = new Map();
const listeners = new Set();
let current = "en";

/** The language to show: the remembered choice, else the first browser language we have. */
export function pickLanguage(stored, browserLanguages) {
  if (SUPPORTED.includes(stored)) return stored;
  for (const tag of browserLanguages) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

async function dictionary(tag) {
  if (!dictionaries.has(tag)) {
    const response = await fetch(`/static/i18n/${tag}.json`);
    dictionaries.set(tag, response.ok ? await response.json() : {});
  }
  return dictionaries.get(tag);
}

function remembered() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage blocked (private mode): the browser language decides
  }
}

export async function initI18n() {
  const browser = navigator.languages?.length ? navigator.languages : [navigator.language || "en"];
  await setLanguage(pickLanguage(remembered(), browser), false);
}

export async function setLanguage(tag, remember = true) {
  await Promise.all([dictionary("en"), dictionary(tag)]);
  current = tag;
  document.documentElement.lang = tag;
  if (remember) {
    try {
      localStorage.setItem(STORAGE_KEY, tag);
    } catch {
      // not remembered, still switched
    }
  }
  translate(document);
  for (const listener of listeners) listener(tag);
}

export function language() {
  return current;
}

export function otherLanguage() {
  return current === "en" ? "zh-CN" : "en";
}

export function onLanguageChange(listener) {
  listeners.add(listener);
}

export function t(key, vars = {}) {
  const text = dictionaries.get(current)?.[key] ?? dictionaries.get("en")?.[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** Fill every element marked data-i18n (text), data-i18n-placeholder, -label (aria-label). */
export function translate(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
}
