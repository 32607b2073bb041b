// Today's track: one point a minute (the most accurate fix of each minute, GET …/history
// ?bucket_s=60 from local midnight), drawn as a line, with a slider and a play button that
// move a marker along it.

import { api } from "./api.js";
import { $, clock } from "./dom.js";
import { t } from "./i18n.js";

const STEP_MS = 120;

export class TrackPanel {
  constructor(layer) {
    this.layer = layer;
    this.points = [];
    this.timer = null;
    this.slider = $("#track-slider");
    this.slider.addEventListener("input", () => this.seek(Number(this.slider.value)));
    $("#track-play").addEventListener("click", () => this.toggle());
    $("#track-reload").addEventListener("click", () => this.load(this.wearerId));
  }

  async load(wearerId) {
    this.stop();
    this.wearerId = wearerId;
    const midnight = new Date();
    midnight.setHours(0, 0, 0, 0);
    const query = `bucket_s=60&start=${encodeURIComponent(midnight.toISOString())}`;
    const history = await api("GET", `/v1/wearers/${encodeURIComponent(wearerId)}/history?${query}`);
    this.points = history.points;
    this.layer.show(this.points);
    const last = Math.max(0, this.points.length - 1);
    this.slider.max = last;
    this.slider.value = last;
    this.slider.disabled = this.points.length < 2;
    $("#track-play").disabled = this.points.length < 2;
    this.seek(last);
  }

  seek(index) {
    const point = this.points[index];
    const label = $("#track-time");
    if (!point) {
      label.textContent = t("track.empty");
      this.slider.setAttribute("aria-valuetext", label.textContent);
      return;
    }
    this.layer.place(point);
    label.textContent = t("track.at", { time: clock(point.t), i: index + 1, n: this.points.length });
    this.slider.setAttribute("aria-valuetext", label.textContent);
  }

  toggle() {
    if (this.timer) {
      this.stop();
      return;
    }
    let index = Number(this.slider.value);
    if (index >= this.points.length - 1) index = 0;
    this.setPlaying(true);
    this.timer = setInterval(() => {
      this.slider.value = index;
      this.seek(index);
      index += 1;
      if (index >= this.points.length) this.stop();
    }, STEP_MS);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.setPlaying(false);
  }

  setPlaying(playing) {
    const button = $("#track-play");
    button.textContent = t(playing ? "track.pause" : "track.play");
    button.setAttribute("aria-pressed", String(playing));
  }
}
