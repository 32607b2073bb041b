// The watch panel: "locate now", the speed-dial numbers, listen-in with the wearer's consent,
// and who looked at the wearer's location. What a relation may do is the API's rule
// (docs/permissions.md); the page hides what is not allowed and says why, rather than
// offering buttons that can only fail.

import { api } from "./api.js";
import { announce } from "./banner.js";
import { $, dateTime, h, replaceChildren } from "./dom.js";
import { t } from "./i18n.js";

const FINAL = new Set(["acknowledged", "failed", "expired"]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function problemList(target, err) {
  const lines = err.problems?.length ? err.problems : [t("error.action_failed")];
  replaceChildren(target, h("ul", {}, lines.map((line) => h("li", {}, line))));
}

export class WatchPanel {
  /** `onLocated()` once the watch has answered "locate now" (the map then re-reads). */
  constructor(onLocated) {
    this.onLocated = onLocated;
    this.wearer = null;
    $("#locate-now").addEventListener("click", () => this.locate());
    $("#speed-dial-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.saveSpeedDial();
    });
    $("#consent-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.recordConsent();
    });
    $("#consent-withdraw").addEventListener("click", () => this.withdrawConsent());
    $("#listen-in-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.listenIn();
    });
    $("#audit-reload").addEventListener("click", () => this.loadAudit());
  }

  path(rest) {
    return `/v1/wearers/${encodeURIComponent(this.wearer.wearer_id)}${rest}`;
  }

  async load(wearer) {
    this.wearer = wearer;
    const guardian = wearer.relation === "guardian";
    const family = guardian || wearer.relation === "family";
    $("#locate-now").hidden = !family;
    $("#locate-note").hidden = family;
    $("#locate-status").textContent = "";
    for (const id of ["#speed-dial-form", "#listen-in-box", "#audit-box"]) $(id).hidden = !guardian;
    for (const id of ["#speed-dial-note", "#listen-in-note", "#audit-note"]) $(id).hidden = guardian;
    replaceChildren($("#speed-dial-status"));
    if (guardian) await Promise.all([this.loadSpeedDial(), this.loadConsent(), this.loadAudit()]);
  }

  async locate() {
    const status = $("#locate-status");
    const button = $("#locate-now");
    button.disabled = true;
    try {
      let command = await api("POST", this.path("/commands/locate"));
      status.textContent = t(`command.${command.status}`);
      for (let i = 0; i < 30 && !FINAL.has(command.status); i += 1) {
        await sleep(2000);
        command = await api("GET", this.path(`/commands/${command.command_id}`));
        status.textContent = t(`command.${command.status}`);
      }
      if (command.status === "acknowledged") {
        announce(t("command.located"));
        this.onLocated();
      }
    } catch (err) {
      status.textContent = err.problems?.join(" ") || t("error.action_failed");
    } finally {
      button.disabled = false;
    }
  }

  /** The form shows the numbers last sent to the watch (the newest speed-dial command). */
  async loadSpeedDial() {
    const { commands } = await api("GET", this.path("/commands?limit=200"));
    const last = commands.find((c) => c.kind === "speed_dial");
    const numbers = last?.payload.numbers ?? [];
    document.querySelectorAll(".speed-dial-number").forEach((input, i) => {
      input.value = numbers[i] ?? "";
    });
  }

  async saveSpeedDial() {
    const out = $("#speed-dial-status");
    const numbers = [...document.querySelectorAll(".speed-dial-number")]
      .map((input) => input.value.trim())
      .filter(Boolean);
    if (!numbers.length) {
      replaceChildren(out, h("ul", {}, h("li", {}, t("speed_dial.none"))));
      return;
    }
    try {
      const command = await api("PUT", this.path("/speed-dial"), { numbers });
      replaceChildren(out, h("p", { class: "ok" }, t("speed_dial.sent", {
        status: t(`command.${command.status}`) }))); // prettier-ignore
    } catch (err) {
      problemList(out, err);
    }
  }

  async loadConsent() {
    const consent = await api("GET", this.path("/consents/listen-in"));
    const state = $("#consent-state");
    state.dataset.active = consent.active;
    if (consent.active) {
      state.textContent = t("listen_in.consent_active", {
        when: dateTime(consent.recorded_at), note: consent.note }); // prettier-ignore
    } else {
      state.textContent = consent.withdrawn_at
        ? t("listen_in.consent_withdrawn", { when: dateTime(consent.withdrawn_at) })
        : t("listen_in.consent_none");
    }
    $("#consent-form").hidden = consent.active;
    $("#consent-withdraw").hidden = !consent.active;
    $("#listen-in-request").disabled = !consent.active;
    $("#listen-in-why").textContent = consent.active ? "" : t("listen_in.needs_consent");
  }

  async recordConsent() {
    const note = $("#consent-note").value.trim();
    try {
      await api("POST", this.path("/consents/listen-in"), { note });
      $("#consent-note").value = "";
      replaceChildren($("#listen-in-status"));
      await this.loadConsent();
    } catch (err) {
      problemList($("#listen-in-status"), err);
    }
  }

  async withdrawConsent() {
    try {
      await api("DELETE", this.path("/consents/listen-in"));
      await this.loadConsent();
    } catch (err) {
      problemList($("#listen-in-status"), err);
    }
  }

  async listenIn() {
    const out = $("#listen-in-status");
    try {
      const number = $("#listen-in-number").value.trim();
      const command = await api("POST", this.path("/commands/listen-in"), { number });
      replaceChildren(out, h("p", { class: "ok" }, t("listen_in.sent", {
        status: t(`command.${command.status}`) }))); // prettier-ignore
      await this.loadAudit();
    } catch (err) {
      problemList(out, err);
    }
  }

  async loadAudit() {
    if (this.wearer?.relation !== "guardian") return;
    const entries = await api("GET", this.path("/audit?limit=30"));
    const rows = entries.map((e) =>
      h("li", { class: "audit-entry" },
        h("span", { class: "who" }, e.viewer),
        h("span", {}, t(`audit.action.${e.action}`)),
        h("span", { class: "muted" }, t(`audit.precision.${e.precision}`)),
        h("time", { datetime: e.at }, dateTime(e.at)),
      ), // prettier-ignore
    );
    replaceChildren($("#audit-list"), rows.length ? rows : h("li", { class: "muted" }, t("audit.none")));
  }
}
