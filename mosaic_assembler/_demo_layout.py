"""The demo sample's geometry: where its scenes lie, on which dates, and its AOI.

Positions are in a local transverse-Mercator frame centred on 6°E 45.46°N (metres), so the
landscape, the clouds and the footprints are functions of geography, not of a scene's UTM
zone. Dependency order of the demo: ``_demo_layout <-- _demo_landscape <-- demo_data``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import Polygon, box
from shapely.geometry.polygon import orient
from shapely.ops import unary_union

__all__ = [
    "CENTER_LAT",
    "Scene",
    "build_layout",
    "footprint_mask",
    "local_grid",
    "local_to_lonlat",
    "lonlat_ring",
    "pick_bbox",
    "suggested_zoom",
]

_ZONE_BOUNDARY_LON = 6.0  # UTM zone 31 | 32
_CENTER_LON = 6.0
CENTER_LAT = 45.46
"""Latitude of the local frame's origin (degrees)."""
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
    f"+proj=tmerc +lat_0={CENTER_LAT} +lon_0={_CENTER_LON} +k=1 +x_0=0 +y_0=0 "
    "+ellps=WGS84 +units=m +no_defs"
)


@dataclass(frozen=True)
class Scene:
    """One scene of the sample: its identity, acquisition, grid and valid footprint."""

    index: int
    date_index: int
    scene_id: str
    acquired: _dt.datetime
    path: int
    row: int
    epsg: int
    corners_local: tuple[tuple[float, float], ...]  # footprint corners, local frame (m)
    transform: Affine
    sun_azimuth: float
    sun_elevation: float


@dataclass(frozen=True)
class _Track:
    """The footprint size and track directions shared by every scene (local frame)."""

    side: float  # raster side (m)
    resolution: float
    width: float  # footprint width, across track (m)
    height: float  # footprint height, along track (m)
    along: numpy.ndarray  # unit vector of the track (towards north)
    cross: numpy.ndarray  # unit vector across the track (towards east)


@dataclass(frozen=True)
class _Pass:
    """One acquisition date: the pass that images a pair of along-track scenes."""

    date_index: int
    date: _dt.date
    path: int
    start: _dt.datetime
    base: numpy.ndarray  # center of the pair, local frame (m)
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


def local_to_lonlat() -> Transformer:
    """Transformer from the local frame to lon/lat (always x, y)."""
    return Transformer.from_crs(_LOCAL_CRS, CRS.from_epsg(4326), always_xy=True)


