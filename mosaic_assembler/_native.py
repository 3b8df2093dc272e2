"""mosaic_assembler._native: the sources' pixel grids, and the custom grid of a run.

`--crs CRS --resolution R` makes a grid for the run (`_tms.custom_grid`). Under `snap`
native (the default when every source is on CRS at R with one pixel phase) its pixel corners
are the sources' own, so `first` of one scene reproduces its pixels without resampling. The
sources' grids come from their items' `proj:` fields (`proj:code`/`proj:epsg` +
`proj:transform`) where present, else from the COG headers.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rasterio.crs import CRS

from mosaic_assembler._tms import Grid, auto_utm, custom_grid, parse_crs, project_aoi
from mosaic_assembler.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["PixelGrid", "resolve_custom_grid", "source_grids"]

#: Relative tolerance on pixel sizes and phases (a proj:transform printed with 9 digits).
_TOL = 1e-6


@dataclass(frozen=True)
class PixelGrid:
    """One source's pixel grid: CRS, pixel size (x, y) and a pixel corner."""

    crs: CRS
    xres: float
    yres: float
    left: float
    top: float

    def describe(self) -> str:
        return f"{self.crs.to_string()} at {self.xres:g} x {self.yres:g}"


def _grid_of_header(href: str) -> PixelGrid:
    import rasterio

    with rasterio.open(href) as src:
        t = src.transform
        if src.crs is None:
            raise ConfigError(f"`snap` native: {href!r} has no CRS")
        return PixelGrid(src.crs, abs(t.a), abs(t.e), t.c, t.f)


def _grid_of_proj(fields: dict[str, Any]) -> PixelGrid | None:
    code = fields.get("proj:code") or (
        f"EPSG:{fields['proj:epsg']}" if fields.get("proj:epsg") else None
    )
    t = fields.get("proj:transform")
    if not code or not t or len(t) < 6 or t[1] or t[3]:
        return None
    try:
        crs = CRS.from_user_input(code)
    except Exception:
        return None
    return PixelGrid(crs, abs(float(t[0])), abs(float(t[4])), float(t[2]), float(t[5]))


def _grids_of_item(asset: Any) -> Iterable[PixelGrid]:
    item = json.loads(asset.item_json)
    props = item.get("properties", {})
    for key in asset.assets:
        a = item["assets"][key]
        grid = _grid_of_proj({**props, **a})
        yield grid if grid is not None else _grid_of_header(a["href"])


def source_grids(assets: Iterable[Any]) -> list[PixelGrid]:
    """The distinct pixel grids of the assets (COG paths/URLs or STAC items)."""
    found: list[PixelGrid] = []
    for asset in assets:
        if hasattr(asset, "item_json"):
            grids = list(_grids_of_item(asset))
        else:
            grids = [_grid_of_header(str(asset))]
        for g in grids:
            if not any(_same(g, f) for f in found):
                found.append(g)
    return found


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _TOL * max(abs(a), abs(b))


def _in_phase(a: float, b: float, res: float) -> bool:
    k = (a - b) / res
    return abs(k - round(k)) <= 1e-3


def _same(a: PixelGrid, b: PixelGrid) -> bool:
    return (
        a.crs == b.crs
        and _close(a.xres, b.xres)
        and _close(a.yres, b.yres)
        and _in_phase(a.left, b.left, a.xres)
        and _in_phase(a.top, b.top, a.yres)
    )


def resolve_custom_grid(
    crs_option: str,
    resolution: float,
    snap: str | None,
    aoi: Any,
    tilesize: int,
    source_assets: Iterable[Any] | None,
) -> tuple[Grid, int, str]:
    """The custom grid of a run (`crs` + `resolution`), snapped as `snap` says.

    Args:
        crs_option: `crs` (EPSG:XXXX, WKT, PROJ, or auto-utm).
        resolution: `resolution`, in the CRS's units.
        snap: "native", "none" or None (native when the sources agree, else none).
        aoi: the run's AOI.
        tilesize: tile side in pixels.
        source_assets: every asset of the source (None: no local source).

    Returns:
        (grid, zoom, the snap used: "native" or "none")

    Raises:
        ConfigError: `snap` native while the sources are not all on one grid at `crs` and
            `resolution`.
    """
    crs = parse_crs(auto_utm(aoi.bbox) if crs_option == "auto-utm" else crs_option)
    anchor, used, res = (0.0, 0.0), "none", float(resolution)
    if snap != "none":
        grids = source_grids(source_assets) if source_assets is not None else []
        native = [g for g in grids if g.crs == crs and _close(g.xres, res) and _close(g.yres, res)]
        agree = bool(grids) and len(grids) == len(native) == 1
        if agree:
            g = native[0]
            anchor, used, res = (g.left, g.top), "native", g.xres  # the sources' exact size
        elif snap == "native":
            found = "; ".join(g.describe() for g in grids[:4]) or "no source grid"
            more = f" (and {len(grids) - 4} more)" if len(grids) > 4 else ""
            raise ConfigError(
                f"`snap` native needs every source on `crs` {crs.to_string()} at `resolution` "
                f"{resolution:g} with one pixel grid; the sources are on {found}{more}"
            )
    bounds = project_aoi(aoi.geometry, crs).bounds
    grid, zoom = custom_grid(crs, res, bounds, tilesize, anchor)
    logger.info("grid %s at %g (snap %s), level %d", crs.to_string(), res, used, zoom)
    return grid, zoom, used
