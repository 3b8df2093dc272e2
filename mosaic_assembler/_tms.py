"""mosaic_assembler._tms: the output grid as a morecantile TileMatrixSet (any TMS, or custom).

    Grid            the run's TileMatrixSet as a small frozen value (its JSON), WebMercatorQuad
                    by default
    load_grid       `tms` (a morecantile id or an OGC TMS 2.0 JSON file) → Grid
    custom_grid     `crs` + `resolution` (+ an anchor on the sources' pixel grid) → Grid
    tms_tiles       the tiles of an AOI at one level of any TMS (a burn in the TMS's CRS)

WebMercatorQuad keeps its own planner in `grid` (supermercado's burn, the antimeridian wrap):
its outputs do not change by a byte. Every other grid is planned here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import morecantile
import numpy
from affine import Affine
from morecantile import TileMatrixSet
from rasterio.crs import CRS

from mosaic_assembler.errors import AOIError, ConfigError

__all__ = ["Grid", "WEB_MERCATOR", "auto_utm", "custom_grid", "load_grid", "tms_tiles"]

DEFAULT_TMS = "WebMercatorQuad"


@functools.lru_cache(maxsize=16)
def _parse(tms_json: str) -> TileMatrixSet:
    if not tms_json:
        return morecantile.tms.get(DEFAULT_TMS)
    return TileMatrixSet.model_validate_json(tms_json)


@dataclass(frozen=True)
class Grid:
    """The output's TileMatrixSet, kept as its JSON so the value is small, hashable, picklable.

    Attributes:
        tms_json: the TMS as OGC TMS 2.0 JSON; "" is WebMercatorQuad (the default grid).
        custom: built from `crs` + `resolution` for this run (TiTiler does not know it, and
            the output is cropped to the AOI's bounds snapped to the grid).
    """

    tms_json: str = ""
    custom: bool = False

    @property
    def tms(self) -> TileMatrixSet:
        """The morecantile TileMatrixSet (parsed once per process)."""
        return _parse(self.tms_json)

    @property
    def is_default(self) -> bool:
        """WebMercatorQuad, planned and written exactly as before there were other grids."""
        return not self.tms_json

    @property
    def id(self) -> str:
        """The TMS id (TiTiler's `{tileMatrixSetId}`)."""
        return DEFAULT_TMS if self.is_default else str(self.tms.id)

    @property
    def crs(self) -> CRS:
        """The output CRS (the TMS's)."""
        return CRS.from_epsg(3857) if self.is_default else self.tms.rasterio_crs

    @property
    def crs_text(self) -> str:
        """The CRS as written into chunk files and VRTs ("EPSG:3857" for the default)."""
        if self.is_default:
            return "EPSG:3857"
        epsg = self.crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else self.crs.to_wkt()

    def tile_bounds(self, x: int, y: int, z: int) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of a tile in the TMS's CRS."""
        b = self.tms.xy_bounds(morecantile.Tile(x, y, z))
        return (b.left, b.bottom, b.right, b.top)

    def matrix_size(self, z: int) -> tuple[int, int]:
        """(columns, rows) of level z."""
        m = self.tms.matrix(z)
        return m.matrixWidth, m.matrixHeight

    def resolution(self, z: int, tilesize: int) -> float:
        """Pixel size of level z rendered at `tilesize` px per tile (`--tilesize` scales it)."""
        m = self.tms.matrix(z)
        return m.cellSize * m.tileWidth / tilesize

    def check_zoom(self, z: int) -> None:
        """Raise ConfigError unless level z is one of the TMS's own (no extrapolation)."""
        tms = self.tms
        ids = [int(m.id) for m in tms.tileMatrices if str(m.id).isdigit()]
        if z not in ids:
            raise ConfigError(
                f"`zoom` {z} is not a level of TileMatrixSet {tms.id} (levels "
                f"{min(ids, default=0)}-{max(ids, default=0)})"
            )
        m = tms.matrix(z)
        if m.variableMatrixWidths or m.tileWidth != m.tileHeight:
            raise ConfigError(
                f"TileMatrixSet {tms.id} level {z} has variable matrix widths or non-square "
                "tiles: not supported as an output grid"
            )


WEB_MERCATOR = Grid()


def load_grid(tms: str | Path | None) -> Grid:
    """The grid of `tms`: a morecantile id or the path of an OGC TMS 2.0 JSON file.

    Raises:
        ConfigError: unknown id, unreadable file, or a document that is not a TMS.
    """
    if tms is None or str(tms) == DEFAULT_TMS:
        return WEB_MERCATOR
    text = str(tms)
    if text in morecantile.tms.list():
        return Grid(morecantile.tms.get(text).model_dump_json(exclude_none=True))
    path = Path(text)
    if not (text.endswith(".json") or path.is_file()):
        raise ConfigError(
            f"`tms` {text!r} is neither a TileMatrixSet id ({', '.join(morecantile.tms.list())}) "
            "nor a TMS JSON file"
        )
    try:
        doc = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"`tms` file {text!r} cannot be read: {e}") from e
    try:
        tms_obj = TileMatrixSet.model_validate_json(doc)
    except ValueError as e:  # pydantic's ValidationError, JSON errors
        first = str(e).strip().splitlines()
        reason = first[-1].strip() if first else type(e).__name__
        raise ConfigError(
            f"`tms` file {text!r} is not an OGC TileMatrixSet 2.0 document: {reason}"
        ) from e
    if tms_obj.id == DEFAULT_TMS:
        return WEB_MERCATOR
    return Grid(tms_obj.model_dump_json(exclude_none=True))


def parse_crs(value: str) -> CRS:
    """A CRS from `crs` (EPSG:XXXX, WKT, PROJ string).

    Raises:
        ConfigError: not a CRS.
    """
    from pyproj import CRS as ProjCRS

    try:  # pyproj first: GDAL would also print its own error line on stderr
        crs = CRS.from_wkt(ProjCRS.from_user_input(value).to_wkt())
    except Exception as e:  # pyproj's CRSError, rasterio's
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"`crs` {value!r} is not a coordinate reference system: {reason}") from e
    if not (crs.is_projected or crs.is_geographic):
        raise ConfigError(f"`crs` {value!r} is neither projected nor geographic")
    return crs


