// Drawing a fence with plain Leaflet: a polygon is tapped point by point (each point a large
// draggable handle, so a misplaced one can be moved), a circle is a tapped centre (draggable)
// and a radius in metres. The result is the GeoJSON geometry the API takes (docs/geofences.md).

/* global L */

const HANDLE = () =>
  L.divIcon({ className: "vertex-handle", html: "", iconSize: [44, 44], iconAnchor: [22, 22] });

export class FenceDrawer {
  /** `onChange()` after every point, drag or radius change (to update hints and buttons). */
  constructor(map, onChange) {
    this.map = map;
    this.onChange = onChange;
    this.mode = null;
    this.points = [];
    this.handles = [];
    this.shape = null;
    this.centre = null;
    this.radius = 150;
    this.onClick = (event) => this.add(event.latlng);
  }

  /** mode "polygon" or "circle"; `geometry` to edit an existing fence's shape. */
  start(mode, geometry = null, radius = 150) {
    this.stop();
    this.mode = mode;
    this.radius = radius;
    this.map.on("click", this.onClick);
    this.map.getContainer().classList.add("drawing");
    if (geometry?.type === "Polygon") {
      const ring = geometry.coordinates[0].slice(0, -1);
      for (const [lon, lat] of ring) this.add(L.latLng(lat, lon));
    } else if (geometry?.type === "Point") {
      const [lon, lat] = geometry.coordinates;
      this.add(L.latLng(lat, lon));
    }
    this.onChange();
  }

  stop() {
    this.map.off("click", this.onClick);
    this.map.getContainer().classList.remove("drawing");
    for (const handle of this.handles) handle.remove();
    this.shape?.remove();
    this.handles = [];
    this.points = [];
    this.shape = null;
    this.centre = null;
    this.mode = null;
  }

  add(latlng) {
    if (this.mode === "circle") {
      this.centre = latlng;
      for (const handle of this.handles) handle.remove();
      this.handles = [this.handle(latlng, (at) => {
        this.centre = at;
      })]; // prettier-ignore
    } else if (this.mode === "polygon") {
      const index = this.points.length;
      this.points.push(latlng);
      this.handles.push(this.handle(latlng, (at) => {
        this.points[index] = at;
      })); // prettier-ignore
    }
    this.redraw();
  }

  handle(latlng, moved) {
    const marker = L.marker(latlng, { icon: HANDLE(), draggable: true, keyboard: false });
    marker.on("drag", () => {
      moved(marker.getLatLng());
      this.redraw();
    });
    return marker.addTo(this.map);
  }

  undo() {
    if (this.mode === "polygon" && this.points.length) {
      this.points.pop();
      this.handles.pop().remove();
    } else if (this.mode === "circle" && this.centre) {
      this.centre = null;
      this.handles.pop()?.remove();
    }
    this.redraw();
  }

  setRadius(metres) {
    this.radius = metres;
    this.redraw();
  }

  redraw() {
    this.shape?.remove();
    this.shape = null;
    const style = { color: "#0d47a1", weight: 3, dashArray: "6 6", fillOpacity: 0.15 };
    if (this.mode === "polygon" && this.points.length >= 2) {
      const Shape = this.points.length >= 3 ? L.polygon : L.polyline;
      this.shape = Shape(this.points, { ...style, interactive: false }).addTo(this.map);
    } else if (this.mode === "circle" && this.centre && this.radius > 0) {
      this.shape = L.circle(this.centre, { ...style, radius: this.radius, interactive: false });
      this.shape.addTo(this.map);
    }
    this.onChange();
  }

  /** Enough to send? (The API judges the rest: self-intersections, sizes, …) */
  ready() {
    if (this.mode === "polygon") return this.points.length >= 3;
    return this.mode === "circle" && Boolean(this.centre);
  }

  count() {
    return this.mode === "polygon" ? this.points.length : Number(Boolean(this.centre));
  }

  geometry() {
    const lonLat = (p) => [Number(p.lng.toFixed(7)), Number(p.lat.toFixed(7))];
    if (this.mode === "polygon") {
      const ring = this.points.map(lonLat);
      return { type: "Polygon", coordinates: [[...ring, ring[0]]] };
    }
    return { type: "Point", coordinates: lonLat(this.centre) };
  }
}
