"""mosaic_assembler._batch_index: a batch's outputs as a STAC ItemCollection and a mosaicJSON.

Both are made from the ledger's entries alone (a rerun that skips every feature makes the
same documents); `_batch_out` writes them atomically (locally or on S3), with the hrefs it
gives (relative locally, s3:// URLs on S3).
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import mercantile
from shapely.geometry import box, mapping, shape

from mosaic_assembler._features import Feature
from mosaic_assembler.grid import MAX_LAT

__all__ = ["index_text", "mosaicjson_text", "stac_item"]

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
STAC_VERSION = "1.1.0"  # the core schemas pystac ships: the index validates offline
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"

#: The grid of a ledger entry that names none (WebMercatorQuad: older ledgers).
DEFAULT_CRS, DEFAULT_TMS = "EPSG:3857", "WebMercatorQuad"


def index_text(
    features: Sequence[Feature],
    entries: Mapping[str, Mapping[str, Any]],
    href: Callable[[str], str] = lambda name: f"./{name}",
) -> str:
    """`index.json`: one STAC Item per COG (done features), in file order."""
    items = [
        stac_item(f, entries[f.id], href) for f in features if entries[f.id].get("event") == "done"
    ]
    return json.dumps({"type": "FeatureCollection", "features": items}, indent=1)


def stac_item(
    feature: Feature,
    entry: Mapping[str, Any],
    href: Callable[[str], str] = lambda name: f"./{name}",
) -> dict[str, Any]:
    """The STAC Item of one COG: the feature's polygon, the COG (relative href), its grid.

    `datetime` is when the feature was finished (from the ledger), so a rerun that skips it
    writes the same Item.
    """
    geom = feature.geometry
    when = _iso(float(entry["t"]))
    left, bottom, right, top = entry["bounds"]
    width, height = int(entry["width"]), int(entry["height"])
    res_x, res_y = (right - left) / width, (top - bottom) / height
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [PROJECTION],
        "id": feature.id,
        "geometry": geom,
        "bbox": list(shape(geom).bounds),
        "properties": {
            "datetime": when,
            "created": when,
            "mosaic:feature": feature.value,
            "proj:code": _proj_code(entry),
            "proj:shape": [height, width],
            "proj:transform": [res_x, 0.0, left, 0.0, -res_y, top],
            "proj:bbox": [left, bottom, right, top],
        },
        "assets": {
            "data": {
                "href": href(entry["path"]),
                "type": COG_TYPE,
                "roles": ["data"],
            }
        },
        "links": [],
    }


def mosaicjson_text(
    entries: Mapping[str, Mapping[str, Any]], path_of: Callable[[str], str]
) -> str | None:
    """`mosaic.json` over the COGs when they share a WebMercatorQuad grid (else None).

    A mosaicJSON indexes Web Mercator quadkeys; COGs on another grid (`tms`, `crs`) get
    only the index. `path_of` gives each COG's path (absolute: cogeo-mosaic resolves
    relative paths against the working directory, not the document). `minzoom` is where the
    largest COG fits one tile.
    """
    done = [e for e in entries.values() if e.get("event") == "done"]
    grids = {(e.get("tms", DEFAULT_TMS), e["zoom"], e["tilesize"]) for e in done}
    if len(grids) != 1 or next(iter(grids))[0] != DEFAULT_TMS:
        return None
    from cogeo_mosaic.mosaic import MosaicJSON

    ((_, zoom, tilesize),) = grids
    side = max(max(e["width"], e["height"]) for e in done)
    minzoom = max(0, zoom - math.ceil(math.log2(max(1.0, side / tilesize))))
    footprints = [
        {
            "type": "Feature",
            "geometry": _footprint(e["bounds"]),
            "properties": {"path": path_of(e["path"])},
        }
        for e in done
    ]
    mosaic = MosaicJSON.from_features(footprints, minzoom=minzoom, maxzoom=zoom, quiet=True)
    return str(mosaic.model_dump_json(exclude_none=True))


def _footprint(bounds: Sequence[float]) -> dict[str, Any]:
    """A Web Mercator box as a lon/lat polygon (latitudes clamped to the grid's)."""
    left, bottom, right, top = bounds
    west, north = mercantile.lnglat(left, top)
    east, south = mercantile.lnglat(right, bottom)
    return dict(mapping(box(west, max(south, -MAX_LAT), east, min(north, MAX_LAT))))


def _proj_code(entry: Mapping[str, Any]) -> str | None:
    """The COG's `proj:code`: its EPSG code, None for a CRS that has none ("custom")."""
    crs = str(entry.get("crs", DEFAULT_CRS))
    return crs if crs.upper().startswith("EPSG:") else None


def _iso(t: float) -> str:
    when = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
