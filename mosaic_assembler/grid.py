"""mosaic_assembler.grid: area of interest, WebMercatorQuad tile grid and the output raster.

The output raster is the rectangle of zoom-Z tiles that covers the AOI, each tile rendered
at `tilesize` px (512 px = TiTiler's `tilesize=512`, the reference notebook's `@2x`).

Antimeridian: when the AOI crosses 180° (a bbox with W > E, or a polygon whose parts lie on
both sides), the output is ONE continuous raster that runs east across 180°: tiles west of
180° keep their place and the tiles east of it (x = 0, 1, …) follow them, so x coordinates
of the output go past +20037508.34 m. Each tile is still read at its real (wrapped) x/y/z.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import mercantile
import numpy
from affine import Affine
from rasterio.features import geometry_mask
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry
from supermercado.burntiles import burn

from mosaic_assembler.errors import AOIError, ConfigError, PlanTooLargeError
from mosaic_assembler.types import Tile

__all__ = ["AOI", "Plan", "Tile", "plan_tiles", "tile_bounds", "MAX_LAT", "TILESIZES"]

MAX_LAT = 85.0511287798066
TILESIZES = (256, 512)
EARTH_HALF = 20037508.342789244  # half the WebMercatorQuad extent, in metres


def _check_finite(values: Iterable[float], what: str) -> None:
    for v in values:
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise AOIError(f"{what} must be finite numbers, got {v!r}")


@dataclass(frozen=True)
class AOI:
    """Area of interest in lon/lat (EPSG:4326).

    Attributes:
        geojson: GeoJSON geometry (Polygon or MultiPolygon) as a JSON string, so the value stays
            small, hashable and picklable.
        is_bbox: True when built from a bbox (tiles come from the bbox extrema, not a burn).
        bbox: (W, S, E, N); W > E when the AOI crosses the antimeridian.
    """

    geojson: str
    is_bbox: bool
    bbox: tuple[float, float, float, float]

    @classmethod
    def from_bbox(cls, west: float, south: float, east: float, north: float) -> AOI:
        """AOI from a lon/lat bbox; `west > east` means it crosses the antimeridian.

        Raises:
            AOIError: non-finite, out-of-range or inverted coordinates.
        """
        _check_finite((west, south, east, north), "bbox coordinates")
        for v in (west, east):
            if not -180.0 <= v <= 180.0:
                raise AOIError(f"bbox longitude {v} is outside -180..180")
        for v in (south, north):
            if not -90.0 <= v <= 90.0:
                raise AOIError(f"bbox latitude {v} is outside -90..90")
        if south >= north:
            raise AOIError(f"bbox is inverted or empty: south ({south}) must be < north ({north})")
        if west == east:
            raise AOIError(f"bbox has zero width: west == east == {west}")
        if south >= MAX_LAT or north <= -MAX_LAT:
            raise AOIError(
                f"bbox latitudes {south}..{north} are outside WebMercatorQuad (±{MAX_LAT:.4f})"
            )
        if west < east:
            geom: BaseGeometry = box(west, south, east, north)
        else:
            geom = box(west, south, 180.0, north).union(box(-180.0, south, east, north))
        return cls(json.dumps(mapping(geom)), True, (west, south, east, north))

    @classmethod
    def from_geojson(cls, obj: dict[str, Any] | str) -> AOI:
        """AOI from a GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection.

        Raises:
            AOIError: not valid JSON, not a polygonal geometry, or out-of-range coordinates.
        """
        if isinstance(obj, str):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as e:
                raise AOIError(f"AOI is not valid GeoJSON: {e}") from e
        if not isinstance(obj, dict):
            raise AOIError("AOI must be a GeoJSON object")
        geoms = list(_polygons_of(obj))
        if not geoms:
            raise AOIError("AOI GeoJSON contains no Polygon or MultiPolygon")
        try:
            shapes = [shape(g) for g in geoms]
        except Exception as e:  # shapely raises several kinds on malformed coordinates
            raise AOIError(f"AOI geometry is malformed: {e}") from e
        geom = shapes[0] if len(shapes) == 1 else _union(shapes)
        if geom.is_empty:
            raise AOIError("AOI geometry is empty")
        west, south, east, north = geom.bounds
        _check_finite((west, south, east, north), "AOI coordinates")
        if west < -180.0 or east > 180.0 or south < -90.0 or north > 90.0:
            raise AOIError(
                "AOI coordinates must be lon/lat (EPSG:4326) within -180..180 / -90..90; "
                f"got bounds {geom.bounds}"
            )
        if not geom.is_valid:
            geom = geom.buffer(0)
        if geom.is_empty or not geom.area > 0:
            raise AOIError(
                "AOI polygon has zero area (its points are collinear or repeated): it "
                "covers no pixel"
            )
        return cls(json.dumps(mapping(geom)), False, (west, south, east, north))

    @property
    def geometry(self) -> BaseGeometry:
        """The AOI as a shapely geometry."""
        return shape(json.loads(self.geojson))

    def polygons(self) -> list[dict[str, Any]]:
        """The AOI's polygons as GeoJSON Polygon dicts."""
        geom = json.loads(self.geojson)
        if geom["type"] == "Polygon":
            return [geom]
        return [{"type": "Polygon", "coordinates": c} for c in geom["coordinates"]]


