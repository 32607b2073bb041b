// The caregiver page (/care): every unresolved alert of the wearers in the caregiver's care,
// most severe first, then oldest (the API's order, GET /v1/contacts/{id}/alerts), counts at the
// top, filters by wearer and kind; the live feed re-reads the list on every change and says new
// alerts in the aria-live region. Acknowledge; resolve with a note (required).

import { api } from "./api.js";
import { announce } from "./banner.js";
import { $, ago, alertTitle, coordinates, h, replaceChildren, SEVERITIES, severityBadge }
  from "./dom.js"; // prettier-ignore
import { onLanguageChange, t } from "./i18n.js";
import { quietly, runSession, showFeedState } from "./page.js";
import { followFeed } from "./sse.js";

const KINDS = ["sos_audible", "sos_silent", "fall", "removed", "fence_exit", "fence_enter",
  "battery", "offline"]; // prettier-ignore

export async function start() {
  const state = { me: null, counts: null, alerts: [], feed: "off" };
  const drafts = new Map(); // alert id -> the resolution note being typed
  const timers = [];
  let feed = null;
  let reload = null;
  window.anxin.state = state;

  async function enter() {
    state.me = await api("GET", "/v1/me");
    $("#who").textContent = state.me.name;
    fillFilters();
    if (state.me.contact_id == null) {
      $("#app-status").textContent = t("care.no_contact");
      return;
    }
    await load();
    timers.push(setInterval(render, 30000));
    feed = followFeed(`/v1/contacts/${state.me.contact_id}/feed`, {
      onState: (s) => {
        state.feed = s;
        showFeedState(s);
        if (s === "live") quietly(load());
      },
      onEvent: (event) => {
        const alert = event.data;
        if (!alert?.alert_id) return;
        if (event.type === "alert.opened") {
          announce(`${t("care.new_alert")}: ${t(`severity.${alert.severity}`)}, ${alertTitle(alert)}`);
        }
        clearTimeout(reload);
        reload = setTimeout(() => quietly(load()), 200);
      },
    });
  }

  function leave() {
    for (const timer of timers.splice(0)) clearInterval(timer);
    feed?.close();
    feed = null;
    Object.assign(state, { me: null, counts: null, alerts: [], feed: "off" });
    replaceChildren($("#care-list"));
  }

  function option(value, label, selected) {
    return h("option", { value, selected: value === selected }, label);
  }

  function fillFilters() {
    const wearer = $("#filter-wearer").value;
    const kind = $("#filter-kind").value;
    replaceChildren($("#filter-wearer"), option("", t("care.all_wearers"), wearer),
      (state.me?.wearers ?? []).map((w) => option(w.wearer_id, w.name, wearer))); // prettier-ignore
    replaceChildren($("#filter-kind"), option("", t("care.all_kinds"), kind),
      KINDS.map((k) => option(k, t(`kind.${k}`), kind))); // prettier-ignore
  }

  async function load() {
    const query = new URLSearchParams();
    if ($("#filter-wearer").value) query.set("wearer_id", $("#filter-wearer").value);
    if ($("#filter-kind").value) query.set("kind", $("#filter-kind").value);
    const body = await api("GET", `/v1/contacts/${state.me.contact_id}/alerts?${query}`);
    state.counts = body.counts;
    state.alerts = body.alerts;
    $("#app-status").textContent = "";
    render();
  }

  function render() {
    const counts = state.counts;
    if (!counts) return;
    const total = $("#count-total");
    total.textContent = t("care.total", { n: counts.total });
    total.dataset.count = counts.total;
    replaceChildren($("#counts-by-severity"), SEVERITIES.map((s) =>
      h("li", { class: `count sev-${s}`, dataset: { severity: s, count: counts[s] } },
        h("span", { class: "count-n" }, String(counts[s])), " ", t(`severity.${s}`)))); // prettier-ignore
    // The list is re-drawn on every change of any alert: a note being typed stays, and so
    // does the focus.
    const focused = document.activeElement?.id;
    const cards = state.alerts.map(alertCard);
    replaceChildren($("#care-list"), cards.length ? cards : h("li", { class: "muted empty" },
      t("care.none"))); // prettier-ignore
    if (focused) document.getElementById(focused)?.focus();
  }

  function alertCard(alert) {
    const id = alert.alert_id;
    const noteId = `note-${id}`;
    const error = h("p", { class: "error", role: "alert" });
    const note = h("textarea", { id: noteId, rows: 2, maxlength: 2000, required: true,
      oninput: () => {
        drafts.set(id, note.value);
        error.textContent = "";
      } }); // prettier-ignore
    note.value = drafts.get(id) ?? "";
    const resolve = h("form", { class: "resolve-form", novalidate: true, onsubmit: (e) => {
      e.preventDefault();
      act(alert, "resolve", note.value, error);
    } },
      h("label", { for: noteId }, t("care.note_label")), note,
      h("button", { type: "submit", class: "btn" }, t("care.resolve")),
    ); // prettier-ignore
    const status = alert.status === "open" ? t("status.open")
      : t("status.acknowledged_at", { ago: ago(alert.acknowledged_at) }); // prettier-ignore
    return h("li", { class: `alert-card sev-${alert.severity}`, dataset: { alertId: id,
      status: alert.status, kind: alert.kind } },
      h("h3", {}, severityBadge(alert.severity), " ", alertTitle(alert)),
      h("p", {}, h("strong", {}, alert.wearer_name), " · ", t("care.opened", { ago: ago(alert.opened_at) }),
        alert.occurrences > 1 ? ` · ${t("care.times", { n: alert.occurrences })}` : ""),
      h("p", { class: "status-line" }, status),
      h("p", { class: "muted" }, t("alert.where", { where: coordinates(alert.location) })),
      h("p", { class: "muted" }, t(`alert.advice.${alert.kind}`, { name: alert.wearer_name })),
      alert.status === "open" ? h("button", { type: "button", class: "btn primary",
        onclick: () => act(alert, "acknowledge", null, error) }, t("care.acknowledge")) : null,
      resolve,
      error,
    ); // prettier-ignore
  }

  async function act(alert, action, note, error) {
    error.textContent = "";
    if (action === "resolve" && !note.trim()) {
      error.textContent = t("care.note_required");
      return;
    }
    try {
      const body = action === "resolve" ? { note: note.trim() } : undefined;
      await api("POST", `/v1/alerts/${alert.alert_id}/${action}`, body);
      if (action === "resolve") drafts.delete(alert.alert_id);
      announce(t(`care.${action}d`, { title: alertTitle(alert) }));
      await load();
    } catch (err) {
      error.textContent = err.problems?.join(" ") || t("error.action_failed");
    }
  }

  for (const id of ["#filter-wearer", "#filter-kind"]) {
    $(id).addEventListener("change", () => quietly(load()));
  }
  onLanguageChange(() => {
    fillFilters();
    render();
    if (state.feed !== "off") showFeedState(state.feed);
  });
  await runSession(enter, leave);
}