def build_layout(seed: int, n_scenes: int, size: int, resolution: float) -> list[Scene]:
    """Place the scenes: pairs of along-track neighbours, one pair per date."""
    rng = numpy.random.default_rng([seed, 1])
    side = size * resolution
    tilt = math.radians(_TILT_DEG)
    track = _Track(
        side=side,
        resolution=resolution,
        width=_FOOTPRINT_CROSS * side,
        height=_FOOTPRINT_ALONG * side,
        along=numpy.array([math.sin(tilt), math.cos(tilt)]),
        cross=numpy.array([math.cos(tilt), -math.sin(tilt)]),
    )
    scenes: list[Scene] = []
    for d in range((n_scenes + 1) // 2):
        date_pass = _date_pass(rng, d, track)  # draws all of a date's random numbers
        for k in range(min(2, n_scenes - len(scenes))):
            scenes.append(_place_scene(date_pass, k, len(scenes), track))
    return scenes


def _date_pass(rng: numpy.random.Generator, d: int, track: _Track) -> _Pass:
    """Date, WRS path, start time, sun angles and pair center of the ``d``-th date."""
    date = _FIRST_DATE + _dt.timedelta(days=16 * d + 7 * ((d + 1) // 2))
    doy = date.timetuple().tm_yday
    east = _DATE_EAST[d % len(_DATE_EAST)]
    north = _DATE_NORTH[d % len(_DATE_NORTH)]
    start = _dt.datetime(date.year, date.month, date.day, 10, 16, 40, tzinfo=_dt.UTC)
    start += _dt.timedelta(seconds=int(rng.integers(0, 30)))
    declination = 23.44 * math.sin(2 * math.pi * (doy - 81) / 365.0)
    sun_elevation = round(90.0 - CENTER_LAT + declination - 9.0 + rng.uniform(-0.5, 0.5), 4)
    sun_azimuth = round(
        138.0 + 6.0 * math.cos(2 * math.pi * (doy - 172) / 365.0) + rng.uniform(-1.0, 1.0), 4
    )
    return _Pass(
        date_index=d,
        date=date,
        path=_WRS_PATH - int(round(east / 0.45)),
        start=start,
        base=numpy.array([east * track.width, north * track.height]),
        sun_azimuth=sun_azimuth,
        sun_elevation=sun_elevation,
    )


def _place_scene(date_pass: _Pass, k: int, index: int, track: _Track) -> Scene:
    """The ``k``-th scene of a pass (0 north, 1 south): footprint, UTM zone and grid."""
    sign = 1.0 if k == 0 else -1.0  # north scene first (descending pass)
    center = date_pass.base + sign * 0.5 * _ALONG_SPACING * track.height * track.along
    corners = []
    for cu, cv in ((-1, 1), (1, 1), (1, -1), (-1, -1)):
        p = center + cu * 0.5 * track.width * track.cross + cv * 0.5 * track.height * track.along
        corners.append((float(p[0]), float(p[1])))
    lon, _lat = local_to_lonlat().transform(float(center[0]), float(center[1]))
    epsg = 32631 if lon < _ZONE_BOUNDARY_LON else 32632
    row = _WRS_ROW + k
    processed = date_pass.date + _dt.timedelta(days=8)
    return Scene(
        index=index,
        date_index=date_pass.date_index,
        scene_id=(
            f"LC08_L2SP_{date_pass.path:03d}{row:03d}_{date_pass.date:%Y%m%d}"
            f"_{processed:%Y%m%d}_02_T1"
        ),
        acquired=date_pass.start + _dt.timedelta(seconds=24 * k),
        path=date_pass.path,
        row=row,
        epsg=epsg,
        corners_local=tuple(corners),
        transform=_utm_transform(center, epsg, track),
        sun_azimuth=date_pass.sun_azimuth,
        sun_elevation=date_pass.sun_elevation,
    )


def _utm_transform(center: numpy.ndarray, epsg: int, track: _Track) -> Affine:
    """North-up UTM grid of a scene around its footprint center, snapped to the resolution."""
    to_utm = Transformer.from_crs(_LOCAL_CRS, CRS.from_epsg(epsg), always_xy=True)
    ux, uy = to_utm.transform(float(center[0]), float(center[1]))
    res = track.resolution
    x0 = math.floor((ux - track.side / 2) / res + 0.5) * res
    ytop = math.floor((uy + track.side / 2) / res + 0.5) * res
    return Affine(res, 0.0, x0, 0.0, -res, ytop)


def local_grid(scene: Scene, size: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Local-frame (x, y) float32 coordinates of a scene's pixel centers, (size, size) each."""
    cols = numpy.arange(size) + 0.5
    t = scene.transform
    ux, uy = numpy.meshgrid(t.c + cols * t.a, t.f + cols * t.e)
    to_local = Transformer.from_crs(CRS.from_epsg(scene.epsg), _LOCAL_CRS, always_xy=True)
    x, y = (a.astype("float32") for a in to_local.transform(ux, uy))
    return x, y


def footprint_mask(scene: Scene, x: numpy.ndarray, y: numpy.ndarray) -> numpy.ndarray:
    """True inside the scene's valid footprint (the rotated rectangle) at local (x, y)."""
    inside = numpy.ones(x.shape, dtype=bool)
    c = scene.corners_local
    for i in range(4):
        (ax, ay), (bx, by) = c[i], c[(i + 1) % 4]
        inside &= (bx - ax) * (y - ay) - (by - ay) * (x - ax) <= 0.0  # clockwise ring
    return inside


def lonlat_ring(scene: Scene, to_ll: Transformer) -> list[list[float]]:
    """The footprint as a closed lon/lat GeoJSON ring, counter-clockwise (RFC 7946)."""
    coords = [to_ll.transform(px, py) for px, py in scene.corners_local]
    poly = orient(Polygon(coords), sign=1.0)
    return [[round(x, 7), round(y, 7)] for x, y in poly.exterior.coords]


def pick_bbox(
    footprints_ll: Sequence[Polygon], margin_m: float
) -> tuple[float, float, float, float]:
    """Largest-area lon/lat box around 6°E inside the shrunk union of the footprints.

    Raises:
        RuntimeError: If the footprints do not overlap enough to hold a box.
    """
    to_merc = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_epsg(3857), always_xy=True)
    to_ll = Transformer.from_crs(CRS.from_epsg(3857), CRS.from_epsg(4326), always_xy=True)
    merc = [
        Polygon([to_merc.transform(x, y) for x, y in fp.exterior.coords]) for fp in footprints_ll
    ]
    coslat = math.cos(math.radians(CENTER_LAT))
    inner = unary_union(merc).buffer(-margin_m / coslat)
    shapely.prepare(inner)
    cx = to_merc.transform(_ZONE_BOUNDARY_LON, CENTER_LAT)[0]
    best: tuple[float, float, float, float] | None = None
    best_area = 0.0
    minx, miny, maxx, maxy = inner.bounds
    for cy in numpy.linspace(miny, maxy, 17)[1:-1]:
        for aspect in numpy.geomspace(0.25, 4.0, 25):
            hw, hh = _grow_box(inner, cx, cy, aspect, max(maxx - minx, maxy - miny))
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


def _grow_box(
    inner: shapely.Geometry, cx: float, cy: float, aspect: float, limit: float
) -> tuple[float, float]:
    """Half width and height of the largest box of ``aspect`` at (cx, cy) inside ``inner``.

    Notes:
        A 24-step bisection of the box's scale between 0 and ``limit``.
    """
    lo, hi = 0.0, limit
    for _ in range(24):
        mid = 0.5 * (lo + hi)
        hw, hh = mid * math.sqrt(aspect), mid / math.sqrt(aspect)
        if inner.contains(box(cx - hw, cy - hh, cx + hw, cy + hh)):
            lo = mid
        else:
            hi = mid
    return lo * math.sqrt(aspect), lo / math.sqrt(aspect)
