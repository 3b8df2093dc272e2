"""The demo sample's pixels: landscape, seasons, clouds, shadows, noise, DN and QA_PIXEL.

The landscape (fields, forest, a lake, a river, two towns) is a function of the local frame
of :mod:`mosaic_assembler._demo_layout`, so overlapping scenes agree where they overlap and
a composite looks coherent. Each date adds its own seasonal state, haze, clouds and cloud
shadows. Dependency order: ``_demo_layout <-- _demo_landscape <-- demo_data``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy
from shapely.geometry import Point, Polygon

from mosaic_assembler._demo_layout import Scene, footprint_mask, local_grid

__all__ = [
    "Clouds",
    "LANDSAT_OFFSET",
    "LANDSAT_SCALE",
    "Landscape",
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
    "ScenePixels",
    "Weather",
    "make_weather",
    "render_scene",
]

LANDSAT_SCALE = 2.75e-05
"""C2 L2 surface reflectance scale: reflectance = DN * LANDSAT_SCALE + LANDSAT_OFFSET."""
LANDSAT_OFFSET = -0.2
"""C2 L2 surface reflectance offset."""

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

# Surface reflectance spectra (blue, green, red, nir08).
_SOIL = numpy.array([0.085, 0.115, 0.150, 0.235], dtype="float32")
_GREEN = numpy.array([0.030, 0.070, 0.035, 0.420], dtype="float32")
_SENESCENT = numpy.array([0.070, 0.095, 0.115, 0.255], dtype="float32")
_FOREST = numpy.array([0.025, 0.045, 0.026, 0.290], dtype="float32")
_ROCK = numpy.array([0.125, 0.145, 0.165, 0.225], dtype="float32")
_URBAN = numpy.array([0.090, 0.105, 0.120, 0.190], dtype="float32")
_WATER = numpy.array([0.040, 0.050, 0.030, 0.012], dtype="float32")
_CLOUD = numpy.array([0.420, 0.430, 0.450, 0.480], dtype="float32")


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


class Landscape:
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
        crop = self._crops(x, y, doy, tex)

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

    def _crops(
        self, x: numpy.ndarray, y: numpy.ndarray, doy: int, tex: numpy.ndarray
    ) -> numpy.ndarray:
        """Reflectance of the crop parcels (wheat, maize, meadow, fallow) on a day of year."""
        f32 = numpy.float32
        kind, shift, bright = self._parcels(x, y)
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
        return (
            _SOIL[:, None, None] * soil_w
            + _GREEN[:, None, None] * green
            + _SENESCENT[:, None, None] * senescent
        ) * (f32(1.0) + f32(0.04) * tex)

    def _parcels(
        self, x: numpy.ndarray, y: numpy.ndarray
    ) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
        """Per-parcel kind in [0, 1), phenology shift (days) and soil brightness, float32.

        Parcels are the cells of a slightly warped rotated grid.
        """
        f32 = numpy.float32
        ca, sa = f32(math.cos(self.parcel_angle)), f32(math.sin(self.parcel_angle))
        u = x * ca + y * sa + f32(120.0) * self.warp_u(x, y)
        v = -x * sa + y * ca + f32(120.0) * self.warp_v(x, y)
        iu = numpy.floor(u / f32(self.parcel_size[0])).astype("int64")
        iv = numpy.floor(v / f32(self.parcel_size[1])).astype("int64")
        kind = _hash01(iu, iv, self.salt).astype("float32")
        shift = (_hash01(iu, iv, self.salt + 1).astype("float32") - f32(0.5)) * f32(30.0)
        bright = f32(0.85) + f32(0.35) * _hash01(iu, iv, self.salt + 2).astype("float32")
        return kind, shift, bright


class Clouds:
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


@dataclass(frozen=True)
class Weather:
    """The sky of one acquisition date: its clouds and where their shadows fall."""

    clouds: Clouds
    shadow_shift: tuple[float, float]  # from a pixel to the cloud that shades it (local m)


def make_weather(seed: int, scenes: Sequence[Scene], side: float) -> list[Weather]:
    """The weather of each date, by date index: one clear date (if several), else 2-5 blobs."""
    n_dates = scenes[-1].date_index + 1
    rng = numpy.random.default_rng([seed, 3])
    clear_date = int(rng.integers(0, n_dates)) if n_dates > 1 else -1
    weather: list[Weather] = []
    for d in range(n_dates):
        date_scenes = [s for s in scenes if s.date_index == d]
        date_fps = [Polygon(s.corners_local) for s in date_scenes]
        n_blobs = 0 if d == clear_date else int(rng.integers(2, 6))
        clouds = Clouds(rng, n_blobs, date_fps, side)
        sun = date_scenes[0]
        length = rng.uniform(2000.0, 4000.0) / math.tan(math.radians(sun.sun_elevation))
        az = math.radians(sun.sun_azimuth)
        weather.append(Weather(clouds, (length * math.sin(az), length * math.cos(az))))
    return weather


@dataclass(frozen=True)
class ScenePixels:
    """What a scene's sensor records: DN bands, QA_PIXEL and the footprint's cloud cover."""

    data: numpy.ndarray  # (4, H, W) uint16 C2 L2 DN, 0 outside the footprint
    qa: numpy.ndarray  # (H, W) uint16 QA_PIXEL
    cloud_cover: float  # % of footprint pixels with the cloud bit set


def render_scene(
    scene: Scene, size: int, seed: int, landscape: Landscape, weather: Weather
) -> ScenePixels:
    """Render one scene: landscape under the date's weather, haze and sensor noise."""
    x, y = local_grid(scene, size)
    inside = footprint_mask(scene, x, y)
    refl, water = landscape.reflectance(x, y, scene.acquired.timetuple().tm_yday)
    dens = weather.clouds.density(x, y)
    sx, sy = weather.shadow_shift
    shadow_dens = weather.clouds.density(x + numpy.float32(sx), y + numpy.float32(sy))
    nrng = numpy.random.default_rng([seed, 100 + scene.index])
    data = _to_dn(_observe(refl, dens, shadow_dens, nrng))
    data[:, ~inside] = 0
    qa, cloud = _qa_pixel(water, dens, shadow_dens, inside)
    n_valid = int(inside.sum())
    cloud_cover = round(100.0 * int((cloud & inside).sum()) / max(n_valid, 1), 2)
    return ScenePixels(data=data, qa=qa, cloud_cover=cloud_cover)


