// The offline previewer of a tile pyramid written by `assemble-mosaic tiles`.
// window.PREVIEW (written by the command) holds: kind ("folder" or "pmtiles"), url, crs
// ("EPSG3857" or "EPSG4326"), tilesize, minzoom, maxzoom, bounds [w, s, e, n] in lon/lat,
// and for a folder `present`: {z: [x0, y0, x1, y1, ...]}, the tiles written (or null), so
// that no request is made for a tile without data (from file:// that would be an error).
(function () {
  "use strict";
  var cfg = window.PREVIEW;
  var offset = Math.round(Math.log2(cfg.tilesize / 256)); // 512 px tiles: map zoom = z + 1
  var bounds = L.latLngBounds([cfg.bounds[1], cfg.bounds[0]], [cfg.bounds[3], cfg.bounds[2]]);
  var map = L.map("map", {
    crs: L.CRS[cfg.crs],
    minZoom: cfg.minzoom + offset,
    maxZoom: cfg.maxzoom + offset + 2,
    maxBounds: bounds.pad(1),
  });
  var options = {
    tileSize: cfg.tilesize,
    zoomOffset: -offset,
    minZoom: cfg.minzoom + offset,
    maxZoom: cfg.maxzoom + offset + 2,
    minNativeZoom: cfg.minzoom + offset,
    maxNativeZoom: cfg.maxzoom + offset,
    bounds: bounds,
    noWrap: true,
    attribution: "assemble-mosaic tiles",
  };
  var layer;
  if (cfg.kind === "pmtiles") {
    layer = pmtiles.leafletRasterLayer(new pmtiles.PMTiles(cfg.url), options);
  } else {
    var present = null;
    if (cfg.present) {
      present = new Set();
      Object.keys(cfg.present).forEach(function (z) {
        var xy = cfg.present[z];
        for (var i = 0; i < xy.length; i += 2) present.add(z + "/" + xy[i] + "/" + xy[i + 1]);
      });
    }
    var Pyramid = L.TileLayer.extend({
      _isValidTile: function (coords) {
        if (!L.TileLayer.prototype._isValidTile.call(this, coords)) return false;
        if (!present) return true;
        var z = coords.z + this.options.zoomOffset;
        return present.has(z + "/" + coords.x + "/" + coords.y);
      },
    });
    layer = new Pyramid(cfg.url, options);
  }
  layer.on("load", function () { window.previewLoaded = true; });
  layer.addTo(map);
  map.fitBounds(bounds);
  var info = L.control({ position: "bottomleft" });
  info.onAdd = function () {
    var div = L.DomUtil.create("div", "preview-info");
    var show = function (e) {
      var z = map.getZoom() - offset;
      var p = e && e.latlng ? e.latlng.lat.toFixed(5) + ", " + e.latlng.lng.toFixed(5) : "";
      div.textContent = "zoom " + z + " (tiles " + cfg.minzoom + "-" + cfg.maxzoom + ") " + p;
    };
    map.on("zoomend", show);
    map.on("mousemove", show);
    show();
    return div;
  };
  info.addTo(map);
  window.previewMap = map;
})();
