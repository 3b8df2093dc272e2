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
(absolute paths of the 4-band ``_stack.tif`` files, in the order of the items).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.crs import CRS as RioCRS
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy
from shapely.geometry import Point, Polygon, box
from shapely.geometry.polygon import orient
from shapely.ops import unary_union

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

# --------------------------------------------------------------------------------------------
# Landsat Collection-2 conventions
# --------------------------------------------------------------------------------------------

LANDSAT_SCALE = 2.75e-05
"""C2 L2 surface reflectance scale: reflectance = DN * LANDSAT_SCALE + LANDSAT_OFFSET."""
LANDSAT_OFFSET = -0.2
"""C2 L2 surface reflectance offset."""

BAND_NAMES: tuple[str, ...] = ("blue", "green", "red", "nir08")
"""Data bands, in the order of the ``_stack.tif`` files."""

# (common name, Landsat band, file suffix, center wavelength µm, FWHM µm, title)
_BANDS: tuple[tuple[str, str, str, float, float, str], ...] = (
    ("blue", "B2", "SR_B2", 0.48, 0.06, "Blue Band"),
    ("green", "B3", "SR_B3", 0.56, 0.06, "Green Band"),
    ("red", "B4", "SR_B4", 0.65, 0.04, "Red Band"),
    ("nir08", "B5", "SR_B5", 0.86, 0.03, "Near Infrared Band 0.8"),
)

# QA_PIXEL single-bit flags.
QA_FILL = 1 << 0
QA_DILATED_CLOUD = 1 << 1
QA_CIRRUS = 1 << 2
QA_CLOUD = 1 << 3
QA_CLOUD_SHADOW = 1 << 4
QA_SNOW = 1 << 5
QA_CLEAR = 1 << 6
QA_WATER = 1 << 7

# Whole QA_PIXEL values used by the generator (all real Landsat 8 C2 values).
QA_CLEAR_LAND = 21824  # clear; cloud/shadow/snow/cirrus confidence low
QA_CLEAR_WATER = 21952  # clear + water
QA_DILATED_CLOUD_VALUE = 21762  # dilated cloud, not clear
QA_CLOUD_HIGH_CONF = 22280  # cloud, high cloud confidence
QA_SHADOW_VALUE = 23888  # cloud shadow (high shadow confidence), clear bit set as in C2

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

# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------

_ZONE_BOUNDARY_LON = 6.0  # UTM zone 31 | 32
_CENTER_LON = 6.0
_CENTER_LAT = 45.46
_TILT_DEG = 12.2  # Landsat descending track, clockwise from grid north
_FOOTPRINT_CROSS = 0.80  # valid width (across track), as a fraction of the raster side
_FOOTPRINT_ALONG = 0.78  # valid height (along track), as a fraction of the raster side
_ALONG_SPACING = 0.86  # along-track distance of a date's two scenes, in footprint heights
# Per-date offsets of the scene pair: east (footprint widths) and north (footprint heights).
_DATE_EAST = (0.0, -0.45, 0.45, -0.22, 0.22, -0.1, 0.1)
_DATE_NORTH = (0.0, 0.0, 0.0, 0.15, -0.15, 0.07, -0.07)
_FIRST_DATE = _dt.date(2023, 5, 12)
_WRS_PATH = 196
_WRS_ROW = 28
_EARTH_CIRCUMFERENCE = 2 * math.pi * 6378137.0

_LOCAL_CRS = CRS.from_proj4(
    f"+proj=tmerc +lat_0={_CENTER_LAT} +lon_0={_CENTER_LON} +k=1 +x_0=0 +y_0=0 "
    "+ellps=WGS84 +units=m +no_defs"
)


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
class _Scene:
    index: int
    date_index: int
    scene_id: str
    acquired: _dt.datetime
    path: int
    row: int
    epsg: int
    center: tuple[float, float]  # footprint center, local frame (m)
    corners_local: tuple[tuple[float, float], ...]  # footprint corners, local frame (m)
    transform: Affine
    sun_azimuth: float
    sun_elevation: float


