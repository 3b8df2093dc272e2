"""The demo sample's documents: STAC Items, their ItemCollection file and the mosaicJSON.

Items carry the eo, projection, raster, view, classification and landsat extensions, as
the USGS Landsat Collection-2 Level-2 items do.

Dependency order: ``_demo_layout <-- _demo_landscape <-- _demo_stac <-- demo_data``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mosaic_assembler._demo_landscape import LANDSAT_OFFSET, LANDSAT_SCALE
from mosaic_assembler._demo_layout import Scene

__all__ = ["BANDS", "BAND_NAMES", "stac_item", "write_items", "write_mosaicjson"]

BAND_NAMES: tuple[str, ...] = ("blue", "green", "red", "nir08")
"""Data bands, in the order of the ``_stack.tif`` files."""

# (common name, Landsat band, file suffix, center wavelength µm, FWHM µm, title)
BANDS: tuple[tuple[str, str, str, float, float, str], ...] = (
    ("blue", "B2", "SR_B2", 0.48, 0.06, "Blue Band"),
    ("green", "B3", "SR_B3", 0.56, 0.06, "Green Band"),
    ("red", "B4", "SR_B4", 0.65, 0.04, "Red Band"),
    ("nir08", "B5", "SR_B5", 0.86, 0.03, "Near Infrared Band 0.8"),
)

_COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

_STAC_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "https://landsat.usgs.gov/stac/landsat-extension/v1.1.1/schema.json",
]

_QA_BITFIELDS: list[dict[str, Any]] = [
    {"name": "fill", "offset": 0, "length": 1, "description": "Image or fill data"},
    {"name": "dilated_cloud", "offset": 1, "length": 1, "description": "Dilated cloud"},
    {"name": "cirrus", "offset": 2, "length": 1, "description": "Cirrus mask"},
    {"name": "cloud", "offset": 3, "length": 1, "description": "Cloud mask"},
    {"name": "cloud_shadow", "offset": 4, "length": 1, "description": "Cloud shadow"},
    {"name": "snow", "offset": 5, "length": 1, "description": "Snow/ice"},
    {"name": "clear", "offset": 6, "length": 1, "description": "Clear"},
    {"name": "water", "offset": 7, "length": 1, "description": "Water"},
    {"name": "cloud_confidence", "offset": 8, "length": 2, "description": "Cloud confidence"},
    {
        "name": "cloud_shadow_confidence",
        "offset": 10,
        "length": 2,
        "description": "Cloud shadow confidence",
    },
    {
        "name": "snow_ice_confidence",
        "offset": 12,
        "length": 2,
        "description": "Snow/ice confidence",
    },
    {"name": "cirrus_confidence", "offset": 14, "length": 2, "description": "Cirrus confidence"},
]


def stac_item(
    scene: Scene,
    ring: list[list[float]],
    cloud_cover: float,
    size: int,
    resolution: float,
) -> dict[str, Any]:
    """The scene's STAC Item (eo, projection, raster, view, classification, landsat)."""
    xs = [p[0] for p in ring]
    ys = [p[1] for p in ring]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": list(_STAC_EXTENSIONS),
        "id": scene.scene_id,
        "bbox": [min(xs), min(ys), max(xs), max(ys)],
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": _item_properties(scene, cloud_cover, size, resolution),
        "links": [],
        "assets": _item_assets(scene.scene_id, resolution),
    }


def _item_properties(
    scene: Scene, cloud_cover: float, size: int, resolution: float
) -> dict[str, Any]:
    t = scene.transform
    return {
        "datetime": scene.acquired.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "platform": "landsat-8",
        "instruments": ["oli", "tirs"],
        "gsd": resolution,
        "eo:cloud_cover": cloud_cover,
        "proj:code": f"EPSG:{scene.epsg}",
        "proj:epsg": scene.epsg,
        "proj:shape": [size, size],
        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
        "proj:bbox": [t.c, t.f + size * t.e, t.c + size * t.a, t.f],
        "view:sun_azimuth": scene.sun_azimuth,
        "view:sun_elevation": scene.sun_elevation,
        "view:off_nadir": 0,
        "landsat:wrs_path": f"{scene.path:03d}",
        "landsat:wrs_row": f"{scene.row:03d}",
    }


def _item_assets(sid: str, resolution: float) -> dict[str, Any]:
    """One asset per band, then ``qa_pixel``, then the 4-band ``stack``."""
    assets: dict[str, Any] = {}
    for name, band, suffix, _wl, _fwhm, title in BANDS:
        assets[name] = {
            "href": f"./{sid}/{sid}_{suffix}.TIF",
            "type": _COG_MEDIA_TYPE,
            "title": f"{title} ({band})",
            "roles": ["data", "reflectance"],
            "eo:bands": _eo_bands([name]),
            "raster:bands": _raster_bands([name], resolution),
        }
    assets["qa_pixel"] = {
        "href": f"./{sid}/{sid}_QA_PIXEL.TIF",
        "type": _COG_MEDIA_TYPE,
        "title": "Pixel Quality Assessment Band",
        "roles": ["cloud", "cloud-shadow", "snow-ice", "water-mask"],
        "raster:bands": [
            {
                "data_type": "uint16",
                "nodata": 1,
                "spatial_resolution": resolution,
                "unit": "bit index",
            }
        ],
        "classification:bitfields": _QA_BITFIELDS,
    }
    assets["stack"] = {
        "href": f"./{sid}/{sid}_stack.tif",
        "type": _COG_MEDIA_TYPE,
        "title": "Surface reflectance stack (blue, green, red, nir08)",
        "roles": ["data", "reflectance"],
        "eo:bands": _eo_bands(BAND_NAMES),
        "raster:bands": _raster_bands(BAND_NAMES, resolution),
    }
    return assets


def _raster_bands(names: Sequence[str], resolution: float) -> list[dict[str, Any]]:
    return [
        {
            "data_type": "uint16",
            "nodata": 0,
            "scale": LANDSAT_SCALE,
            "offset": LANDSAT_OFFSET,
            "spatial_resolution": resolution,
            "unit": "none",
        }
        for _ in names
    ]


def _eo_bands(names: Sequence[str]) -> list[dict[str, Any]]:
    info = {b[0]: b for b in BANDS}
    return [
        {
            "name": info[n][2],
            "common_name": n,
            "center_wavelength": info[n][3],
            "full_width_half_max": info[n][4],
        }
        for n in names
    ]


def write_items(path: Path, items: Sequence[dict[str, Any]]) -> Path:
    """Write the STAC ItemCollection."""
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": list(items)}, indent=1) + "\n"
    )
    return path


def write_mosaicjson(
    path: Path, items: Sequence[dict[str, Any]], scene_paths: Sequence[Path], zoom: int
) -> Path:
    """Write the mosaicJSON: quadkeys at ``zoom``, assets in items order."""
    from cogeo_mosaic.mosaic import MosaicJSON

    href = {item["id"]: str(p) for item, p in zip(items, scene_paths, strict=True)}
    mosaic = MosaicJSON.from_features(
        list(items),
        minzoom=max(0, zoom - 2),
        maxzoom=zoom,
        quadkey_zoom=zoom,
        accessor=lambda feature: href[feature["id"]],
    )
    mosaic.name = "mosaic-assembler demo sample"
    # cogeo-mosaic lists a quadkey's assets in feature order already; enforce it anyway
    rank = {p: i for i, p in enumerate(href.values())}
    for qk, assets in mosaic.tiles.items():
        mosaic.tiles[qk] = sorted(assets, key=rank.__getitem__)
    path.write_text(mosaic.model_dump_json(exclude_none=True))
    return path
