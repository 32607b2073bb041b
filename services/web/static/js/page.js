// What both pages share: the login / logout cycle (a session kept in the tab survives a
// reload), background work that never throws into the page, and the live-feed indicator.

import { loggedIn, logout, onSessionEnd, scheduleRefresh } from "./api.js";
import { $ } from "./dom.js";
import { t } from "./i18n.js";
import { setupLogin, showLogin } from "./login.js";

/** Background work must never throw into the page: a failure is said in the status line
 * (a 401 needs no words: the login form is back). */
export function quietly(promise) {
  return promise.catch((err) => {
    if (err?.status !== 401) $("#app-status").textContent = t("error.network");
  });
}

export function showFeedState(state) {
  const el = $("#feed-state");
  el.textContent = t(`feed.${state}`);
  el.dataset.state = state;
}

/** `enter()` once logged in (now, or already in this tab); `leave()` when the session ends. */
export async function runSession(enter, leave) {
  const entered = () => {
    showLogin(false);
    return quietly(enter());
  };
  setupLogin(entered);
  onSessionEnd(() => {
    leave();
    showLogin(true);
  });
  $("#logout").addEventListener("click", () => logout());
  if (loggedIn()) {
    scheduleRefresh();
    await entered();
  } else {
    showLogin(true);
  }
}