def suggested_zoom(resolution: float, latitude: float, tilesize: int = 512) -> int:
    """WebMercatorQuad zoom whose ground pixel size is closest to ``resolution``.

    Args:
        resolution: Native ground resolution in metres.
        latitude: Latitude (degrees) where the ground pixel size is evaluated.
        tilesize: Tile size in pixels.

    Returns:
        The zoom level (0-24) minimising ``|log(pixel_size / resolution)|``.
    """
    coslat = math.cos(math.radians(latitude))

    def err(z: int) -> float:
        return abs(math.log(_EARTH_CIRCUMFERENCE / (tilesize * 2**z) * coslat / resolution))

    return min(range(25), key=err)


def _local_to_lonlat() -> Transformer:
    return Transformer.from_crs(_LOCAL_CRS, CRS.from_epsg(4326), always_xy=True)


def _build_layout(seed: int, n_scenes: int, size: int, resolution: float) -> list[_Scene]:
    """Place the scenes: pairs of along-track neighbours, one pair per date."""
    rng = numpy.random.default_rng([seed, 1])
    side = size * resolution
    width = _FOOTPRINT_CROSS * side
    height = _FOOTPRINT_ALONG * side
    tilt = math.radians(_TILT_DEG)
    along = numpy.array([math.sin(tilt), math.cos(tilt)])  # track direction (towards north)
    cross = numpy.array([math.cos(tilt), -math.sin(tilt)])  # across track (towards east)
    to_ll = _local_to_lonlat()

    n_dates = (n_scenes + 1) // 2
    scenes: list[_Scene] = []
    for d in range(n_dates):
        offset_days = 16 * d + 7 * ((d + 1) // 2)
        date = _FIRST_DATE + _dt.timedelta(days=offset_days)
        doy = date.timetuple().tm_yday
        base = numpy.array(
            [_DATE_EAST[d % len(_DATE_EAST)] * width, _DATE_NORTH[d % len(_DATE_NORTH)] * height]
        )
        path = _WRS_PATH - int(round(_DATE_EAST[d % len(_DATE_EAST)] / 0.45))
        start = _dt.datetime(date.year, date.month, date.day, 10, 16, 40, tzinfo=_dt.UTC)
        start += _dt.timedelta(seconds=int(rng.integers(0, 30)))
        declination = 23.44 * math.sin(2 * math.pi * (doy - 81) / 365.0)
        sun_elevation = round(90.0 - _CENTER_LAT + declination - 9.0 + rng.uniform(-0.5, 0.5), 4)
        sun_azimuth = round(
            138.0 + 6.0 * math.cos(2 * math.pi * (doy - 172) / 365.0) + rng.uniform(-1.0, 1.0), 4
        )
        for k in range(2):
            if len(scenes) == n_scenes:
                break
            sign = 1.0 if k == 0 else -1.0  # north scene first (descending pass)
            center = base + sign * 0.5 * _ALONG_SPACING * height * along
            corners = []
            for cu, cv in ((-1, 1), (1, 1), (1, -1), (-1, -1)):
                p = center + cu * 0.5 * width * cross + cv * 0.5 * height * along
                corners.append((float(p[0]), float(p[1])))
            lon, lat = to_ll.transform(float(center[0]), float(center[1]))
            epsg = 32631 if lon < _ZONE_BOUNDARY_LON else 32632
            to_utm = Transformer.from_crs(_LOCAL_CRS, CRS.from_epsg(epsg), always_xy=True)
            ux, uy = to_utm.transform(float(center[0]), float(center[1]))
            x0 = math.floor((ux - side / 2) / resolution + 0.5) * resolution
            ytop = math.floor((uy + side / 2) / resolution + 0.5) * resolution
            row = _WRS_ROW + k
            acquired = start + _dt.timedelta(seconds=24 * k)
            processed = date + _dt.timedelta(days=8)
            scene_id = f"LC08_L2SP_{path:03d}{row:03d}_{date:%Y%m%d}_{processed:%Y%m%d}_02_T1"
            scenes.append(
                _Scene(
                    index=len(scenes),
                    date_index=d,
                    scene_id=scene_id,
                    acquired=acquired,
                    path=path,
                    row=row,
                    epsg=epsg,
                    center=(float(center[0]), float(center[1])),
                    corners_local=tuple(corners),
                    transform=Affine(resolution, 0.0, x0, 0.0, -resolution, ytop),
                    sun_azimuth=sun_azimuth,
                    sun_elevation=sun_elevation,
                )
            )
    return scenes


# --------------------------------------------------------------------------------------------
# Landscape and atmosphere (functions of the local metric frame, i.e. of geography)
# --------------------------------------------------------------------------------------------


class _Waves:
    """Smooth random field: a normalised sum of plane waves, in [-1, 1]."""

    def __init__(self, rng: numpy.random.Generator, n: int, lmin: float, lmax: float) -> None:
        wavelengths = numpy.exp(rng.uniform(math.log(lmin), math.log(lmax), n))
        angles = rng.uniform(0, 2 * math.pi, n)
        self.kx = 2 * math.pi / wavelengths * numpy.cos(angles)
        self.ky = 2 * math.pi / wavelengths * numpy.sin(angles)
        self.phase = rng.uniform(0, 2 * math.pi, n)
        amp = wavelengths**0.7
        self.amp = amp / amp.sum()

    def __call__(self, x: numpy.ndarray, y: numpy.ndarray) -> numpy.ndarray:
        out = numpy.zeros(x.shape, dtype=x.dtype)
        f = x.dtype.type
        for kx, ky, ph, a in zip(self.kx, self.ky, self.phase, self.amp, strict=True):
            out += f(a) * numpy.cos(f(kx) * x + f(ky) * y + f(ph))
        return out


def _hash01(a: numpy.ndarray, b: numpy.ndarray, salt: int) -> numpy.ndarray:
    """Deterministic integer hash of two int arrays to floats in [0, 1)."""
    m = 0xFFFFFFFF
    h = (a.astype("int64") * 0x9E3779B1 + b.astype("int64") * 0x85EBCA77 + salt * 0xC2B2AE3D) & m
    h ^= h >> 15
    h = (h * 0x2C1B3C6D) & m
    h ^= h >> 12
    h = (h * 0x297A2D39) & m
    h ^= h >> 15
    return h.astype("float64") / 2.0**32


def _smoothstep(e0: float, e1: float, x: numpy.ndarray) -> numpy.ndarray:
    t = numpy.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# Surface reflectance spectra (blue, green, red, nir08).
_SOIL = numpy.array([0.085, 0.115, 0.150, 0.235], dtype="float32")
_GREEN = numpy.array([0.030, 0.070, 0.035, 0.420], dtype="float32")
_SENESCENT = numpy.array([0.070, 0.095, 0.115, 0.255], dtype="float32")
_FOREST = numpy.array([0.025, 0.045, 0.026, 0.290], dtype="float32")
_ROCK = numpy.array([0.125, 0.145, 0.165, 0.225], dtype="float32")
_URBAN = numpy.array([0.090, 0.105, 0.120, 0.190], dtype="float32")
_WATER = numpy.array([0.040, 0.050, 0.030, 0.012], dtype="float32")
_CLOUD = numpy.array([0.420, 0.430, 0.450, 0.480], dtype="float32")


class _Landscape:
    """Land cover and its seasonal reflectance as a function of local (x, y) metres."""

    def __init__(self, seed: int, extent: float) -> None:
        rng = numpy.random.default_rng([seed, 2])
        self.elevation = _Waves(rng, 8, 4000.0, 25000.0)
        self.moisture = _Waves(rng, 6, 1500.0, 8000.0)
        self.texture = _Waves(rng, 6, 150.0, 900.0)
        self.warp_u = _Waves(rng, 4, 800.0, 3000.0)
        self.warp_v = _Waves(rng, 4, 800.0, 3000.0)
        self.parcel_angle = math.radians(rng.uniform(10.0, 40.0))
        self.parcel_size = (rng.uniform(550.0, 800.0), rng.uniform(350.0, 500.0))
        self.salt = int(rng.integers(0, 2**20))
        # a lake (rotated ellipse, wobbly shore) and a meandering river
        self.lake_center = (rng.uniform(0.1, 0.25) * extent, rng.uniform(-0.3, -0.1) * extent)
        self.lake_axes = (0.06 * extent, 0.17 * extent)
        self.lake_angle = math.radians(rng.uniform(-25.0, 25.0))
        self.shore = _Waves(rng, 4, 600.0, 3000.0)
        self.river_angle = math.radians(rng.uniform(20.0, 60.0))
        self.river_offset = rng.uniform(-0.1, 0.1) * extent
        self.meander = _Waves(rng, 3, 2500.0, 9000.0)
        self.river_halfwidth = 90.0
        # two towns
        self.towns = [
            (
                rng.uniform(-0.35, 0.35) * extent,
                rng.uniform(-0.35, 0.35) * extent,
                rng.uniform(900.0, 1800.0),
            )
            for _ in range(2)
        ]

    def water(self, x: numpy.ndarray, y: numpy.ndarray) -> numpy.ndarray:
        """Boolean water mask (lake or river)."""
        cx, cy = self.lake_center
        ca, sa = math.cos(self.lake_angle), math.sin(self.lake_angle)
        dx, dy = x - cx, y - cy
        u = (dx * ca + dy * sa) / self.lake_axes[0]
        v = (-dx * sa + dy * ca) / self.lake_axes[1]
        lake = numpy.hypot(u, v) < 1.0 + 0.25 * self.shore(x, y)
        cr, sr = math.cos(self.river_angle), math.sin(self.river_angle)
        along = x * cr + y * sr
        across = -x * sr + y * cr - self.river_offset
        river = numpy.abs(across - 1500.0 * self.meander(along, 0.0 * along)) < self.river_halfwidth
        return lake | river

    def reflectance(
        self, x: numpy.ndarray, y: numpy.ndarray, doy: int
    ) -> tuple[numpy.ndarray, numpy.ndarray]:
        """Surface reflectance (4, H, W) float32 and water mask for a day of year."""
        f32 = numpy.float32
        elev = self.elevation(x, y) * f32(1.8)
        moist = self.moisture(x, y) * f32(2.0)
        tex = self.texture(x, y) * f32(2.0)
        water = self.water(x, y)

        # crop parcels on a slightly warped rotated grid
        ca, sa = f32(math.cos(self.parcel_angle)), f32(math.sin(self.parcel_angle))
        u = x * ca + y * sa + f32(120.0) * self.warp_u(x, y)
        v = -x * sa + y * ca + f32(120.0) * self.warp_v(x, y)
        iu = numpy.floor(u / f32(self.parcel_size[0])).astype("int64")
        iv = numpy.floor(v / f32(self.parcel_size[1])).astype("int64")
        kind = _hash01(iu, iv, self.salt).astype("float32")
        shift = (_hash01(iu, iv, self.salt + 1).astype("float32") - f32(0.5)) * f32(30.0)
        bright = f32(0.85) + f32(0.35) * _hash01(iu, iv, self.salt + 2).astype("float32")
        wheat = kind < 0.35
        maize = (kind >= 0.35) & (kind < 0.65)
        meadow = (kind >= 0.65) & (kind < 0.87)
        t = f32(doy) - shift
        green = numpy.where(wheat, numpy.exp(-(((t - f32(140.0)) / f32(32.0)) ** 2)), f32(0.0))
        green = numpy.where(maize, numpy.exp(-(((t - f32(215.0)) / f32(35.0)) ** 2)), green)
        mow = f32(0.7) + f32(0.2) * numpy.cos(f32(2 * math.pi / 45.0) * (t + f32(90.0) * kind))
        green = numpy.where(meadow, mow, green)
        green = numpy.where(wheat | maize | meadow, green, f32(0.12))
        senescent = numpy.where(wheat & (t > 165.0), f32(0.7), f32(0.05) + f32(0.1) * (1 - green))
        soil_w = numpy.clip(f32(1.0) - green - senescent, f32(0.0), f32(1.0)) * bright
        crop = (
            _SOIL[:, None, None] * soil_w
            + _GREEN[:, None, None] * green
            + _SENESCENT[:, None, None] * senescent
        ) * (f32(1.0) + f32(0.04) * tex)

        season = f32(0.9 + 0.1 * math.sin(2 * math.pi * (doy - 100) / 365.0))
        forest = _FOREST[:, None, None] * (f32(1.0) + f32(0.06) * tex)
        forest[3] *= season
        rock = _ROCK[:, None, None] * (f32(1.0) + f32(0.1) * tex)
        urban = _URBAN[:, None, None] * (f32(1.0) + f32(0.2) * numpy.cos(f32(3.0) * tex))
        water_r = _WATER[:, None, None] * (f32(1.0) + f32(0.25) * moist)

        town = numpy.zeros(x.shape, dtype="float32")
        for tx, ty, r in self.towns:
            town += numpy.exp(-((x - f32(tx)) ** 2 + (y - f32(ty)) ** 2) / f32(2 * r * r))
        is_rock = elev > 0.95
        is_forest = (elev > 0.5) | (moist > 0.9)
        is_urban = (town + f32(0.15) * tex > 0.6) & (elev < 0.4)

        refl = numpy.where(is_forest, forest, crop)
        refl = numpy.where(is_rock, rock, refl)
        refl = numpy.where(is_urban, urban, refl)
        refl = numpy.where(water, water_r, refl)
        return refl, water


class _Clouds:
    """Cloud density of one acquisition date, in local (x, y) metres."""

    def __init__(
        self,
        rng: numpy.random.Generator,
        n_blobs: int,
        footprints: Sequence[Polygon],
        side: float,
    ) -> None:
        self.blobs: list[tuple[float, float, float, float, float, float]] = []
        for _ in range(n_blobs):
            fp = footprints[int(rng.integers(0, len(footprints)))]
            inner = fp.buffer(-0.15 * side)
            minx, miny, maxx, maxy = inner.bounds
            while True:  # rejection sampling inside the (convex) footprint
                px, py = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
                if inner.contains(Point(px, py)):
                    break
            s1 = rng.uniform(0.05, 0.11) * side
            s2 = s1 * rng.uniform(0.4, 1.0)
            self.blobs.append((px, py, s1, s2, rng.uniform(0, math.pi), rng.uniform(1.0, 1.5)))
        self.texture = _Waves(rng, 8, 250.0, 3000.0)

    def density(self, x: numpy.ndarray, y: numpy.ndarray) -> numpy.ndarray:
        """Cloud density; > 0.6 is cloud, 0.45-0.6 dilated cloud."""
        out = numpy.zeros(x.shape)
        if not self.blobs:
            return out
        for bx, by, s1, s2, ang, amp in self.blobs:
            ca, sa = math.cos(ang), math.sin(ang)
            dx, dy = x - bx, y - by
            u = (dx * ca + dy * sa) / s1
            v = (-dx * sa + dy * ca) / s2
            out += amp * numpy.exp(-0.5 * (u * u + v * v))
        return out * (1.0 + 0.45 * self.texture(x, y))


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _write_cog(
    path: Path,
    data: numpy.ndarray,
    *,
    epsg: int,
    transform: Affine,
    nodata: float | None,
    resampling: str,
    descriptions: Sequence[str],
) -> None:
    """Write a (bands, H, W) array as a DEFLATE COG with 256-px blocks and overviews."""
    count, height, width = data.shape
    profile = {
        "driver": "GTiff",
        "count": count,
        "height": height,
        "width": width,
        "dtype": data.dtype.name,
        "crs": RioCRS.from_epsg(epsg),
        "transform": transform,
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


def _to_dn(refl: numpy.ndarray) -> numpy.ndarray:
    dn = numpy.rint((refl - LANDSAT_OFFSET) / LANDSAT_SCALE)
    return numpy.clip(dn, 7274, 43636).astype("uint16")


def _ring(coords: Sequence[tuple[float, float]]) -> list[list[float]]:
    poly = orient(Polygon(coords), sign=1.0)  # counter-clockwise exterior (RFC 7946)
    return [[round(x, 7), round(y, 7)] for x, y in poly.exterior.coords]


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
    info = {b[0]: b for b in _BANDS}
    return [
        {
            "name": info[n][2],
            "common_name": n,
            "center_wavelength": info[n][3],
            "full_width_half_max": info[n][4],
        }
        for n in names
    ]


def _stac_item(
    scene: _Scene,
    ring: list[list[float]],
    cloud_cover: float,
    size: int,
    resolution: float,
) -> dict[str, Any]:
    sid = scene.scene_id
    t = scene.transform
    assets: dict[str, Any] = {}
    for name, band, suffix, _wl, _fwhm, title in _BANDS:
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
    xs = [p[0] for p in ring]
    ys = [p[1] for p in ring]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": list(_STAC_EXTENSIONS),
        "id": sid,
        "bbox": [min(xs), min(ys), max(xs), max(ys)],
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
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
        },
        "links": [],
        "assets": assets,
    }