def _union(shapes: list[BaseGeometry]) -> BaseGeometry:
    from shapely import union_all

    return union_all(shapes)


def _polygons_of(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    kind = obj.get("type")
    if kind in ("Polygon", "MultiPolygon"):
        yield obj
    elif kind == "Feature":
        geom = obj.get("geometry")
        if geom is None:
            raise AOIError("AOI Feature has no geometry")
        yield from _polygons_of(geom)
    elif kind == "FeatureCollection":
        for feat in obj.get("features", []):
            yield from _polygons_of(feat)
    elif kind == "GeometryCollection":
        for geom in obj.get("geometries", []):
            yield from _polygons_of(geom)
    else:
        raise AOIError(
            f"AOI must be a Polygon or MultiPolygon (bare, in a Feature or FeatureCollection); "
            f"got {kind!r}"
        )


def tile_bounds(x: int, y: int, z: int) -> tuple[float, float, float, float]:
    """WebMercatorQuad bounds (left, bottom, right, top) in metres, as mercantile gives them."""
    b = mercantile.xy_bounds(x, y, z)
    return (b.left, b.bottom, b.right, b.top)


def _bbox_tile_ranges(
    bbox: tuple[float, float, float, float], zoom: int
) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Column ranges (one, or two across the antimeridian) and the row range of a bbox."""
    west, south, east, north = bbox
    south, north = max(south, -MAX_LAT), min(north, MAX_LAT)
    eps = 1e-9
    ul = mercantile.tile(west + eps, north - eps, zoom)
    lr = mercantile.tile(east - eps, south + eps, zoom)
    rows = (ul.y, lr.y)
    if west < east:
        return [(ul.x, lr.x)], rows
    return [(ul.x, 2**zoom - 1), (0, lr.x)], rows


def _aoi_tiles(aoi: AOI, zoom: int) -> set[tuple[int, int]]:
    if aoi.is_bbox:
        cols, (y0, y1) = _bbox_tile_ranges(aoi.bbox, zoom)
        return {(x, y) for x0, x1 in cols for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)}
    found: set[tuple[int, int]] = set()
    for poly in aoi.polygons():
        # supermercado burns every tile the polygon touches (all_touched), one part at a time
        # so that far-apart parts (France + French Guiana) do not make one huge raster.
        xyz = burn([{"type": "Feature", "properties": {}, "geometry": poly}], zoom)
        found.update((int(x), int(y)) for x, y, _ in xyz)
    return found


def _column_start(columns: Iterable[int], zoom: int) -> int:
    """First column of the output: the one after the widest circular gap between columns.

    With no wrap (the usual case) this is the minimum column; across the antimeridian it is
    the westernmost column east of the gap, so the output runs east across 180°.
    """
    n = 2**zoom
    cols = sorted(set(columns))
    if len(cols) == n:
        return 0
    best_gap, start = (cols[0] + n - cols[-1] - 1), cols[0]  # the wrap-around gap
    for a, b in zip(cols, cols[1:], strict=False):
        if b - a - 1 > best_gap:
            best_gap, start = b - a - 1, b
    return start


@dataclass(frozen=True)
class Plan:
    """The output grid: which tiles, where they go, and the raster they make.

    Attributes:
        zoom: WebMercatorQuad zoom of the tiles.
        tilesize: pixels per tile side.
        tiles: tiles to read, as (x, y, z), in row-major output order.
        x_start: the real x of the output's first tile column (see module docstring).
        y_start: the y of the output's first tile row.
        cols: output width in tiles.
        rows: output height in tiles.
    """

    zoom: int
    tilesize: int
    tiles: tuple[Tile, ...]
    x_start: int
    y_start: int
    cols: int
    rows: int

    @property
    def width(self) -> int:
        """Output width in pixels."""
        return self.cols * self.tilesize

    @property
    def height(self) -> int:
        """Output height in pixels."""
        return self.rows * self.tilesize

    @property
    def resolution(self) -> float:
        """Pixel size in metres (EPSG:3857)."""
        return 2 * EARTH_HALF / 2**self.zoom / self.tilesize

    @property
    def transform(self) -> Affine:
        """Affine transform of the output raster (EPSG:3857)."""
        left, _, _, top = tile_bounds(self.x_start, self.y_start, self.zoom)
        return Affine(self.resolution, 0.0, left, 0.0, -self.resolution, top)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Output bounds (left, bottom, right, top) in EPSG:3857; right may pass 180°."""
        t = self.transform
        return (t.c, t.f - self.height * self.resolution, t.c + self.width * t.a, t.f)

    @property
    def crosses_antimeridian(self) -> bool:
        """True when the output runs east across 180°."""
        return self.x_start + self.cols > 2**self.zoom

    def offset(self, tile: Tile) -> tuple[int, int]:
        """(row_off, col_off) in output pixels of a tile."""
        x, y, _ = tile
        col = (x - self.x_start) % 2**self.zoom
        return ((y - self.y_start) * self.tilesize, col * self.tilesize)


def check_zoom(zoom: int) -> None:
    """Raise ConfigError unless zoom is an integer in 0–24."""
    if isinstance(zoom, bool) or not isinstance(zoom, int) or not 0 <= zoom <= 24:
        raise ConfigError(f"zoom must be an integer between 0 and 24, got {zoom!r}")


def plan_tiles(aoi: AOI, zoom: int, tilesize: int = 512, max_pixels: float = 1e10) -> Plan:
    """Plan the tiles of `aoi` at `zoom` and the output raster they make.

    Args:
        aoi: area of interest.
        zoom: WebMercatorQuad zoom (0–24).
        tilesize: 256 or 512 px per tile.
        max_pixels: refuse outputs larger than this many pixels (width × height).

    Returns:
        Plan with the tiles in row-major order.

    Raises:
        ConfigError: bad zoom or tilesize.
        PlanTooLargeError: the output would exceed `max_pixels`.
    """
    check_zoom(zoom)
    if tilesize not in TILESIZES:
        raise ConfigError(f"tilesize must be one of {TILESIZES}, got {tilesize!r}")
    # Size check on the bbox extrema first: the output is that rectangle, and burning a huge
    # polygon at a high zoom would itself cost memory.
    cols_ranges, (y0, y1) = _bbox_tile_ranges(aoi.bbox, zoom)
    ncols = sum(b - a + 1 for a, b in cols_ranges)
    _check_size(ncols * tilesize, (y1 - y0 + 1) * tilesize, zoom, max_pixels)

    xy = _aoi_tiles(aoi, zoom)
    if not xy:
        raise AOIError(f"AOI covers no tile at zoom {zoom}")
    x_start = _column_start((x for x, _ in xy), zoom)
    n = 2**zoom
    cols = max((x - x_start) % n for x, _ in xy) + 1
    y_start = min(y for _, y in xy)
    rows = max(y for _, y in xy) - y_start + 1
    _check_size(cols * tilesize, rows * tilesize, zoom, max_pixels)
    tiles = sorted(xy, key=lambda t: (t[1], (t[0] - x_start) % n))
    return Plan(zoom, tilesize, tuple((x, y, zoom) for x, y in tiles), x_start, y_start, cols, rows)


def _check_size(width: int, height: int, zoom: int, max_pixels: float) -> None:
    if width * height > max_pixels:
        raise PlanTooLargeError(
            f"the output would be {width} x {height} px ({width * height:.3g} px), more than "
            f"`max_pixels` {max_pixels:.3g}; use a lower zoom than {zoom}, a smaller AOI, or "
            "split the area into several runs"
        )


def _lonlat_to_mercator(coords: numpy.ndarray) -> numpy.ndarray:
    lon = coords[:, 0]
    lat = numpy.clip(coords[:, 1], -MAX_LAT, MAX_LAT)
    x = EARTH_HALF * lon / 180.0
    y = 6378137.0 * numpy.log(numpy.tan(numpy.pi / 4 + numpy.radians(lat) / 2))
    return numpy.column_stack([x, y])


@dataclass(frozen=True)
class Clipper:
    """Masks pixels outside the AOI polygon(s) for one tile at a time."""

    geojson_3857: str

    @classmethod
    def from_aoi(cls, aoi: AOI) -> Clipper:
        """Project the AOI to EPSG:3857 once."""
        from shapely import transform

        geom = transform(aoi.geometry, _lonlat_to_mercator)
        return cls(json.dumps(mapping(geom)))

    def inside(self, tile: Tile, tilesize: int) -> numpy.ndarray:
        """Boolean array, True where a tile's pixel centre lies inside the AOI."""
        left, bottom, right, top = tile_bounds(*tile)
        res = (right - left) / tilesize
        transform = Affine(res, 0.0, left, 0.0, -res, top)
        return geometry_mask(
            [json.loads(self.geojson_3857)], (tilesize, tilesize), transform, invert=True
        )


@dataclass(frozen=True)
class Chunk:
    """A block of K x K tiles of the output: the unit of work, retry, resume and distribution.

    Attributes:
        key: stable name, "r{row}-c{col}" in chunk units.
        row_off, col_off: pixel offset of the chunk in the output.
        height, width: chunk size in pixels (edge chunks may be smaller).
        tiles: the chunk's tiles, row-major.
    """

    key: str
    row_off: int
    col_off: int
    height: int
    width: int
    tiles: tuple[Tile, ...]


def plan_chunks(plan: Plan, chunk_tiles: int, tiles: Iterable[Tile] | None = None) -> list[Chunk]:
    """Group the plan's tiles (or a subset) into chunks of `chunk_tiles` x `chunk_tiles` tiles.

    Raises:
        ConfigError: chunk_tiles < 1.
    """
    if chunk_tiles < 1:
        raise ConfigError(f"chunk-tiles must be >= 1, got {chunk_tiles}")
    groups: dict[tuple[int, int], list[Tile]] = {}
    n = 2**plan.zoom
    for t in plan.tiles if tiles is None else tiles:
        col = (t[0] - plan.x_start) % n
        row = t[1] - plan.y_start
        groups.setdefault((row // chunk_tiles, col // chunk_tiles), []).append(t)
    size = plan.tilesize * chunk_tiles
    chunks = []
    for (r, c), ts in sorted(groups.items()):
        height = min(size, plan.height - r * size)
        width = min(size, plan.width - c * size)
        chunks.append(Chunk(f"r{r}-c{c}", r * size, c * size, height, width, tuple(ts)))
    return chunks