def _observe(
    refl: numpy.ndarray,
    dens: numpy.ndarray,
    shadow_dens: numpy.ndarray,
    nrng: numpy.random.Generator,
) -> numpy.ndarray:
    """Surface reflectance as observed: under shadows and clouds, with haze and noise.

    Notes:
        Flagged: cloud > 0.6 >= dilated cloud > 0.45; shadow > 0.5. Unflagged pixels are
        untouched by clouds and shadows, so a QA-masked composite has no bright/dark rims.
    """
    alpha = _smoothstep(0.45, 0.8, dens)
    shade = _smoothstep(0.5, 0.75, shadow_dens) * (1 - alpha)
    refl = refl * (1 - 0.6 * shade)
    haze = numpy.float32(nrng.uniform(0.0, 0.006))
    cloud_refl = _CLOUD[:, None, None] * (0.92 + 0.1 * numpy.clip(dens - 0.6, 0.0, 1.0))
    refl = refl * (1 - alpha) + cloud_refl * alpha
    refl += numpy.array([1.0, 0.6, 0.3, 0.0], dtype="float32")[:, None, None] * haze
    refl += nrng.standard_normal(refl.shape, dtype="float32") * numpy.float32(0.0025)
    return refl


def _qa_pixel(
    water: numpy.ndarray, dens: numpy.ndarray, shadow_dens: numpy.ndarray, inside: numpy.ndarray
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """QA_PIXEL (H, W) uint16 and the cloud mask it flags."""
    qa = numpy.full(water.shape, QA_CLEAR_LAND, dtype="uint16")
    qa[water] = QA_CLEAR_WATER
    cloud = dens > 0.6
    dilated = (dens > 0.45) & ~cloud
    shadow = (shadow_dens > 0.5) & ~cloud & ~dilated
    qa[shadow] = QA_SHADOW_VALUE
    qa[dilated] = QA_DILATED_CLOUD_VALUE
    qa[cloud] = QA_CLOUD_HIGH_CONF
    qa[~inside] = QA_FILL
    return qa, cloud


def _to_dn(refl: numpy.ndarray) -> numpy.ndarray:
    dn = numpy.rint((refl - LANDSAT_OFFSET) / LANDSAT_SCALE)
    return numpy.clip(dn, 7274, 43636).astype("uint16")
