// The family app (/): each wearer as a card, the live map (locations polled every 5 s: each
// read is audited and the watch told, which is the point), today's track, fences, the watch's
// settings, who looked, and urgent alerts as a full-screen banner arriving over the live feed.

import { api } from "./api.js";
import { AlertBanner } from "./banner.js";
import { $, ago, alertTitle, h, replaceChildren, severityBadge } from "./dom.js";
import { FencePanel } from "./fences.js";
import { onLanguageChange, t } from "./i18n.js";
import { quietly, runSession, showFeedState } from "./page.js";
import { createMap, FenceLayer, TrackLayer, WearerMarker } from "./map.js";
import { followFeed } from "./sse.js";
import { TrackPanel } from "./track.js";
import { WatchPanel } from "./watch.js";

const LOCATION_EVERY_MS = 5000;
const MEMBERSHIP_EVERY_MS = 30000;

export async function start(config) {
  const map = createMap($("#map"), config.map_tile_url);
  const fences = new FencePanel(map, new FenceLayer(map));
  const track = new TrackPanel(new TrackLayer(map));
  const banner = new AlertBanner();
  const watch = new WatchPanel(() => pollLocations());
  const state = { me: null, wearers: {}, selected: null, feed: "off", alerts: [] };
  const timers = [];
  let feed = null;
  Object.assign(window.anxin, {
    state,
    marker: (id) => state.wearers[id]?.marker.latLng() ?? null,
    map,
  });

  async function enter() {
    state.me = await api("GET", "/v1/me");
    for (const w of state.me.wearers) {
      state.wearers[w.wearer_id] = { ...w, latest: null, membership: [],
        marker: new WearerMarker(map, w.name) }; // prettier-ignore
    }
    $("#who").textContent = state.me.name;
    renderCards();
    map.invalidateSize();
    const first = state.me.wearers[0];
    if (first) await select(first.wearer_id);
    await Promise.all([pollLocations(), pollMemberships()]);
    // Only while someone can see the page: each read is audited as a look at the wearer.
    timers.push(setInterval(() => document.hidden || quietly(pollLocations()), LOCATION_EVERY_MS));
    timers.push(setInterval(() => document.hidden || quietly(pollMemberships()),
      MEMBERSHIP_EVERY_MS)); // prettier-ignore
    timers.push(setInterval(() => renderAlerts(), 30000));
    if (state.me.contact_id != null) startFeed(state.me.contact_id);
  }

  function leave() {
    for (const timer of timers.splice(0)) clearInterval(timer);
    feed?.close();
    feed = null;
    banner.clear();
    track.stop();
    fences.stopDrawing();
    for (const w of Object.values(state.wearers)) w.marker.remove();
    Object.assign(state, { me: null, wearers: {}, selected: null, feed: "off", alerts: [] });
    replaceChildren($("#wearer-cards"));
  }

  async function select(wearerId) {
    state.selected = wearerId;
    const w = state.wearers[wearerId];
    renderCards();
    for (const el of document.querySelectorAll(".for-wearer")) el.textContent = w.name;
    const at = w.marker.latLng();
    if (at) map.setView(at, Math.max(map.getZoom(), 16));
    const editable = w.relation === "guardian" || w.relation === "family";
    await Promise.all([fences.load(w, editable), track.load(wearerId), watch.load(w)]);
  }

  async function pollLocations() {
    await Promise.all(Object.values(state.wearers).map(async (w) => {
      const first = !w.latest?.location;
      w.latest = await api("GET", `/v1/wearers/${encodeURIComponent(w.wearer_id)}/location`);
      if (w.latest.location) {
        w.marker.moveTo(w.latest.location);
        if (first && w.wearer_id === state.selected) map.setView(w.marker.latLng(), 16);
      }
    })); // prettier-ignore
    $("#app-status").textContent = "";
    renderCards();
  }

  async function pollMemberships() {
    await Promise.all(Object.values(state.wearers).map(async (w) => {
      w.membership = await api("GET", `/v1/wearers/${encodeURIComponent(w.wearer_id)}/membership`);
    })); // prettier-ignore
    renderCards();
  }

  function whereText(w) {
    const inside = w.membership.filter((m) => m.inside && m.active).map((m) => m.name);
    if (inside.length) return t("card.inside", { fences: inside.join(", ") });
    const safe = w.membership.filter((m) => m.kind === "safe" && m.active);
    if (safe.length && safe.every((m) => m.inside === false)) return t("card.outside_all");
    return w.membership.length ? t("card.unknown") : t("card.no_fences");
  }

  function card(w) {
    const latest = w.latest;
    const loc = latest?.location;
    const online = Boolean(latest?.online);
    return h("li", {},
      h("button", { type: "button", class: "wearer-card", "aria-pressed": String(w.wearer_id ===
        state.selected), onclick: () => quietly(select(w.wearer_id)),
        dataset: { wearerId: w.wearer_id, lat: loc?.lat ?? "", lng: loc?.lon ?? "" } },
        h("span", { class: "card-head" },
          h("span", { class: "card-name" }, w.name),
          h("span", { class: `badge ${online ? "online" : "offline"}` },
            t(online ? "card.online" : "card.offline"))),
        h("span", { class: "card-line" }, latest?.battery == null ? t("card.battery_unknown")
          : t("card.battery", { pct: latest.battery }), " · ",
          t("card.last_seen", { ago: ago(latest?.last_seen) })),
        h("span", { class: "card-line where" }, whereText(w)),
        loc?.coarse ? h("span", { class: "card-line muted" }, t("card.coarse")) : null,
      ),
    ); // prettier-ignore
  }

  function renderCards() {
    const focused = document.activeElement?.dataset?.wearerId; // kept across the re-draw
    const cards = Object.values(state.wearers).map(card);
    replaceChildren($("#wearer-cards"), cards.length ? cards : h("li", { class: "muted" },
      t("card.none"))); // prettier-ignore
    if (focused) $(`.wearer-card[data-wearer-id="${CSS.escape(focused)}"]`)?.focus();
  }

  function startFeed(contactId) {
    let reload = null;
    feed = followFeed(`/v1/contacts/${contactId}/feed`, {
      onState: (s) => {
        state.feed = s;
        showFeedState(s);
        if (s === "live") quietly(loadAlerts());
      },
      onEvent: (event) => {
        if (!event.data?.alert_id) return;
        banner.offer(event.data);
        if (event.data.kind.startsWith("fence")) quietly(pollMemberships());
        clearTimeout(reload);
        reload = setTimeout(() => quietly(loadAlerts()), 300);
      },
    });
  }

  async function loadAlerts() {
    const feedJson = await api("GET", `/v1/contacts/${state.me.contact_id}/alerts`);
    state.alerts = feedJson.alerts;
    for (const alert of feedJson.alerts) banner.offer(alert);
    renderAlerts();
  }

  function renderAlerts() {
    const items = state.alerts.map((a) =>
      h("li", { class: `alert-line sev-${a.severity}`, dataset: { alertId: a.alert_id } },
        severityBadge(a.severity), " ", alertTitle(a), " · ",
        h("span", { class: "muted" }, `${t(`status.${a.status}`)}, ${ago(a.opened_at)}`),
      ), // prettier-ignore
    );
    replaceChildren($("#alert-list"), items.length ? items : h("li", { class: "muted" },
      t("alerts.none"))); // prettier-ignore
  }

  onLanguageChange(() => {
    renderCards();
    renderAlerts();
    banner.render();
    if (state.selected) {
      fences.render();
      track.seek(Number($("#track-slider").value));
      quietly(watch.load(state.wearers[state.selected]));
    }
    if (state.feed !== "off") showFeedState(state.feed);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.me) quietly(pollLocations());
  });
  await runSession(enter, leave);
}
