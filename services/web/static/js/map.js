// The map: Leaflet (served from the xstatic-leaflet package), tiles only when the deployment
// names a tile server (ANXIN_MAP_TILE_URL); without one a plain background with the wearers,
// their accuracy circles and the fences, which is all a family needs to see "inside / outside".

/* global L */

const SHANGHAI = [31.2465, 121.45];
const FENCE_STYLE = {
  safe: { color: "#1b5e20", weight: 3, fillColor: "#2e7d32", fillOpacity: 0.12 },
  nogo: { color: "#a50e0e", weight: 3, dashArray: "8 6", fillColor: "#c62828", fillOpacity: 0.12 },
};

export function createMap(element, tileUrl) {
  const map = L.map(element, { zoomControl: true, attributionControl: Boolean(tileUrl) });
  map.setView(SHANGHAI, 15);
  // Fence names sit under the wearers' pins and names (markers 600, tooltips 650).
  const labels = map.createPane("fenceLabels");
  labels.style.zIndex = 450;
  labels.style.pointerEvents = "none";
  if (tileUrl) {
    L.tileLayer(tileUrl, { maxZoom: 19, attribution: "© map data contributors" }).addTo(map);
  } else {
    element.classList.add("no-tiles");
  }
  return map;
}

/** One wearer on the map: a labelled pin and the accuracy circle. */
export class WearerMarker {
  constructor(map, name) {
    this.map = map;
    this.name = name;
    this.marker = null;
    this.circle = null;
  }

  moveTo(location) {
    const at = [location.lat, location.lon];
    if (!this.marker) {
      const icon = L.divIcon({
        className: "wearer-pin",
        html: "",
        iconSize: [44, 44],
        iconAnchor: [22, 22],
      });
      this.circle = L.circle(at, { radius: location.acc, interactive: false, color: "#0d47a1",
        weight: 1, fillOpacity: 0.08 }).addTo(this.map); // prettier-ignore
      this.marker = L.marker(at, { icon, title: this.name, alt: this.name, keyboard: true })
        .addTo(this.map)
        .bindTooltip(this.name, { permanent: true, direction: "top", offset: [0, -22] });
    } else {
      this.marker.setLatLng(at);
      this.circle.setLatLng(at);
      this.circle.setRadius(location.acc);
    }
    this.circle.setStyle({ dashArray: location.coarse ? "4 4" : null });
  }

  latLng() {
    return this.marker ? this.marker.getLatLng() : null;
  }

  remove() {
    this.marker?.remove();
    this.circle?.remove();
    this.marker = null;
    this.circle = null;
  }
}

/** The wearer's fences, drawn from their GeoJSON (circles are Points with radius_m). */
export class FenceLayer {
  constructor(map) {
    this.map = map;
    this.layer = L.layerGroup().addTo(map);
  }

  show(features, skipId = null) {
    this.layer.clearLayers();
    for (const feature of features) {
      if (feature.id === skipId) continue;
      const kind = feature.properties.kind;
      const style = FENCE_STYLE[kind] ?? FENCE_STYLE.safe;
      const shape = L.geoJSON(feature, {
        style: () => style,
        pointToLayer: (f, at) => L.circle(at, { radius: f.properties.radius_m, ...style }),
        interactive: false,
      });
      shape.bindTooltip(feature.properties.name, {
        permanent: true,
        direction: "center",
        className: "fence-label",
        pane: "fenceLabels",
      });
      this.layer.addLayer(shape);
    }
  }

  bounds() {
    const group = L.featureGroup(this.layer.getLayers());
    return group.getLayers().length ? group.getBounds() : null;
  }
}

/** A line of the day's track and a marker that plays it back. */
export class TrackLayer {
  constructor(map) {
    this.map = map;
    this.line = null;
    this.cursor = null;
  }

  show(points) {
    this.clear();
    if (!points.length) return;
    const path = points.map((p) => [p.lat, p.lon]);
    this.line = L.polyline(path, { color: "#4a148c", weight: 4, opacity: 0.7 }).addTo(this.map);
    this.cursor = L.circleMarker(path[path.length - 1], {
      radius: 9, color: "#fff", weight: 3, fillColor: "#4a148c", fillOpacity: 1,
    }).addTo(this.map); // prettier-ignore
  }

  place(point) {
    this.cursor?.setLatLng([point.lat, point.lon]);
  }

  clear() {
    this.line?.remove();
    this.cursor?.remove();
    this.line = null;
    this.cursor = null;
  }
}
