// The web app's entry point, for both pages: languages and their toggle, the deployment's
// configuration (/app-config.json), then the page's own module (family.js at /, care.js at
// /care). Plain ES modules: no build step; Leaflet is loaded before this as a classic script.

import { unlockAudio } from "./js/banner.js";
import { $ } from "./js/dom.js";
import { initI18n, onLanguageChange, otherLanguage, setLanguage, t } from "./js/i18n.js";

window.anxin = { state: {} };

function languageToggle() {
  const toggle = $("#lang-toggle");
  const label = () => {
    toggle.textContent = t("lang.other"); // the other language's name, in that language
    toggle.setAttribute("lang", otherLanguage());
    toggle.setAttribute("aria-label", t("lang.switch"));
  };
  toggle.addEventListener("click", () => setLanguage(otherLanguage()));
  onLanguageChange(label);
  label();
}

async function main() {
  await initI18n();
  languageToggle();
  // Browsers let a page make sound only after a gesture: any tap or key unlocks the beep.
  for (const type of ["pointerdown", "keydown"]) {
    document.addEventListener(type, unlockAudio, { capture: true, passive: true });
  }
  const config = await fetch("/app-config.json")
    .then((r) => r.json())
    .catch(() => ({ map_tile_url: "" }));
  const page = document.body.dataset.page === "care" ? await import("./js/care.js")
    : await import("./js/family.js"); // prettier-ignore
  await page.start(config);
  document.body.dataset.ready = "true";
}

main().catch((err) => {
  $("#app-status").textContent = String(err);
  console.error(err); // the browser tests fail on this
});
