"""mosaic_assembler.resolve: the options turned into a run (the pipeline's first phases).

    resolve   options → the run's AOI, opened source (searched or pinned), assets, expression
    prepare   the tiler (titiler-pgstac registration, in-process or HTTP), output bands, dtype

This is the only place that interprets `AssembleOptions`; the later phases (`pipeline`)
take the values these return.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import ConfigError, SourceError
from mosaic_assembler.expressions import expression_assets, expression_dtype, translate_expression
from mosaic_assembler.grid import AOI, WEB_MERCATOR, Grid
from mosaic_assembler.harmonize import warn_mixed_baselines
from mosaic_assembler.options import AssembleOptions, ItemsFile, PgstacTiler, StacSearch
from mosaic_assembler.selection import ReadOptions
from mosaic_assembler.sources import open_source
from mosaic_assembler.sources._files import read_document
from mosaic_assembler.sources.pinning import load_pinned, search_key
from mosaic_assembler.storage import S3Url, is_s3
from mosaic_assembler.tilers.http import HttpOptions, HttpTiler, expand_env
from mosaic_assembler.types import BandInfo, Tile

logger = logging.getLogger(__name__)

__all__ = ["Prepared", "Resolved", "load_aoi", "prepare", "resolve"]


@dataclass(frozen=True)
class Resolved:
    """The options turned into a run: the only phase that interprets them.

    Attributes:
        source: the opened index of assets per tile (None: a tiler without one).
        read: the read options, with an expression's asset names turned into band names.
        search_key: the hash of the STAC search (pins its items), or "".
        pinned: the items came from the run directory (a resumed run).
        grid: the output's TileMatrixSet (`tms`, or the custom grid of `crs` + `resolution`).
        zoom: its level of the output.
    """

    output: Path | str  # str: an s3:// URL
    opts: AssembleOptions
    run_dir: Path | str  # str: an s3:// URL
    aoi: AOI
    source: Any
    assets: tuple[str, ...]
    read: ReadOptions
    search_key: str = ""
    pinned: bool = False
    grid: Grid = WEB_MERCATOR
    zoom: int = 0


def resolve(output: Path | str, opts: AssembleOptions) -> Resolved:
    """Load the AOI, open (or search, or reuse the pinned) source, decide the assets."""
    run_dir = run_dir_of(output, opts.run_dir)
    aoi = AOI.from_bbox(*opts.bbox) if opts.bbox is not None else None
    if opts.aoi is not None:
        aoi = load_aoi(opts.aoi)
    assets = opts.assets
    read = opts.read
    if opts.uses_items and read.expression:
        assets = assets or expression_assets(read.expression)
        read = dataclasses.replace(read, expression=translate_expression(read.expression, assets))
    key, pinned, source = "", False, None
    if opts.stac is not None:
        assert aoi is not None  # AssembleOptions requires an AOI with a search
        source, key, pinned = _search(opts, opts.stac, aoi, assets, run_dir)
    elif opts.index is not None:
        items = opts.index if isinstance(opts.index, ItemsFile) else None
        source = open_source(
            mosaicjson=None if items else opts.index.path,  # type: ignore[union-attr]
            items=items.path if items else None,
            assets=assets,
            extra_assets=_qa_assets(opts) if items else (),
        )
    if source is not None and isinstance(getattr(source, "items", None), tuple):
        warn_mixed_baselines(source.items, read.harmonize)  # Sentinel-2's offset, unremoved
    if aoi is None:
        assert source is not None  # AssembleOptions requires an AOI without a source
        aoi = AOI.from_bbox(*source.bounds)
    grid, zoom = _grid(opts, aoi, source, read.tilesize)
    return Resolved(output, opts, run_dir, aoi, source, assets, read, key, pinned, grid, zoom)


def _grid(opts: AssembleOptions, aoi: AOI, source: Any, tilesize: int) -> tuple[Grid, int]:
    """The output grid and level: `tms` at `zoom`, or the custom grid of `crs`."""
    from mosaic_assembler._tms import load_grid

    if opts.crs is None:
        assert opts.zoom is not None  # AssembleOptions requires it without `crs`
        return load_grid(opts.tms), opts.zoom
    from mosaic_assembler._native import resolve_custom_grid

    assert opts.resolution is not None  # AssembleOptions requires it with `crs`
    assets = source.all_assets() if source is not None else None
    grid, zoom, _ = resolve_custom_grid(opts.crs, opts.resolution, opts.snap, aoi, tilesize, assets)
    return grid, zoom


def run_dir_of(output: Path | str, run_dir: str | Path | None) -> Path | str:
    """The run directory: `run_dir`, else `OUTPUT.run` beside the output (s3:// URLs as str)."""
    where = str(run_dir) if run_dir else f"{output}.run"
    if is_s3(where):
        S3Url.parse(where, "`run_dir`")  # a bad URL is refused before anything is read
        return where
    return Path(where)


def load_aoi(aoi: Mapping[str, Any] | str | Path) -> AOI:
    """An AOI from a GeoJSON mapping, a GeoJSON string or a file path."""
    if isinstance(aoi, Mapping):
        return AOI.from_geojson(dict(aoi))
    text = str(aoi)
    if text.lstrip().startswith("{"):
        return AOI.from_geojson(text)
    try:
        data = read_document(text, "AOI file")
    except SourceError as e:
        raise ConfigError(str(e)) from e
    return AOI.from_geojson(data.decode("utf-8", errors="replace"))


def _qa_assets(opts: AssembleOptions) -> tuple[str, ...]:
    """The QA band when it is an asset of the items (not a band index of each COG)."""
    qa = opts.read.qa_mask
    return (qa.band,) if qa is not None and qa.bidx is None else ()


def _headers(pairs: Any) -> dict[str, str] | None:
    return {k: expand_env(v) for k, v in pairs} if pairs else None


def _search(
    opts: AssembleOptions,
    st: StacSearch,
    aoi: AOI,
    assets: tuple[str, ...],
    run_dir: Path | str,
) -> tuple[Any, str, bool]:
    """Run the STAC API search, or reuse the items a previous run pinned in `run_dir`.

    Optionally saves the equivalent mosaicJSON.

    Returns:
        (source, search key, whether the items came from the run directory)
    """
    from mosaic_assembler.sources.stac_api import open_stac_search, save_mosaicjson

    extra = _qa_assets(opts)
    key = search_key(st, aoi.geojson, assets, extra)
    source = None if opts.restart else load_pinned(run_dir, key, assets, extra)
    pinned = source is not None
    if source is None:
        # no --header here: those belong to the tiler's origin, never to the STAC API
        across = aoi.is_bbox and aoi.bbox[0] > aoi.bbox[2]  # across 180°: search the two parts
        where: dict[str, Any] = (
            {"bbox": list(aoi.bbox)}
            if aoi.is_bbox and not across
            else {"geometry": json.loads(aoi.geojson)}
        )
        source = open_stac_search(st, assets, extra_assets=extra, **where)
    if st.save_mosaicjson:
        minzoom, maxzoom = mosaicjson_zooms(opts)
        save_mosaicjson(
            source, st.save_mosaicjson, minzoom=minzoom, maxzoom=maxzoom,
            asset=st.mosaicjson_asset,
        )  # fmt: skip
        logger.info("saved the search as %s", st.save_mosaicjson)
    return source, key, pinned


def mosaicjson_zooms(opts: AssembleOptions) -> tuple[int, int]:
    """The (minzoom, maxzoom) of the mosaicJSON `save_mosaicjson` writes for this run.

    maxzoom is the run's zoom; on a custom grid (`crs` with `resolution`, no zoom) it is the
    WebMercatorQuad level whose 256-px tiles have about the grid's pixel size at the equator
    (a degree taken as 111,319.49 m). minzoom is three levels above.
    """
    if opts.zoom is not None or opts.crs is None or opts.resolution is None:
        z = opts.zoom or 0
    else:
        from mosaic_assembler._tms import parse_crs

        metres = float(opts.resolution)
        if opts.crs != "auto-utm":
            crs = parse_crs(opts.crs)
            metres *= 111_319.49 if crs.is_geographic else crs.linear_units_factor[1]
        z = round(math.log2(2 * math.pi * 6_378_137.0 / (256 * metres)))
        z = min(max(z, 0), 24)
    return max(0, z - 3), z


@dataclass(frozen=True)
class Prepared:
    """How tiles are rendered: the tiler and the bands it gives (None: known after reading)."""

    tiler: Any
    read: ReadOptions
    bands: BandInfo | None
    http: HttpOptions | None


def prepare(r: Resolved, jobs: Sequence[tuple[Tile, tuple[Any, ...]]]) -> Prepared:
    """Register a titiler-pgstac search, build the tiler, decide the output bands and dtype."""
    opts = r.opts
    http = _register_pgstac(r) if isinstance(opts.source, PgstacTiler) else opts.http
    probe = list(dict.fromkeys(a for _, assets in jobs[:50] for a in assets))[:5]
    tiler: Any
    read = r.read
    if http is not None:
        tiler = HttpTiler(http, read, r.grid.id)
    else:
        from mosaic_assembler.tilers.local import LocalTiler

        if read.expression:
            first = dataclasses.replace(read, expression=None, pixel_selection="first")
            dtype = expression_dtype(read, LocalTiler(first).band_info(probe).dtype)
            read = dataclasses.replace(read, output_dtype=dtype)
        tiler = LocalTiler(read, r.grid)
    bands: BandInfo | None = tiler.band_info(probe)
    if bands is not None and opts.visual is not None:
        opts.visual.check_bands(bands.count)
        bands = BandInfo(bands.count, "uint8", bands.names)
    if bands is not None:
        opts.cog.check_bands(bands)
    return Prepared(tiler, read, bands, http)


def _register_pgstac(r: Resolved) -> HttpOptions:
    """Register the (pinned) search with titiler-pgstac; HTTP options for its tiles."""
    from mosaic_assembler.tilers.pgstac import (
        pgstac_http_options,
        pgstac_search_body,
        register_search,
    )

    source = r.opts.source
    assert isinstance(source, PgstacTiler)
    st, http = source.search, dict(source.http)
    if r.opts.concurrency:
        http["concurrency"] = r.opts.concurrency
    aoi = r.aoi
    where: dict[str, Any] = (
        {"bbox": list(aoi.bbox)}
        if aoi.is_bbox and aoi.bbox[0] < aoi.bbox[2]
        else {"geometry": json.loads(aoi.geojson)}
    )
    ids = [i.id for i in r.source.items]
    body = pgstac_search_body(
        list(st.collections), datetime=st.datetime, sort_by=st.sort_by, ids=ids, **where
    )
    headers = tuple(http.pop("headers", ()) or ())
    sid = register_search(source.url, body, headers=_headers(headers))
    params = tuple(http.pop("params", ()) or ())
    return pgstac_http_options(
        source.url, sid, r.read, r.assets, headers=headers, params=params, **http
    )
