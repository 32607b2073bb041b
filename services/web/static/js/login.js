// The login form, the same on both pages: e-mail and password, errors in words, and the
// switch between the login view and the app view.

import { login } from "./api.js";
import { unlockAudio } from "./banner.js";
import { $, h } from "./dom.js";
import { t, translate } from "./i18n.js";

export function showLogin(show) {
  $("#login-view").hidden = !show;
  $("#app-view").hidden = show;
  $("#logout").hidden = show;
  if (show) $("#login-email")?.focus();
}

export function setupLogin(onLoggedIn) {
  const error = h("p", { id: "login-error", class: "error", role: "alert" });
  const submit = h("button", { type: "submit", class: "btn primary wide", "data-i18n": "login.submit" });
  const form = h("form", { id: "login-form", class: "card-panel", novalidate: true },
    h("h2", { "data-i18n": "login.title" }),
    h("p", { class: "muted", "data-i18n": "login.intro" }),
    h("label", { for: "login-email", "data-i18n": "login.email" }),
    h("input", { id: "login-email", name: "email", type: "email", autocomplete: "username",
      required: true, inputmode: "email" }),
    h("label", { for: "login-password", "data-i18n": "login.password" }),
    h("input", { id: "login-password", name: "password", type: "password",
      autocomplete: "current-password", required: true }),
    error,
    submit,
  ); // prettier-ignore
  $("#login-view").replaceChildren(form);
  translate(form);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    unlockAudio(); // a tap: from now on the alert banner may beep
    const email = $("#login-email").value.trim();
    const password = $("#login-password").value;
    if (!email || !password) {
      error.textContent = t("login.missing");
      return;
    }
    error.textContent = "";
    submit.disabled = true;
    try {
      await login(email, password);
      form.reset();
      await onLoggedIn();
    } catch (err) {
      if (err.status === 401) error.textContent = t("login.wrong");
      else if (err.status === 423) error.textContent = `${t("login.locked")} ${err.problems.join(" ")}`;
      else error.textContent = t("error.network");
    } finally {
      submit.disabled = false;
    }
  });
}