def auto_utm(bbox: tuple[float, float, float, float]) -> str:
    """The UTM zone (EPSG:326NN north, 327NN south) of a lon/lat bbox's centre."""
    west, south, east, north = bbox
    if west > east:  # across 180°
        east += 360.0
    lon = (west + east) / 2
    lon = (lon + 180.0) % 360.0 - 180.0
    lat = (south + north) / 2
    zone = min(60, int((lon + 180.0) // 6) + 1)
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def _transformer(crs: CRS) -> Any:
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:4326", crs.to_wkt(), always_xy=True)


def project_aoi(geometry: Any, crs: CRS) -> Any:
    """The AOI (lon/lat shapely geometry) in `crs`, densified so that curved edges follow.

    Raises:
        AOIError: the AOI does not project (outside the CRS's domain).
    """
    import shapely

    dense = shapely.segmentize(geometry, 0.05)
    tr = _transformer(crs)

    def fwd(coords: numpy.ndarray) -> numpy.ndarray:
        x, y = tr.transform(coords[:, 0], coords[:, 1])
        return numpy.column_stack([x, y])

    projected = shapely.transform(dense, fwd)
    if not numpy.isfinite(numpy.asarray(projected.bounds)).all():
        raise AOIError(f"the AOI does not project to {crs.to_string()}: it is outside the grid")
    if not projected.is_valid:
        projected = projected.buffer(0)
    return projected


def custom_grid(
    crs: CRS,
    resolution: float,
    bounds: tuple[float, float, float, float],
    tilesize: int,
    anchor: tuple[float, float] = (0.0, 0.0),
) -> tuple[Grid, int]:
    """A TMS for one run: `resolution` at its deepest level, origin at the AOI's top-left.

    The origin is the AOI's top-left corner snapped outward to the pixel grid through
    `anchor` (a pixel corner of the sources under `snap` native, else 0, 0), so every output
    pixel is a source pixel. Each level up doubles the cell size (so overviews and split
    parents follow the TMS); level 0 is one tile.

    Args:
        crs: the grid's CRS.
        resolution: pixel size at the deepest level, in CRS units.
        bounds: the AOI's bounds in `crs`.
        tilesize: tile side in pixels (the tile matrices' tileWidth).
        anchor: a corner of the pixel grid to snap to.

    Returns:
        (grid, the deepest level: the run's zoom)
    """
    r = resolution
    ax, ay = anchor
    minx, miny, maxx, maxy = bounds
    eps = 1e-6
    left = ax + math.floor((minx - ax) / r + eps) * r
    top = ay + math.ceil((maxy - ay) / r - eps) * r
    wpx = max(1, math.ceil((maxx - left) / r - eps))
    hpx = max(1, math.ceil((top - miny) / r - eps))
    ntiles = max(math.ceil(wpx / tilesize), math.ceil(hpx / tilesize))
    zoom = max(0, math.ceil(math.log2(ntiles))) if ntiles > 1 else 0
    if zoom > 30:
        raise ConfigError(f"`resolution` {r} over this AOI needs more than 2^30 tiles a side")
    mpu = crs.linear_units_factor[1] if crs.is_projected else 2 * math.pi * 6378137.0 / 360.0
    inverted = _axis_inverted(crs)
    origin = [top, left] if inverted else [left, top]
    matrices = []
    for z in range(zoom + 1):
        f = 2 ** (zoom - z)
        matrices.append(
            {
                "id": str(z),
                "scaleDenominator": r * f * mpu / 0.28e-3,
                "cellSize": r * f,
                "cornerOfOrigin": "topLeft",
                "pointOfOrigin": origin,
                "tileWidth": tilesize,
                "tileHeight": tilesize,
                # 2^z x 2^z tiles (the AOI fills the top-left of level `zoom`): a quadtree,
                # so split outputs have quadkeys and a mosaicJSON
                "matrixWidth": 2**z,
                "matrixHeight": 2**z,
            }
        )
    epsg = crs.to_epsg()
    crs_doc: Any = (
        f"http://www.opengis.net/def/crs/EPSG/0/{epsg}" if epsg else {"wkt": crs.to_wkt()}
    )
    name = f"EPSG{epsg}" if epsg else "custom"
    doc = {
        "id": f"{name}_{r:g}".replace(".", "p").replace("-", "m").replace("+", ""),
        "title": f"{crs.to_string()} at {r:g}, snapped at ({left!r}, {top!r})",
        "crs": crs_doc,
        "tileMatrices": matrices,
    }
    try:
        tms = TileMatrixSet.model_validate(doc)
    except ValueError as e:
        raise ConfigError(f"`crs` {crs.to_string()} cannot make a TileMatrixSet: {e}") from e
    return Grid(tms.model_dump_json(exclude_none=True), custom=True), zoom


def _axis_inverted(crs: CRS) -> bool:
    from morecantile.models import crs_axis_inverted
    from pyproj import CRS as ProjCRS

    return bool(crs_axis_inverted(ProjCRS.from_wkt(crs.to_wkt())))


def tile_ranges(
    grid: Grid, zoom: int, bounds: tuple[float, float, float, float]
) -> tuple[int, int, int, int]:
    """(col0, row0, col1, row1), inclusive, of the level's tiles touching `bounds` (clamped)."""
    left0, _, right0, top0 = grid.tile_bounds(0, 0, zoom)
    span = right0 - left0
    ncols, nrows = grid.matrix_size(zoom)
    minx, miny, maxx, maxy = bounds
    eps = 1e-9
    col0 = max(0, math.floor((minx - left0) / span + eps))
    col1 = min(ncols - 1, math.ceil((maxx - left0) / span - eps) - 1)
    row0 = max(0, math.floor((top0 - maxy) / span + eps))
    row1 = min(nrows - 1, math.ceil((top0 - miny) / span - eps) - 1)
    return col0, row0, col1, row1


def tms_tiles(grid: Grid, zoom: int, projected: Any, is_bbox: bool) -> set[tuple[int, int]]:
    """The (x, y) tiles of level `zoom` that the AOI (in the TMS's CRS) touches.

    A bbox takes the whole rectangle of tiles of its projected bounds; a polygon is burnt at
    the tile resolution with all_touched (as supermercado burns a mercator polygon).

    Raises:
        AOIError: the AOI lies outside the TMS's matrix.
    """
    col0, row0, col1, row1 = tile_ranges(grid, zoom, projected.bounds)
    if col1 < col0 or row1 < row0:
        raise AOIError(f"the AOI is outside TileMatrixSet {grid.id} at level {zoom}")
    if is_bbox:
        return {(x, y) for y in range(row0, row1 + 1) for x in range(col0, col1 + 1)}
    from rasterio.features import rasterize
    from shapely.geometry import mapping

    left0, _, right0, top0 = grid.tile_bounds(0, 0, zoom)
    span = right0 - left0
    transform = Affine(span, 0.0, left0 + col0 * span, 0.0, -span, top0 - row0 * span)
    burnt = rasterize(
        [mapping(projected)],
        out_shape=(row1 - row0 + 1, col1 - col0 + 1),
        transform=transform,
        all_touched=True,
        dtype="uint8",
    )
    rows, cols = numpy.nonzero(burnt)
    return {(int(c) + col0, int(r) + row0) for r, c in zip(rows, cols, strict=True)}
