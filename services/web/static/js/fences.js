// The fence panel: the wearer's fences on the map and in a list, drawing a new one (polygon
// or circle), changing one's shape, name or kind, deleting one. The API validates; its 422
// answer lists the problems in sentences, which are shown as they are.

import { api } from "./api.js";
import { announce } from "./banner.js";
import { $, h, replaceChildren } from "./dom.js";
import { FenceDrawer } from "./draw.js";
import { t } from "./i18n.js";

export class FencePanel {
  constructor(map, fenceLayer) {
    this.map = map;
    this.layer = fenceLayer;
    this.drawer = new FenceDrawer(map, () => this.updateForm());
    this.features = [];
    this.wearer = null;
    this.editable = false;
    this.editing = null; // the feature whose shape is being changed, or null for a new one
    this.confirming = null;
    this.form = $("#fence-form");
    $("#draw-polygon").addEventListener("click", () => this.startDrawing("polygon"));
    $("#draw-circle").addEventListener("click", () => this.startDrawing("circle"));
    $("#draw-undo").addEventListener("click", () => this.drawer.undo());
    $("#draw-cancel").addEventListener("click", () => this.stopDrawing());
    $("#fence-radius").addEventListener("input", (e) => {
      const metres = Number(e.target.value);
      if (metres > 0) this.drawer.setRadius(metres);
    });
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
  }

  async load(wearer, editable) {
    if (this.wearer?.wearer_id !== wearer.wearer_id) this.stopDrawing();
    this.wearer = wearer;
    this.editable = editable;
    const collection = await api("GET", `/v1/wearers/${encodeURIComponent(wearer.wearer_id)}/fences`);
    this.features = collection.features;
    this.render();
  }

  render() {
    this.layer.show(this.features, this.editing?.id);
    $("#fence-tools").hidden = !this.editable || this.drawer.mode !== null;
    $("#fence-readonly").hidden = this.editable;
    const items = this.features.map((f) => this.item(f));
    replaceChildren($("#fence-list"), items.length ? items : h("li", { class: "muted" }, t("fence.none")));
  }

  item(feature) {
    const p = feature.properties;
    const shape = p.radius_m ? t("fence.circle", { r: Math.round(p.radius_m) }) : t("fence.area");
    const actions = [];
    if (this.editable && this.drawer.mode === null) {
      const confirming = this.confirming === feature.id;
      actions.push(
        h("button", { type: "button", class: "btn small", onclick: () => this.startDrawing(
          p.radius_m ? "circle" : "polygon", feature) }, t("fence.edit")), // prettier-ignore
        h("button", { type: "button", class: `btn small ${confirming ? "danger" : ""}`,
          onclick: () => this.remove(feature) },
          confirming ? t("fence.confirm_delete") : t("fence.delete")), // prettier-ignore
      );
    }
    return h("li", { class: `fence-item kind-${p.kind}`, dataset: { fenceId: feature.id } },
      h("span", { class: "fence-name" }, p.name),
      h("span", { class: `badge kind-${p.kind}` }, t(`fence.kind_short.${p.kind}`)),
      h("span", { class: "muted" }, shape),
      h("span", { class: "actions" }, actions),
    ); // prettier-ignore
  }

  startDrawing(mode, feature = null) {
    // A MultiPolygon or a polygon with holes cannot be edited point by point: redrawn whole.
    const g = feature?.geometry;
    const multi = g && (g.type === "MultiPolygon" || (g.type === "Polygon" && g.coordinates.length > 1));
    this.editing = feature;
    this.confirming = null;
    const p = feature?.properties ?? {};
    $("#fence-name").value = p.name ?? "";
    this.form.querySelector(`input[name=kind][value=${p.kind ?? "safe"}]`).checked = true;
    $("#fence-radius").value = Math.round(p.radius_m ?? 150);
    $("#radius-row").hidden = mode !== "circle";
    $("#draw-undo").hidden = false;
    replaceChildren($("#fence-problems"));
    this.form.hidden = false;
    this.form.dataset.mode = mode;
    this.drawer.start(mode, multi ? null : feature?.geometry, Number($("#fence-radius").value));
    this.render();
    if (multi) $("#draw-hint").textContent = t("draw.hint_multi");
    this.map.getContainer().scrollIntoView({ block: "start" });
    $("#draw-hint").focus();
  }

  stopDrawing() {
    this.drawer.stop();
    this.form.hidden = true;
    this.editing = null;
    if (this.wearer) this.render();
  }

  updateForm() {
    if (!this.drawer.mode) return;
    const key = this.drawer.mode === "polygon" ? "draw.hint_polygon" : "draw.hint_circle";
    $("#draw-hint").textContent = t(key, { n: this.drawer.count() });
    $("#fence-save").disabled = !this.drawer.ready();
    this.form.dataset.points = this.drawer.count();
  }

  async save() {
    const name = $("#fence-name").value.trim();
    if (!name) {
      this.problems([t("fence.name_required")]);
      $("#fence-name").focus();
      return;
    }
    const kind = this.form.querySelector("input[name=kind]:checked").value;
    const properties = { ...(this.editing?.properties ?? {}), name, kind };
    if (this.drawer.mode === "circle") properties.radius_m = Number($("#fence-radius").value);
    else delete properties.radius_m;
    const feature = { type: "Feature", geometry: this.drawer.geometry(), properties };
    const base = `/v1/wearers/${encodeURIComponent(this.wearer.wearer_id)}/fences`;
    $("#fence-save").disabled = true;
    try {
      if (this.editing) await api("PUT", `${base}/${this.editing.id}`, feature);
      else await api("POST", base, feature);
    } catch (err) {
      this.problems(err.problems.length ? err.problems : [t("error.action_failed")]);
      $("#fence-save").disabled = false;
      return;
    }
    this.stopDrawing();
    await this.load(this.wearer, this.editable);
    announce(t("fence.saved", { name }));
  }

  problems(lines) {
    replaceChildren($("#fence-problems"),
      h("p", { class: "problems-title" }, t("fence.problems")),
      h("ul", {}, lines.map((line) => h("li", {}, line))),
    ); // prettier-ignore
  }

  async remove(feature) {
    if (this.confirming !== feature.id) {
      this.confirming = feature.id;
      this.render();
      return;
    }
    this.confirming = null;
    try {
      await api("DELETE", `/v1/wearers/${encodeURIComponent(this.wearer.wearer_id)}/fences/${feature.id}`);
      announce(t("fence.deleted", { name: feature.properties.name }));
    } catch (err) {
      announce(err.problems.join(" "));
    }
    await this.load(this.wearer, this.editable);
  }
}
