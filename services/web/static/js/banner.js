// The urgent-alert banner: full screen, a beep (WebAudio) every few seconds while it is up, an
// Acknowledge button, and the same words in the aria-live region for screen readers. Critical
// alerts (SOS, fall) and high ones (left a safe area, entered a no-go area, watch taken off)
// raise it: for a family both mean "act now". It shows open alerts only; an alert that anyone
// acknowledges or resolves (here, or on another phone: the feed says so) leaves it.

import { api } from "./api.js";
import { $, ago, alertTitle, coordinates, h, replaceChildren, severityBadge } from "./dom.js";
import { t } from "./i18n.js";

const URGENT = new Set(["critical", "high"]);
const RANK = { critical: 4, high: 3, medium: 2, low: 1 };
const BEEP_EVERY_MS = 5000;
let audio = null;

/** Call from a user gesture (the login button, any tap): browsers only let a page make sound
 * after one. Never throws: a phone that blocks audio still gets the banner. */
export function unlockAudio() {
  try {
    audio ??= new AudioContext();
    if (audio.state === "suspended") audio.resume().catch(() => {});
  } catch {
    audio = null;
  }
}

export function beep() {
  try {
    if (!audio) return; // never unlocked by a gesture: silent, the banner still shows
    if (audio.state === "suspended") audio.resume().catch(() => {});
    const start = audio.currentTime + 0.02;
    for (let i = 0; i < 3; i += 1) {
      const at = start + i * 0.35;
      const tone = audio.createOscillator();
      const gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.5, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.25);
      tone.connect(gain).connect(audio.destination);
      tone.start(at);
      tone.stop(at + 0.3);
    }
  } catch {
    // audio blocked or missing: nothing to do
  }
}

export function announce(text) {
  const region = $("#live-region");
  region.textContent = "";
  // A new text node after a tick, so screen readers announce a repeat of the same words too.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

export class AlertBanner {
  constructor() {
    this.alerts = new Map();
    this.el = $("#alert-banner");
    this.timer = null;
    this.shown = null;
    $("#banner-ack").addEventListener("click", () => this.acknowledge());
  }

  /** An alert as the API or the feed shows it: up if urgent and open, down otherwise. */
  offer(alert) {
    const id = alert.alert_id;
    if (!URGENT.has(alert.severity) || alert.status !== "open") {
      if (this.alerts.delete(id)) this.render();
      return;
    }
    const isNew = !this.alerts.has(id);
    this.alerts.set(id, alert);
    this.render();
    if (isNew) {
      beep();
      announce(`${t(`severity.${alert.severity}`)}: ${alertTitle(alert)}`);
    }
  }

  clear() {
    this.alerts.clear();
    this.render();
  }

  current() {
    return [...this.alerts.values()].sort(
      (a, b) => RANK[b.severity] - RANK[a.severity] || a.alert_id - b.alert_id,
    )[0];
  }

  render() {
    const alert = this.current();
    if (!alert) {
      this.el.hidden = true;
      document.body.classList.remove("banner-up");
      clearInterval(this.timer);
      this.timer = null;
      this.shown = null;
      return;
    }
    this.el.hidden = false;
    this.el.className = `banner banner-${alert.severity}`;
    this.el.dataset.alertId = alert.alert_id;
    document.body.classList.add("banner-up");
    replaceChildren($("#banner-title"), severityBadge(alert.severity), " ", alertTitle(alert));
    $("#banner-advice").textContent = t(`alert.advice.${alert.kind}`, { name: alert.wearer_name });
    $("#banner-when").textContent = t("alert.when", { ago: ago(alert.t) });
    $("#banner-where").textContent = t("alert.where", { where: coordinates(alert.location) });
    const more = this.alerts.size - 1;
    $("#banner-more").textContent = more > 0 ? t("alert.more", { n: more }) : "";
    $("#banner-error").textContent = "";
    const button = $("#banner-ack");
    button.disabled = false;
    if (this.shown !== alert.alert_id) {
      this.shown = alert.alert_id;
      button.focus();
    }
    this.timer ??= setInterval(beep, BEEP_EVERY_MS);
  }

  async acknowledge() {
    const alert = this.current();
    if (!alert) return;
    const button = $("#banner-ack");
    button.disabled = true;
    try {
      const updated = await api("POST", `/v1/alerts/${alert.alert_id}/acknowledge`);
      this.offer(updated);
      announce(t("alert.acknowledged", { title: alertTitle(alert) }));
    } catch (err) {
      button.disabled = false;
      replaceChildren($("#banner-error"), h("span", {}, t("error.action_failed")), " ",
        err.problems?.join(" ") ?? "");
    }
  }
}
