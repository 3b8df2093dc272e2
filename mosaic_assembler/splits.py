"""mosaic_assembler.splits: one COG per zoom-Z quadkey, plus a mosaicJSON and STAC items.

For outputs too large for one file. The zoom-Z tiles align with the output grid (it is made
of tiles of a deeper zoom), so the split outputs tile the output exactly: no gap, no overlap.
On another TileMatrixSet the split tiles are the parents in that TMS (each level halves the
matrix, as in every quadtree TMS and the custom grids); a name is the tile's quadkey when
its x and y fit one (else `Z-X-Y`), and the mosaicJSON carries the TMS (`tilematrixset`).
A custom grid's split files are cropped to the output's window like the single COG.
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path
from typing import Any

import mercantile
from cogeo_mosaic.mosaic import MosaicJSON
from shapely.geometry import box, mapping

from mosaic_assembler.grid import MAX_LAT, Chunk, Plan
from mosaic_assembler.types import BandInfo
from mosaic_assembler.writer import ChunkOverviews, COGOptions, finalize_cog, write_vrt


def split_windows(
    plan: Plan, tiles: set[tuple[int, int, int]], split_zoom: int
) -> dict[str, tuple[int, int, int, int]]:
    """Quadkey → (row_off, col_off, height, width) of each zoom-Z tile holding a tile."""
    d = plan.zoom - split_zoom
    f, n, ts = 2**d, plan.wrap, plan.tilesize
    wr0, wc0, wh, ww = plan.output_window
    windows = {}
    for px, py in sorted({(x >> d, y >> d) for x, y, _ in tiles}):
        c0 = (px * f - plan.x_start) % n
        if c0 + f > n:  # the quadkey starts west of the output's first column
            c0 -= n
        r0 = py * f - plan.y_start
        col0, row0 = max(wc0, c0 * ts), max(wr0, r0 * ts)
        col1 = min(wc0 + ww, (c0 + f) * ts)
        row1 = min(wr0 + wh, (r0 + f) * ts)
        if col1 <= col0 or row1 <= row0:
            continue  # outside a custom grid's cropped output
        windows[split_name(px, py, split_zoom)] = (row0, col0, row1 - row0, col1 - col0)
    return windows


def split_name(x: int, y: int, z: int) -> str:
    """A split file's name: the tile's quadkey, or Z-X-Y when x or y does not fit one."""
    if x < 2**z and y < 2**z:
        return mercantile.quadkey(x, y, z) if z else "0"
    return f"{z}-{x}-{y}"


def write_split(
    plan: Plan,
    parts: list[tuple[Chunk, Path]],
    bands: BandInfo,
    split_zoom: int,
    out_dir: Path,
    cog: COGOptions,
    final_dir: Path | str,
    overviews: ChunkOverviews | None = None,
) -> tuple[Path | str, ...]:
    """Write `{quadkey}.tif` COGs, `mosaic.json` and `items.json` into out_dir.

    Args:
        plan: the output grid.
        parts: (chunk, chunk GeoTIFF) pairs.
        bands: band count, dtype and names.
        split_zoom: the zoom of the quadkeys, one COG each.
        out_dir: the directory to create and fill.
        cog: the COGs' options.
        final_dir: where out_dir will be renamed to, or the s3:// prefix it is uploaded to
            (the mosaicJSON lists absolute paths or s3:// URLs there; the STAC items use
            relative hrefs).
        overviews: the chunk files' internal overviews (see `writer.write_vrt`), or None.

    Returns:
        The final paths of the COGs.
    """
    out_dir.mkdir(parents=True)
    tiles = {t for chunk, _ in parts for t in chunk.tiles}
    remote = str(final_dir).startswith("s3://")
    base = str(final_dir).rstrip("/") if remote else str(Path(final_dir).absolute())
    features: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    for qk, window in split_windows(plan, tiles, split_zoom).items():
        _write_quadkey(plan, parts, bands, qk, window, out_dir, cog, overviews)
        geom, bbox = _footprint(plan, window)
        path = f"{base}/{qk}.tif"
        features.append(
            {"type": "Feature", "geometry": geom, "properties": {"path": path, "quadkey": qk}}
        )
        items.append(_stac_item(qk, geom, bbox, window, now, plan.grid.crs.to_epsg()))
    quadtree = plan.grid.is_default or plan.grid.tms.is_quadtree
    if quadtree and all(_is_quadkey(f["properties"]["quadkey"]) for f in features):
        tms = None if plan.grid.is_default else plan.grid.tms
        mosaic = _mosaicjson(features, split_zoom, plan.zoom, tms)
        (out_dir / "mosaic.json").write_text(mosaic.model_dump_json(exclude_none=True))
    (out_dir / "items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": items})
    )
    paths = [f["properties"]["path"] for f in features]
    return tuple(p if remote else Path(p) for p in paths)


def _write_quadkey(
    plan: Plan,
    parts: list[tuple[Chunk, Path]],
    bands: BandInfo,
    qk: str,
    window: tuple[int, int, int, int],
    out_dir: Path,
    cog: COGOptions,
    overviews: ChunkOverviews | None,
) -> None:
    """Write `out_dir/{qk}.tif`: the COG of one window, through a VRT in a sibling directory."""
    work = out_dir.parent / f"{out_dir.name}.vrt"
    work.mkdir(exist_ok=True)
    vrt = write_vrt(work / f"{qk}.vrt", plan, parts, bands, window, overviews=overviews, cog=cog)
    _, c0, _, w = window
    columns = len({c.col_off for c, _ in parts if c.col_off < c0 + w and c.col_off + c.width > c0})
    finalize_cog(
        vrt,
        out_dir / f"{qk}.tif",
        cog,
        existing_overviews=overviews is not None,
        chunk_columns=columns,
    )
    shutil.rmtree(work)


def _is_quadkey(name: str) -> bool:
    return name.isdigit() and set(name) <= set("0123")


def _footprint(plan: Plan, window: tuple[int, int, int, int]) -> tuple[dict[str, Any], list[float]]:
    """A window's GeoJSON polygon (latitudes clamped to Web Mercator's) and its lon/lat bbox."""
    row0, col0, height, width = window
    t = plan.transform
    left, top = t * (col0, row0)
    right, bottom = t * (col0 + width, row0 + height)
    if not plan.grid.is_default:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(
            plan.grid.crs, "EPSG:4326", left, bottom, right, top, densify_pts=21
        )
        if e < w:  # past 180°
            e += 360.0
        return dict(mapping(box(w, s, e, n))), [w, s, e, n]
    west, north = mercantile.lnglat(left, top)
    east, south = mercantile.lnglat(right, bottom)
    if east < west:  # past 180°
        east += 360.0
    geom = dict(mapping(box(west, max(south, -MAX_LAT), east, min(north, MAX_LAT))))
    return geom, [west, south, east, north]


def _stac_item(
    qk: str,
    geom: dict[str, Any],
    bbox: list[float],
    window: tuple[int, int, int, int],
    now: str,
    epsg: int | None = 3857,
) -> dict[str, Any]:
    """The STAC item of one split COG (a relative href: valid wherever the directory goes)."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": qk,
        "geometry": geom,
        "bbox": bbox,
        "properties": {
            "datetime": now,
            "mosaic:quadkey": qk,
            "mosaic:shape": [window[2], window[3]],
            "mosaic:epsg": epsg,
        },
        "assets": {
            "data": {
                "href": f"./{qk}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
            }
        },
        "links": [],
    }


def _mosaicjson(
    features: list[dict[str, Any]], split_zoom: int, maxzoom: int, tms: Any = None
) -> MosaicJSON:
    """The mosaicJSON of the split COGs: each quadkey lists exactly its own file.

    (`MosaicJSON.from_features` would also list neighbours whose footprints only touch the
    quadkey's edge.)
    """
    corners = [
        f["geometry"]["coordinates"][0][i] for f in features for i in (0, 2)
    ]  # (east, south) and (west, north) of each box
    lons = [c[0] for c in corners]
    lats = [c[1] for c in corners]
    return MosaicJSON(
        mosaicjson="0.0.3",
        minzoom=split_zoom,
        maxzoom=maxzoom,
        quadkey_zoom=split_zoom,
        bounds=(min(lons), min(lats), min(max(lons), 180.0), max(lats)),
        tiles={f["properties"]["quadkey"]: [f["properties"]["path"]] for f in features},
        **({"tilematrixset": tms} if tms is not None else {}),
    )
