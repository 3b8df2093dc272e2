"""mosaic_assembler.grid: area of interest, the tile grid and the output raster.

The output raster is the rectangle of zoom-Z tiles that covers the AOI, each tile rendered
at `tilesize` px (512 px = TiTiler's `tilesize=512`, the reference notebook's `@2x`). The
grid is WebMercatorQuad unless the run gives another TileMatrixSet (`_tms.Grid`: any
morecantile TMS, or a custom one from `crs` + `resolution`, whose output is further cropped
to the AOI's bounds snapped to the grid: `Plan.window`).

Antimeridian: when the AOI crosses 180° (a bbox with W > E, or a polygon whose parts lie on
both sides), the output is ONE continuous raster that runs east across 180°: tiles west of
180° keep their place and the tiles east of it (x = 0, 1, …) follow them, so x coordinates
of the output go past +20037508.34 m. Each tile is still read at its real (wrapped) x/y/z.
Other grids do not wrap: over a grid continuous across 180° (UTM zone 60, a polar grid)
the output is simply continuous; a grid with its discontinuity at 180° (WGS1984Quad,
WorldCRS84Quad) refuses an AOI across it.
"""

from __future__ import annotations

import dataclasses
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

from mosaic_assembler._tms import WEB_MERCATOR, Grid, project_aoi, tms_tiles
from mosaic_assembler.errors import AOIError, ConfigError, PlanTooLargeError
from mosaic_assembler.types import Tile

