/* The viewer of `assemble-mosaic serve`: layers, rendering, histogram, point values, cutouts.
 *
 * A token given as /?token=… is kept in memory only: it is removed from the address bar at
 * once and sent as `Authorization: Bearer` on every request (tiles included: they are fetched
 * and shown as blob URLs), so it never travels in a URL after the first page load. */
(function () {
  "use strict";

  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  if (params.has("token")) {
    params.delete("token");
    const rest = params.toString();
    window.history.replaceState(null, "", window.location.pathname + (rest ? "?" + rest : ""));
  }
  const headers = token ? { Authorization: "Bearer " + token } : {};

  const $ = (id) => document.getElementById(id);
  const status = (text) => { $("status").textContent = text; };

  function api(url, init) {
    return fetch(url, Object.assign({}, init, {
      headers: Object.assign({}, headers, (init && init.headers) || {}),
    }));
  }

  async function apiJSON(url, init) {
    const r = await api(url, init);
    const body = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(body.detail || r.status + " " + r.statusText);
    return body;
  }

  const map = L.map("map", { boxZoom: false, zoomSnap: 0.25 }).setView([0, 0], 2);
  let layers = [];
  let current = null;
  let tiles = null;

  /* A GridLayer whose tiles are fetched with the token header and shown from blob URLs. */
  const AuthTiles = L.GridLayer.extend({
    createTile: function (coords, done) {
      const img = document.createElement("img");
      img.alt = "";
      img.setAttribute("role", "presentation");
      const url = this.options.template
        .replace("{z}", coords.z).replace("{x}", coords.x).replace("{y}", coords.y);
      api(url).then((r) => {
        if (r.status === 204 || r.status === 404) return null;  // no data there
        if (!r.ok) throw new Error("tile " + r.status);
        return r.blob();
      }).then((blob) => {
        if (!blob) { done(null, img); return; }
        img.onload = () => { URL.revokeObjectURL(img.src); done(null, img); };
        img.onerror = () => done(new Error("tile decode"), img);
        img.src = URL.createObjectURL(blob);
      }).catch((e) => { status(String(e.message || e)); done(null, img); });
      return img;
    },
  });

  function renderQuery() {
    const q = new URLSearchParams();
    const bidx = $("bidx").value.trim();
    if (bidx) bidx.split(",").forEach((b) => q.append("bidx", b.trim()));
    const rescale = $("rescale").value.trim();
    if (rescale) q.append("rescale", rescale);
    const cmap = $("colormap").value;
    if (cmap) q.append("colormap_name", cmap);
    return q;
  }

  function showTiles() {
    if (tiles) map.removeLayer(tiles);
    const b = current.bounds;
    const q = renderQuery().toString();
    tiles = new AuthTiles({
      template: current.base + "/tiles/WebMercatorQuad/{z}/{x}/{y}.png" + (q ? "?" + q : ""),
      bounds: L.latLngBounds([b[1], b[0]], [b[3], b[2]]),
      minNativeZoom: current.minzoom, maxNativeZoom: current.maxzoom,
      minZoom: 0, maxZoom: current.maxzoom + 4, tileSize: 256,
    });
    tiles.on("load", () => { document.body.dataset.tilesLoaded = current.name; });
    document.body.dataset.tilesLoaded = "";
    tiles.addTo(map);
  }

  async function showHistogram() {
    const q = new URLSearchParams(renderQuery());
    q.delete("rescale"); q.delete("colormap_name");
    let stats;
    try {
      if (current.kind === "mosaicjson") {
        const [w, s, e, n] = current.bounds;
        const feature = { type: "Feature", properties: {}, geometry: { type: "Polygon",
          coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] } };
        q.set("max_size", "512");
        const fc = await apiJSON(current.base + "/statistics?" + q, {
          method: "POST", body: JSON.stringify(feature),
          headers: { "Content-Type": "application/json" },
        });
        stats = fc.properties.statistics;
      } else {
        stats = await apiJSON(current.base + "/statistics?" + q);
      }
    } catch (e) { status("statistics: " + e.message); return; }
    const band = Object.keys(stats)[0];
    const [counts, edges] = stats[band].histogram;
    const c = $("histogram"), g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    const top = Math.max(...counts) || 1, w = c.width / counts.length;
    g.fillStyle = "#468";
    counts.forEach((n, i) => {
      const h = (n / top) * (c.height - 2);
      g.fillRect(i * w + 1, c.height - h, w - 2, h);
    });
    $("hist-band").textContent = band;
    $("hist-range").textContent =
      `min ${stats[band].min}, max ${stats[band].max} (${edges[0]} … ${edges[edges.length - 1]})`;
    if (!$("rescale").value) $("rescale").placeholder = `${stats[band].min},${stats[band].max}`;
    document.body.dataset.histogram = current.name;
  }

  function selectLayer(name) {
    current = layers.find((l) => l.name === name);
    if (!current) return;
    $("layer").value = name;
    $("layer-info").textContent =
      `${current.kind}, ${current.count} band(s) ${current.dtype}, zoom ${current.minzoom}-${current.maxzoom}`;
    const b = current.bounds;
    map.fitBounds([[b[1], b[0]], [b[3], b[2]]]);
    showTiles();
    showHistogram();
  }

  let justDrew = false;  // the mouseup that ends a box also fires a click: not a point query
  map.on("click", async (ev) => {
    if (justDrew) { justDrew = false; return; }
    if (!current) return;
    const { lat, lng } = ev.latlng;
    try {
      const p = await apiJSON(`${current.base}/point/${lng},${lat}`);
      $("point").textContent = p.band_names.map((b, i) => `${b}: ${p.values[i]}`).join("\n") +
        `\n(${lng.toFixed(5)}, ${lat.toFixed(5)})`;
    } catch (e) { $("point").textContent = e.message; }
  });

  /* Shift-drag draws the cutout box (Leaflet's own shift-drag box zoom is off). */
  let drawing = null;
  map.on("mousedown", (ev) => {
    if (!ev.originalEvent.shiftKey) return;
    map.dragging.disable();
    drawing = { start: ev.latlng, rect: L.rectangle([ev.latlng, ev.latlng], {
      color: "#e60", weight: 2, dashArray: "4", fillOpacity: 0.08 }).addTo(map) };
  });
  map.on("mousemove", (ev) => {
    if (drawing) drawing.rect.setBounds([drawing.start, ev.latlng]);
  });
  map.on("mouseup", (ev) => {
    if (!drawing) return;
    const b = L.latLngBounds(drawing.start, ev.latlng);
    map.dragging.enable();
    const rect = drawing.rect; drawing = null; justDrew = true;
    setTimeout(() => { justDrew = false; }, 300);
    setTimeout(() => map.removeLayer(rect), 1500);
    $("box-w").value = b.getWest().toFixed(6); $("box-s").value = b.getSouth().toFixed(6);
    $("box-e").value = b.getEast().toFixed(6); $("box-n").value = b.getNorth().toFixed(6);
  });

  async function download(query, name) {
    status("cutting out …");
    const r = await api("/cutout?" + query);
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      status(`cutout refused (${r.status}): ${body.detail || r.statusText}`);
      return;
    }
    const blob = await r.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    status(`downloaded ${name} (${blob.size} bytes)`);
  }

  $("download-box").addEventListener("click", () => {
    const v = ["box-w", "box-s", "box-e", "box-n"].map((id) => $(id).value.trim());
    if (v.some((x) => x === "" || isNaN(Number(x)))) { status("type W, S, E and N"); return; }
    const q = new URLSearchParams({ layer: current.name, bbox: v.join(",") });
    download(q.toString(), `${current.name}_box.tif`);
  });
  $("download-circle").addEventListener("click", () => {
    const v = ["circle-lon", "circle-lat", "circle-r"].map((id) => $(id).value.trim());
    if (v.some((x) => x === "" || isNaN(Number(x)))) { status("type lon, lat and radius"); return; }
    const q = new URLSearchParams({ layer: current.name, circle: v.join(",") });
    download(q.toString(), `${current.name}_circle.tif`);
  });
  $("apply").addEventListener("click", () => { showTiles(); showHistogram(); });
  $("layer").addEventListener("change", (ev) => {
    $("bidx").value = ""; $("rescale").value = ""; $("colormap").value = "";
    selectLayer(ev.target.value);
  });

  async function start() {
    let config;
    try { config = await apiJSON("/api/config"); } catch (e) { status(e.message); return; }
    layers = config.layers;
    $("layer").replaceChildren(...layers.map((l) => new Option(l.name, l.name)));
    if (!layers.length) { status("no layer to show"); return; }
    status(`${layers.length} layer(s); cutouts up to ${config.max_cutout_pixels} pixels`);
    selectLayer(layers[0].name);
    document.body.dataset.ready = "1";
  }

  window.viewer = { map: map, selectLayer: selectLayer, layers: () => layers };
  start();
})();
