"""Cutouts at full resolution: a lon/lat box, or a circle, of a layer → a GeoTIFF.

The pixels are the source's own (no resampling): the box is taken to the COG's CRS, widened
to whole pixels, and read as a window with rasterio. A split output's COGs share one grid, so
its cutout is their windows pasted into one array (`rasterio.merge` at the native grid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy
import rasterio
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from rasterio.warp import transform, transform_bounds
from rasterio.windows import Window, from_bounds

from mosaic_assembler.errors import ConfigError, OutsideLayerError, PlanTooLargeError

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG): the circle's metres are on this sphere
WGS84 = CRS.from_epsg(4326)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """`W,S,E,N` in degrees.

    Raises:
        ConfigError: not four numbers, or W >= E or S >= N.
    """
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError as err:
        raise ConfigError(f"`bbox` must be W,S,E,N in degrees, got {text!r}") from err
    if not (w < e and s < n and -90 <= s and n <= 90):
        raise ConfigError(f"`bbox` must have W < E and -90 <= S < N <= 90, got {text!r}")
    return w, s, e, n


def parse_circle(text: str) -> tuple[float, float, float]:
    """`LON,LAT,RADIUS_M`.

    Raises:
        ConfigError: not three numbers, or a radius that is not positive.
    """
    try:
        lon, lat, radius = (float(v) for v in text.split(","))
    except ValueError as err:
        raise ConfigError(f"`circle` must be LON,LAT,RADIUS_M, got {text!r}") from err
    if not (radius > 0 and -90 < lat < 90 and all(map(math.isfinite, (lon, lat, radius)))):
        raise ConfigError(f"`circle` needs -90 < LAT < 90 and RADIUS_M > 0, got {text!r}")
    return lon, lat, radius


def circle_bbox(lon: float, lat: float, radius_m: float) -> tuple[float, float, float, float]:
    """The lon/lat box around a circle of `radius_m` metres (on the mean-radius sphere)."""
    dlat = math.degrees(radius_m / EARTH_RADIUS_M)
    coslat = max(math.cos(math.radians(min(89.9, abs(lat) + dlat))), 1e-6)
    dlon = min(180.0, math.degrees(radius_m / (EARTH_RADIUS_M * coslat)))
    return lon - dlon, max(-90.0, lat - dlat), lon + dlon, min(90.0, lat + dlat)


def haversine_m(
    lon0: float, lat0: float, lons: numpy.ndarray, lats: numpy.ndarray
) -> numpy.ndarray:
    """Great-circle distances in metres from one point."""
    p0, p = math.radians(lat0), numpy.radians(lats)
    dp, dl = p - p0, numpy.radians(lons - lon0)
    a = numpy.sin(dp / 2) ** 2 + math.cos(p0) * numpy.cos(p) * numpy.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * numpy.arcsin(numpy.sqrt(numpy.clip(a, 0, 1)))


def bbox_window(
    src: rasterio.DatasetReader, bbox: tuple[float, float, float, float]
) -> Window | None:
    """The whole-pixel window of `src` covering a lon/lat box, clipped to `src`; None outside."""
    left, bottom, right, top = transform_bounds(WGS84, src.crs, *bbox, densify_pts=21)
    win = from_bounds(left, bottom, right, top, src.transform)
    c0, r0 = math.floor(win.col_off + 1e-9), math.floor(win.row_off + 1e-9)
    c1 = math.ceil(win.col_off + win.width - 1e-9)
    r1 = math.ceil(win.row_off + win.height - 1e-9)
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, src.width), min(r1, src.height)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)  # type: ignore[call-arg]


def read_cutout(
    files: Sequence[Path], bbox: tuple[float, float, float, float], max_pixels: int
) -> tuple[numpy.ndarray, numpy.ndarray, dict]:
    """The full-resolution pixels of a lon/lat box: (bands, mask, GeoTIFF profile).

    `mask` is 255 where there is data and 0 elsewhere (GDAL's mask convention).

    Raises:
        OutsideLayerError: the box misses every file.
        PlanTooLargeError: the cutout has more than `max_pixels` pixels.
    """
    with rasterio.open(files[0]) as ref:
        profile = _profile(ref)
        res = ref.res
        origin = (ref.transform.c, ref.transform.f)
    if len(files) == 1:
        with rasterio.open(files[0]) as src:
            win = bbox_window(src, bbox)
            if win is None:
                raise OutsideLayerError(f"the box {bbox} does not overlap the layer")
            _check_size(int(win.width), int(win.height), max_pixels)
            data = src.read(window=win)
            mask = src.dataset_mask(window=win)
            tf = src.window_transform(win)
    else:
        data, mask, tf = _read_split(files, bbox, res, origin, max_pixels)
    profile.update(width=data.shape[2], height=data.shape[1], transform=tf)
    return data, mask, profile


def _read_split(
    files: Sequence[Path],
    bbox: tuple[float, float, float, float],
    res: tuple[float, float],
    origin: tuple[float, float],
    max_pixels: int,
) -> tuple[numpy.ndarray, numpy.ndarray, Affine]:
    """Paste each split COG's window into one array on their shared grid."""
    with rasterio.open(files[0]) as ref:
        crs, count, dtype = ref.crs, ref.count, ref.dtypes[0]
    left, bottom, right, top = transform_bounds(WGS84, crs, *bbox, densify_pts=21)
    c0 = math.floor((left - origin[0]) / res[0] + 1e-9)
    c1 = math.ceil((right - origin[0]) / res[0] - 1e-9)
    r0 = math.floor((origin[1] - top) / res[1] + 1e-9)
    r1 = math.ceil((origin[1] - bottom) / res[1] - 1e-9)
    parts = []
    for path in files:  # clip the box to the union of the files
        with rasterio.open(path) as src:
            cc0 = round((src.transform.c - origin[0]) / res[0])
            rr0 = round((origin[1] - src.transform.f) / res[1])
            parts.append((path, rr0, cc0, src.height, src.width))
    c0 = max(c0, min(p[2] for p in parts))
    r0 = max(r0, min(p[1] for p in parts))
    c1 = min(c1, max(p[2] + p[4] for p in parts))
    r1 = min(r1, max(p[1] + p[3] for p in parts))
    if c1 <= c0 or r1 <= r0:
        raise OutsideLayerError(f"the box {bbox} does not overlap the layer")
    width, height = c1 - c0, r1 - r0
    _check_size(width, height, max_pixels)
    data = numpy.zeros((count, height, width), dtype=dtype)
    mask = numpy.zeros((height, width), dtype="uint8")
    for path, rr0, cc0, h, w in parts:
        a0, a1 = max(r0, rr0), min(r1, rr0 + h)
        b0, b1 = max(c0, cc0), min(c1, cc0 + w)
        if a1 <= a0 or b1 <= b0:
            continue
        win = Window(b0 - cc0, a0 - rr0, b1 - b0, a1 - a0)  # type: ignore[call-arg]
        with rasterio.open(path) as src:
            m = src.dataset_mask(window=win) > 0
            block = src.read(window=win)
        sub = data[:, a0 - r0 : a1 - r0, b0 - c0 : b1 - c0]
        sub[:, m] = block[:, m]
        mask[a0 - r0 : a1 - r0, b0 - c0 : b1 - c0][m] = 255
    tf = Affine(res[0], 0, origin[0] + c0 * res[0], 0, -res[1], origin[1] - r0 * res[1])
    return data, mask, tf


def mask_circle(
    data: numpy.ndarray, mask: numpy.ndarray, profile: dict, lon: float, lat: float, radius: float
) -> None:
    """Mask (in place) the pixels whose centre is farther than `radius` metres from lon/lat."""
    h, w = mask.shape
    rows, cols = numpy.mgrid[0:h, 0:w]
    xs, ys = rasterio.transform.xy(profile["transform"], rows.ravel(), cols.ravel())
    lons, lats = transform(profile["crs"], WGS84, numpy.asarray(xs), numpy.asarray(ys))
    far = (haversine_m(lon, lat, numpy.asarray(lons), numpy.asarray(lats)) > radius).reshape(h, w)
    mask[far] = 0


def write_geotiff(data: numpy.ndarray, mask: numpy.ndarray, profile: dict) -> bytes:
    """A deflated, tiled GeoTIFF of the cutout with its mask (and the source's nodata).

    Masked pixels are set to the nodata value (or 0) so that readers that ignore the mask
    still see no stale data there.
    """
    fill = profile.get("nodata")
    data = data.copy()
    data[:, mask == 0] = 0 if fill is None else fill
    tiled = data.shape[1] >= 256 and data.shape[2] >= 256
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with MemoryFile() as mem:
            with mem.open(**profile, tiled=tiled, compress="deflate") as dst:
                dst.write(data)
                dst.write_mask(mask)
            return bytes(mem.read())


def _profile(src: rasterio.DatasetReader) -> dict:
    profile = dict(driver="GTiff", count=src.count, dtype=src.dtypes[0], crs=src.crs)
    if src.nodata is not None:
        profile["nodata"] = src.nodata
    return profile


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise PlanTooLargeError(
            f"the cutout would be {width} x {height} = {width * height} pixels, above the "
            f"limit of {max_pixels} pixels (`max_cutout_pixels`): ask for a smaller area"
        )