def _pick_bbox(
    footprints_ll: Sequence[Polygon], margin_m: float
) -> tuple[float, float, float, float]:
    """Largest-area lon/lat box around 6°E inside the shrunk union of the footprints."""
    to_merc = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(3857), always_xy=True)
    to_ll = Transformer.from_crs(CRS.from_epsg(3857), CRS.from_epsg(4326), always_xy=True)
    merc = [
        Polygon([to_merc.transform(x, y) for x, y in fp.exterior.coords]) for fp in footprints_ll
    ]
    coslat = math.cos(math.radians(_CENTER_LAT))
    inner = unary_union(merc).buffer(-margin_m / coslat)
    shapely.prepare(inner)
    cx = to_merc.transform(_ZONE_BOUNDARY_LON, _CENTER_LAT)[0]
    best: tuple[float, float, float, float] | None = None
    best_area = 0.0
    minx, miny, maxx, maxy = inner.bounds
    for cy in numpy.linspace(miny, maxy, 17)[1:-1]:
        for aspect in numpy.geomspace(0.25, 4.0, 25):
            lo, hi = 0.0, max(maxx - minx, maxy - miny)
            for _ in range(24):
                mid = 0.5 * (lo + hi)
                hw, hh = mid * math.sqrt(aspect), mid / math.sqrt(aspect)
                if inner.contains(box(cx - hw, cy - hh, cx + hw, cy + hh)):
                    lo = mid
                else:
                    hi = mid
            hw, hh = lo * math.sqrt(aspect), lo / math.sqrt(aspect)
            if 4 * hw * hh > best_area:
                best_area = 4 * hw * hh
                best = (cx - hw, cy - hh, cx + hw, cy + hh)
    if best is None:
        raise RuntimeError("demo scenes do not overlap enough to hold an AOI")
    w, s = to_ll.transform(best[0], best[1])
    e, n = to_ll.transform(best[2], best[3])
    # round inwards to 4 decimals
    return (
        math.ceil(w * 1e4) / 1e4,
        math.ceil(s * 1e4) / 1e4,
        math.floor(e * 1e4) / 1e4,
        math.floor(n * 1e4) / 1e4,
    )


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


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

    Layout of ``out_dir``::

        items.json                      STAC ItemCollection, relative hrefs
        mosaic.json                     mosaicJSON, absolute paths of the _stack.tif files
        <scene_id>/<scene_id>_SR_B2.TIF   blue   (also _SR_B3 green, _SR_B4 red, _SR_B5 nir08)
        <scene_id>/<scene_id>_QA_PIXEL.TIF
        <scene_id>/<scene_id>_stack.tif   4-band blue, green, red, nir08

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
    if n_scenes < 2:
        raise ValueError(f"n_scenes must be >= 2, got {n_scenes}")
    if size < 64:
        raise ValueError(f"size must be >= 64, got {size}")
    if not (resolution > 0 and math.isfinite(resolution)):
        raise ValueError(f"resolution must be a positive number, got {resolution}")

    t0 = time.perf_counter()
    root = Path(out_dir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    side = size * resolution

    scenes = _build_layout(seed, n_scenes, size, resolution)
    landscape = _Landscape(seed, side)
    to_ll = _local_to_lonlat()

    # per-date clouds: one clear date (when there are several), the others 2-5 blobs
    n_dates = scenes[-1].date_index + 1
    crng = numpy.random.default_rng([seed, 3])
    clear_date = int(crng.integers(0, n_dates)) if n_dates > 1 else -1
    clouds: dict[int, _Clouds] = {}
    shadow_shift: dict[int, tuple[float, float]] = {}
    for d in range(n_dates):
        date_fps = [Polygon(s.corners_local) for s in scenes if s.date_index == d]
        n_blobs = 0 if d == clear_date else int(crng.integers(2, 6))
        clouds[d] = _Clouds(crng, n_blobs, date_fps, side)
        sc = next(s for s in scenes if s.date_index == d)
        length = crng.uniform(2000.0, 4000.0) / math.tan(math.radians(sc.sun_elevation))
        az = math.radians(sc.sun_azimuth)
        shadow_shift[d] = (length * math.sin(az), length * math.cos(az))

    items: list[dict[str, Any]] = []
    footprints_ll: list[Polygon] = []
    scene_paths: list[Path] = []
    cols = numpy.arange(size) + 0.5
    for scene in scenes:
        crs = CRS.from_epsg(scene.epsg)
        t = scene.transform
        ux, uy = numpy.meshgrid(t.c + cols * t.a, t.f + cols * t.e)
        to_local = Transformer.from_crs(crs, _LOCAL_CRS, always_xy=True)
        x, y = (a.astype("float32") for a in to_local.transform(ux, uy))

        # valid footprint: the rotated rectangle, in the local frame
        inside = numpy.ones(x.shape, dtype=bool)
        c = scene.corners_local
        for i in range(4):
            (ax, ay), (bx, by) = c[i], c[(i + 1) % 4]
            inside &= (bx - ax) * (y - ay) - (by - ay) * (x - ax) <= 0.0  # clockwise ring

        doy = scene.acquired.timetuple().tm_yday
        refl, water = landscape.reflectance(x, y, doy)

        cloud_field = clouds[scene.date_index]
        dens = cloud_field.density(x, y)
        sx, sy = shadow_shift[scene.date_index]
        shadow_dens = cloud_field.density(x + numpy.float32(sx), y + numpy.float32(sy))
        # flagged: cloud > 0.6 >= dilated cloud > 0.45; shadow > 0.5. Unflagged pixels are
        # untouched by clouds and shadows, so a QA-masked composite has no bright/dark rims.
        alpha = _smoothstep(0.45, 0.8, dens)
        shade = _smoothstep(0.5, 0.75, shadow_dens) * (1 - alpha)
        refl = refl * (1 - 0.6 * shade)
        nrng = numpy.random.default_rng([seed, 100 + scene.index])
        haze = numpy.float32(nrng.uniform(0.0, 0.006))
        cloud_refl = _CLOUD[:, None, None] * (0.92 + 0.1 * numpy.clip(dens - 0.6, 0.0, 1.0))
        refl = refl * (1 - alpha) + cloud_refl * alpha
        refl += numpy.array([1.0, 0.6, 0.3, 0.0], dtype="float32")[:, None, None] * haze
        refl += nrng.standard_normal(refl.shape, dtype="float32") * numpy.float32(0.0025)
        data = _to_dn(refl)
        data[:, ~inside] = 0

        qa = numpy.full(x.shape, QA_CLEAR_LAND, dtype="uint16")
        qa[water] = QA_CLEAR_WATER
        cloud = dens > 0.6
        dilated = (dens > 0.45) & ~cloud
        shadow = (shadow_dens > 0.5) & ~cloud & ~dilated
        qa[shadow] = QA_SHADOW_VALUE
        qa[dilated] = QA_DILATED_CLOUD_VALUE
        qa[cloud] = QA_CLOUD_HIGH_CONF
        qa[~inside] = QA_FILL

        n_valid = int(inside.sum())
        cloud_cover = round(100.0 * int((cloud & inside).sum()) / max(n_valid, 1), 2)

        sid = scene.scene_id
        sdir = root / sid
        sdir.mkdir(exist_ok=True)
        for b, (name, _band, suffix, *_rest) in enumerate(_BANDS):
            _write_cog(
                sdir / f"{sid}_{suffix}.TIF",
                data[b : b + 1],
                epsg=scene.epsg,
                transform=t,
                nodata=0,
                resampling="AVERAGE",
                descriptions=[name],
            )
        _write_cog(
            sdir / f"{sid}_QA_PIXEL.TIF",
            qa[None],
            epsg=scene.epsg,
            transform=t,
            nodata=None,
            resampling="NEAREST",
            descriptions=["qa_pixel"],
        )
        stack_path = sdir / f"{sid}_stack.tif"
        _write_cog(
            stack_path,
            data,
            epsg=scene.epsg,
            transform=t,
            nodata=0,
            resampling="AVERAGE",
            descriptions=list(BAND_NAMES),
        )
        scene_paths.append(stack_path)

        ring = _ring([to_ll.transform(px, py) for px, py in scene.corners_local])
        footprints_ll.append(Polygon(ring))
        items.append(_stac_item(scene, ring, cloud_cover, size, resolution))
        logger.debug(
            "scene %s: EPSG:%d, %s, cloud cover %.2f%%",
            sid,
            scene.epsg,
            scene.acquired.isoformat(),
            cloud_cover,
        )

    items_path = root / "items.json"
    items_path.write_text(
        json.dumps({"type": "FeatureCollection", "features": items}, indent=1) + "\n"
    )

    zoom = suggested_zoom(resolution, _CENTER_LAT)
    mosaic_path = _write_mosaicjson(root / "mosaic.json", items, scene_paths, zoom)
    bbox = _pick_bbox(footprints_ll, margin_m=0.04 * side)

    logger.debug(
        "demo sample: %d scenes on %d dates in %s, zoom %d, bbox %s, written to %s in %.2fs",
        len(scenes),
        n_dates,
        sorted({f"EPSG:{s.epsg}" for s in scenes}),
        zoom,
        bbox,
        root,
        time.perf_counter() - t0,
    )
    return DemoSample(
        root=root,
        items_path=items_path,
        mosaicjson_path=mosaic_path,
        scene_paths=tuple(scene_paths),
        bbox=bbox,
        zoom=zoom,
    )


def _write_mosaicjson(
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
