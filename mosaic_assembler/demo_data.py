"""mosaic_assembler.demo_data: a small, synthetic, multi-date Landsat-like sample.

The sample mimics Landsat 8 Collection-2 Level-2 scenes around the UTM zone 31/32 boundary
(6°E) near 45.5°N: a few overlapping scenes acquired on several dates, some in EPSG:32631
and some in EPSG:32632, each with

* four uint16 surface-reflectance bands (blue, green, red, nir08) in C2 L2 DN
  (reflectance = DN * 2.75e-05 - 0.2), nodata = 0 outside the valid footprint;
* a ``qa_pixel`` band with C2 QA_PIXEL bit flags (1 = fill outside the footprint);
* a Landsat-style tilted valid footprint (a rotated rectangle inside the raster).

The landscape (fields, forest, a lake, a river, two towns) is a function of geographic
position, so overlapping scenes agree where they overlap and a composite looks coherent.
Each date adds its own seasonal state, haze, clouds and cloud shadows.

Everything written is a Cloud Optimized GeoTIFF (DEFLATE, 256 px blocks, internal overview),
plus a STAC ``items.json`` ItemCollection (relative hrefs) and a ``mosaic.json`` mosaicJSON
(absolute paths of the 4-band ``_stack.tif`` files, in the order of the items)::

    items.json                        STAC ItemCollection, relative hrefs
    mosaic.json                       mosaicJSON, absolute paths of the _stack.tif files
    <scene_id>/<scene_id>_SR_B2.TIF   blue   (also _SR_B3 green, _SR_B4 red, _SR_B5 nir08)
    <scene_id>/<scene_id>_QA_PIXEL.TIF
    <scene_id>/<scene_id>_stack.tif   4-band blue, green, red, nir08

Dependency order: ``_demo_layout`` (scene geometry, dates, AOI) <-- ``_demo_landscape``
(pixels: landscape, weather, DN, QA_PIXEL) <-- ``_demo_stac`` (STAC items, mosaicJSON)
<-- ``demo_data`` (the COGs and :func:`make_demo_sample`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
from rasterio.crs import CRS as RioCRS
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy
from shapely.geometry import Polygon

from mosaic_assembler._demo_landscape import (
    LANDSAT_OFFSET,
    LANDSAT_SCALE,
    QA_CIRRUS,
    QA_CLEAR,
    QA_CLEAR_LAND,
    QA_CLEAR_WATER,
    QA_CLOUD,
    QA_CLOUD_HIGH_CONF,
    QA_CLOUD_SHADOW,
    QA_DILATED_CLOUD,
    QA_DILATED_CLOUD_VALUE,
    QA_FILL,
    QA_SHADOW_VALUE,
    QA_SNOW,
    QA_WATER,
    Landscape,
    ScenePixels,
    make_weather,
    render_scene,
)
from mosaic_assembler._demo_layout import (
    CENTER_LAT,
    Scene,
    build_layout,
    local_to_lonlat,
    lonlat_ring,
    pick_bbox,
    suggested_zoom,
)
from mosaic_assembler._demo_stac import (
    BAND_NAMES,
    BANDS,
    stac_item,
    write_items,
    write_mosaicjson,
)

__all__ = [
    "BAND_NAMES",
    "DemoSample",
    "LANDSAT_OFFSET",
    "LANDSAT_SCALE",
    "QA_CIRRUS",
    "QA_CLEAR",
    "QA_CLEAR_LAND",
    "QA_CLEAR_WATER",
    "QA_CLOUD",
    "QA_CLOUD_HIGH_CONF",
    "QA_CLOUD_SHADOW",
    "QA_DILATED_CLOUD",
    "QA_DILATED_CLOUD_VALUE",
    "QA_FILL",
    "QA_SHADOW_VALUE",
    "QA_SNOW",
    "QA_WATER",
    "make_demo_sample",
    "suggested_zoom",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSample:
    """A synthetic multi-date sample written to disk by :func:`make_demo_sample`.

    Attributes:
        root: The directory written.
        items_path: STAC ItemCollection JSON (``root/items.json``), relative asset hrefs.
        mosaicjson_path: mosaicJSON (``root/mosaic.json``), absolute ``_stack.tif`` paths.
        scene_paths: The per-scene 4-band COGs (blue, green, red, nir08), in items order.
        bbox: Lon/lat (W, S, E, N) AOI inside the union of the scenes, crossing 6°E.
        zoom: Suggested WebMercatorQuad zoom for 512-px tiles (pixel size close to the
            scenes' native resolution).
    """

    root: Path
    items_path: Path
    mosaicjson_path: Path
    scene_paths: tuple[Path, ...]
    bbox: tuple[float, float, float, float]
    zoom: int


@dataclass(frozen=True)
class _Written:
    """What the scene loop wrote, in items order."""

    items: list[dict[str, Any]]
    stack_paths: list[Path]
    footprints_ll: list[Polygon]


def make_demo_sample(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_scenes: int = 6,
    size: int = 512,
    resolution: float = 60.0,
) -> DemoSample:
    """Write a synthetic multi-date, two-UTM-zone Landsat-like sample to ``out_dir``.

    Scenes come in along-track pairs, one pair per date (the north scene first); a pair
    straddles 6°E so the sample always holds EPSG:32631 and EPSG:32632 scenes, and the
    pairs of different dates are shifted across track so that they overlap. Each scene is
    ``size`` x ``size`` pixels at ``resolution`` metres. Existing files are overwritten.
    The files written are listed in the module docstring.

    Args:
        out_dir: Directory to write (created if needed).
        seed: Seed of the landscape, clouds and noise; same seed, same pixels (and bytes).
        n_scenes: Number of scenes (>= 2); ``ceil(n_scenes / 2)`` acquisition dates.
        size: Scene width and height in pixels (>= 64).
        resolution: Pixel size in metres (> 0).

    Notes:
        * Items are ordered by date, then north scene before south scene; ``scene_paths``
          and each quadkey's asset list in ``mosaic.json`` follow that order. The quadkey
          zoom is the suggested zoom, so ``assets_for_tile`` keeps the order at that zoom
          and above; below it, cogeo-mosaic merges several quadkeys' lists.
        * QA_PIXEL values: 1 fill, 21824 clear land, 21952 clear water, 21762 dilated
          cloud, 22280 high-confidence cloud, 23888 cloud shadow. As in real C2 data, the
          shadow value also has the clear bit (6) set: test bit 4 to mask shadows.
        * One date (of several) is cloud-free; ``eo:cloud_cover`` is the percentage of
          footprint pixels with the cloud bit (3) set.

    Returns:
        The :class:`DemoSample` describing what was written.

    Raises:
        ValueError: If an argument is out of range.
    """
    _check_arguments(n_scenes, size, resolution)
    t0 = time.perf_counter()
    root = Path(out_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    side = size * resolution
    scenes = build_layout(seed, n_scenes, size, resolution)
    written = _write_scenes(root, scenes, seed, size, resolution)
    zoom = suggested_zoom(resolution, CENTER_LAT)
    sample = DemoSample(
        root=root,
        items_path=write_items(root / "items.json", written.items),
        mosaicjson_path=write_mosaicjson(
            root / "mosaic.json", written.items, written.stack_paths, zoom
        ),
        scene_paths=tuple(written.stack_paths),
        bbox=pick_bbox(written.footprints_ll, margin_m=0.04 * side),
        zoom=zoom,
    )
    _log_sample(sample, scenes, t0)
    return sample


def _check_arguments(n_scenes: int, size: int, resolution: float) -> None:
    if n_scenes < 2:
        raise ValueError(f"n_scenes must be >= 2, got {n_scenes}")
    if size < 64:
        raise ValueError(f"size must be >= 64, got {size}")
    if not (resolution > 0 and math.isfinite(resolution)):
        raise ValueError(f"resolution must be a positive number, got {resolution}")


def _write_scenes(
    root: Path, scenes: Sequence[Scene], seed: int, size: int, resolution: float
) -> _Written:
    """Render and write every scene; its STAC item and lon/lat footprint alongside."""
    side = size * resolution
    landscape = Landscape(seed, side)
    weather = make_weather(seed, scenes, side)
    to_ll = local_to_lonlat()
    items: list[dict[str, Any]] = []
    stack_paths: list[Path] = []
    footprints_ll: list[Polygon] = []
    for scene in scenes:
        pixels = render_scene(scene, size, seed, landscape, weather[scene.date_index])
        stack_paths.append(_write_scene_cogs(root, scene, pixels))
        ring = lonlat_ring(scene, to_ll)
        footprints_ll.append(Polygon(ring))
        items.append(stac_item(scene, ring, pixels.cloud_cover, size, resolution))
        logger.debug(
            "scene %s: EPSG:%d, %s, cloud cover %.2f%%",
            scene.scene_id,
            scene.epsg,
            scene.acquired.isoformat(),
            pixels.cloud_cover,
        )
    return _Written(items=items, stack_paths=stack_paths, footprints_ll=footprints_ll)


def _log_sample(sample: DemoSample, scenes: Sequence[Scene], t0: float) -> None:
    logger.debug(
        "demo sample: %d scenes on %d dates in %s, zoom %d, bbox %s, written to %s in %.2fs",
        len(scenes),
        scenes[-1].date_index + 1,
        sorted({f"EPSG:{s.epsg}" for s in scenes}),
        sample.zoom,
        sample.bbox,
        sample.root,
        time.perf_counter() - t0,
    )


def _write_scene_cogs(root: Path, scene: Scene, pixels: ScenePixels) -> Path:
    """Write a scene's band, QA_PIXEL and stack COGs in ``root/<scene_id>``; the stack's path."""
    sid = scene.scene_id
    sdir = root / sid
    sdir.mkdir(exist_ok=True)
    for b, (name, _band, suffix, *_rest) in enumerate(BANDS):
        _write_cog(
            sdir / f"{sid}_{suffix}.TIF", pixels.data[b : b + 1], scene, 0, "AVERAGE", [name]
        )
    _write_cog(sdir / f"{sid}_QA_PIXEL.TIF", pixels.qa[None], scene, None, "NEAREST", ["qa_pixel"])
    stack_path = sdir / f"{sid}_stack.tif"
    _write_cog(stack_path, pixels.data, scene, 0, "AVERAGE", list(BAND_NAMES))
    return stack_path


def _write_cog(
    path: Path,
    data: numpy.ndarray,
    scene: Scene,
    nodata: float | None,
    resampling: str,
    descriptions: Sequence[str],
) -> None:
    """Write a (bands, H, W) array on a scene's grid as a DEFLATE COG with overviews."""
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "count": count,
        "height": height,
        "width": width,
        "dtype": data.dtype.name,
        "crs": RioCRS.from_epsg(scene.epsg),
        "transform": scene.transform,
        "nodata": nodata,
    }
    with MemoryFile() as mem, mem.open(**profile) as tmp:
        tmp.write(data)
        for i, desc in enumerate(descriptions, start=1):
            tmp.set_band_description(i, desc)
        rio_copy(
            tmp,
            str(path),
            driver="COG",
            COMPRESS="DEFLATE",
            PREDICTOR="YES",
            BLOCKSIZE="256",
            OVERVIEWS="AUTO",
            RESAMPLING=resampling,
            BIGTIFF="NO",
        )
