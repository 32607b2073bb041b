// Small DOM helpers. Everything from the API is put in the page as text (textContent), never
// as HTML: a wearer's name or a note cannot inject markup.

import { t } from "./i18n.js";

export const $ = (selector, root = document) => root.querySelector(selector);

/** h("button", {class: "btn", onclick: f}, "text", child…) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value == null) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replaceChildren(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c != null && c !== false));
}

/** "just now", "3 min ago", "2 h ago", "4 days ago" (in the current language). */
export function ago(isoOrDate, now = Date.now()) {
  if (!isoOrDate) return t("time.never");
  const seconds = Math.max(0, (now - new Date(isoOrDate).getTime()) / 1000);
  if (seconds < 60) return t("time.just_now");
  if (seconds < 3600) return t("time.minutes_ago", { n: Math.floor(seconds / 60) });
  if (seconds < 86400) return t("time.hours_ago", { n: Math.floor(seconds / 3600) });
  return t("time.days_ago", { n: Math.floor(seconds / 86400) });
}

export function clock(iso) {
  return new Date(iso).toLocaleTimeString(document.documentElement.lang, {
    hour: "2-digit",
    minute: "2-digit",
  });
}

export function dateTime(iso) {
  return new Date(iso).toLocaleString(document.documentElement.lang, {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}

export const SEVERITIES = ["critical", "high", "medium", "low"];

/** A severity as colour *and* words: screen readers and colour-blind people get the words. */
export function severityBadge(severity) {
  return h("span", { class: `badge sev-${severity}` }, t(`severity.${severity}`));
}

export function kindLabel(kind) {
  return t(`kind.${kind}`);
}

/** The sentence that says what an alert is: "Silent SOS — Wang Fang", "Left home — …". */
export function alertTitle(alert) {
  const fence = alert.fence ? alert.fence.name : "";
  return t(`alert.title.${alert.kind}`, { name: alert.wearer_name, fence });
}

/** "31.24650, 121.45000 (± 30 m)" */
export function coordinates(location) {
  if (!location) return t("alert.no_position");
  const accuracy = location.acc == null ? "" : ` (± ${Math.round(location.acc)} m)`;
  return `${location.lat.toFixed(5)}, ${location.lon.toFixed(5)}${accuracy}`;
}