__all__ = [
    "AOI",
    "Grid",
    "Plan",
    "Tile",
    "WEB_MERCATOR",
    "plan_tiles",
    "tile_bounds",
    "MAX_LAT",
    "TILESIZES",
]

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
        grid: the TileMatrixSet (WebMercatorQuad by default).
        window: (row_off, col_off, height, width) of the output within the tiles' raster
            (a custom grid's AOI bounds snapped to its pixels); None: all of it.
    """

    zoom: int
    tilesize: int
    tiles: tuple[Tile, ...]
    x_start: int
    y_start: int
    cols: int
    rows: int
    grid: Grid = WEB_MERCATOR
    window: tuple[int, int, int, int] | None = None

    @property
    def wrap(self) -> int:
        """Columns after which x wraps (the antimeridian of WebMercatorQuad; none elsewhere)."""
        return 2**self.zoom if self.grid.is_default else 1 << 62

    @property
    def output_window(self) -> tuple[int, int, int, int]:
        """(row_off, col_off, height, width) of the output in the tiles' raster."""
        return self.window or (0, 0, self.height, self.width)

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
        """Pixel size in the grid's CRS units (metres of EPSG:3857 by default)."""
        if self.grid.is_default:
            return 2 * EARTH_HALF / 2**self.zoom / self.tilesize
        return self.grid.resolution(self.zoom, self.tilesize)

    @property
    def transform(self) -> Affine:
        """Affine transform of the tiles' raster (in the grid's CRS)."""
        if self.grid.is_default:
            left, _, _, top = tile_bounds(self.x_start, self.y_start, self.zoom)
        else:
            left, _, _, top = self.grid.tile_bounds(self.x_start, self.y_start, self.zoom)
        return Affine(self.resolution, 0.0, left, 0.0, -self.resolution, top)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Output bounds (left, bottom, right, top) in the grid's CRS; right may pass 180°."""
        row0, col0, height, width = self.output_window
        t = self.transform * Affine.translation(col0, row0)
        return (t.c, t.f - height * self.resolution, t.c + width * t.a, t.f)

    @property
    def crosses_antimeridian(self) -> bool:
        """True when the output runs east across 180°."""
        return self.grid.is_default and self.x_start + self.cols > 2**self.zoom

    def offset(self, tile: Tile) -> tuple[int, int]:
        """(row_off, col_off) in output pixels of a tile."""
        x, y, _ = tile
        col = (x - self.x_start) % self.wrap
        return ((y - self.y_start) * self.tilesize, col * self.tilesize)


def check_zoom(zoom: int) -> None:
    """Raise ConfigError unless zoom is an integer in 0–24."""
    if isinstance(zoom, bool) or not isinstance(zoom, int) or not 0 <= zoom <= 24:
        raise ConfigError(f"zoom must be an integer between 0 and 24, got {zoom!r}")


def plan_tiles(
    aoi: AOI,
    zoom: int,
    tilesize: int = 512,
    max_pixels: float = 1e10,
    grid: Grid = WEB_MERCATOR,
) -> Plan:
    """Plan the tiles of `aoi` at `zoom` and the output raster they make.

    Args:
        aoi: area of interest.
        zoom: the TMS level (WebMercatorQuad: 0–24).
        tilesize: 256 or 512 px per tile (a custom grid: its tile width).
        max_pixels: refuse outputs larger than this many pixels (width × height).
        grid: the TileMatrixSet (WebMercatorQuad by default).

    Returns:
        Plan with the tiles in row-major order.

    Raises:
        ConfigError: bad zoom or tilesize.
        PlanTooLargeError: the output would exceed `max_pixels`.
    """
    if not grid.is_default:
        return _plan_tms(aoi, zoom, tilesize, max_pixels, grid)
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


def _plan_tms(aoi: AOI, zoom: int, tilesize: int, max_pixels: float, grid: Grid) -> Plan:
    """`plan_tiles` on a TMS other than WebMercatorQuad: a burn in its CRS, no wrap."""
    if tilesize not in TILESIZES and not grid.custom:
        raise ConfigError(f"tilesize must be one of {TILESIZES}, got {tilesize!r}")
    grid.check_zoom(zoom)
    crs = grid.crs
    if crs.is_geographic and aoi.bbox[0] > aoi.bbox[2]:
        raise AOIError(
            f"the AOI crosses the antimeridian, where TileMatrixSet {grid.id} is discontinuous: "
            "use WebMercatorQuad (the default, which wraps), a grid continuous over the AOI "
            "(e.g. `crs` auto-utm), or two runs"
        )
    projected = project_aoi(aoi.geometry, crs)
    from mosaic_assembler._tms import tile_ranges

    col0, row0, col1, row1 = tile_ranges(grid, zoom, projected.bounds)
    _check_size((col1 - col0 + 1) * tilesize, (row1 - row0 + 1) * tilesize, zoom, max_pixels)
    xy = tms_tiles(grid, zoom, projected, aoi.is_bbox)
    if not xy:
        raise AOIError(f"AOI covers no tile at zoom {zoom}")
    x_start, y_start = min(x for x, _ in xy), min(y for _, y in xy)
    cols = max(x for x, _ in xy) - x_start + 1
    rows = max(y for _, y in xy) - y_start + 1
    tiles = sorted(xy, key=lambda t: (t[1], t[0]))
    plan = Plan(
        zoom, tilesize, tuple((x, y, zoom) for x, y in tiles), x_start, y_start, cols, rows,
        grid,
    )  # fmt: skip
    if grid.custom:
        plan = dataclasses.replace(plan, window=_snapped_window(plan, projected.bounds))
    return plan


def check_split(grid: Grid, split_zoom: int, zoom: int) -> None:
    """Raise ConfigError unless level `split_zoom` of the grid is a parent level of `zoom`."""
    if split_zoom > zoom:
        raise ConfigError(f"`split_zoom` {split_zoom} must not be above the grid's level {zoom}")
    if grid.is_default:
        return
    grid.check_zoom(split_zoom)
    fine, coarse = grid.tms.matrix(zoom), grid.tms.matrix(split_zoom)
    ratio = coarse.cellSize / fine.cellSize
    if (
        abs(ratio - 2 ** (zoom - split_zoom)) > 1e-9 * ratio
        or grid.tile_bounds(0, 0, zoom)[::3] != grid.tile_bounds(0, 0, split_zoom)[::3]
    ):
        raise ConfigError(
            f"level {split_zoom} of TileMatrixSet {grid.id} is not a parent of level {zoom} "
            "(cell sizes do not halve or origins differ): choose another `split_zoom`"
        )


def _snapped_window(
    plan: Plan, bounds: tuple[float, float, float, float]
) -> tuple[int, int, int, int]:
    """The AOI's bounds snapped outward to the plan's pixels, within its raster."""
    t, eps = plan.transform, 1e-6
    res = plan.resolution
    minx, miny, maxx, maxy = bounds
    col0 = max(0, math.floor((minx - t.c) / res + eps))
    col1 = min(plan.width, math.ceil((maxx - t.c) / res - eps))
    row0 = max(0, math.floor((t.f - maxy) / res + eps))
    row1 = min(plan.height, math.ceil((t.f - miny) / res - eps))
    return (row0, col0, max(1, row1 - row0), max(1, col1 - col0))


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

    geojson_3857: str  # the AOI in the grid's CRS (EPSG:3857 by default)
    grid: Grid = WEB_MERCATOR

    @classmethod
    def from_aoi(cls, aoi: AOI, grid: Grid = WEB_MERCATOR) -> Clipper:
        """Project the AOI to the grid's CRS once."""
        if not grid.is_default:
            return cls(json.dumps(mapping(project_aoi(aoi.geometry, grid.crs))), grid)
        from shapely import transform

        geom = transform(aoi.geometry, _lonlat_to_mercator)
        return cls(json.dumps(mapping(geom)))

    def inside(self, tile: Tile, tilesize: int) -> numpy.ndarray:
        """Boolean array, True where a tile's pixel centre lies inside the AOI."""
        if self.grid.is_default:
            left, bottom, right, top = tile_bounds(*tile)
        else:
            left, bottom, right, top = self.grid.tile_bounds(*tile)
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
    n = plan.wrap
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
