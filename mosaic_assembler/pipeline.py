"""mosaic_assembler.pipeline: plan → chunks (resumable) → finalize, for one run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy
import rasterio

from mosaic_assembler.chunks import ChunkJob, ChunkResult, RunSpec
from mosaic_assembler.errors import (
    ConfigError,
    EmptyPlanError,
    OutputError,
    TilesFailedError,
)
from mosaic_assembler.executors import run_chunks
from mosaic_assembler.grid import AOI, Clipper, Plan, plan_chunks, plan_tiles
from mosaic_assembler.options import AssembleOptions, AssembleResult, Progress
from mosaic_assembler.sources import open_source
from mosaic_assembler.state import RunState, asset_token, config_hash
from mosaic_assembler.tilers.http import HttpTiler
from mosaic_assembler.types import BandInfo
from mosaic_assembler.writer import (
    DEFAULT_CACHE_BYTES,
    OutputTarget,
    config_value,
    ensure_chunk_overviews,
    finalize_cog,
    write_vrt,
)

logger = logging.getLogger(__name__)

#: rio-tiler's (and so TiTiler's) methods.
TITILER_METHODS = (
    "first",
    "highest",
    "lowest",
    "mean",
    "median",
    "stdev",
    "count",
    "lastbandhigh",
    "lastbandlow",
)


def load_aoi(aoi: Mapping[str, Any] | str | Path) -> AOI:
    """An AOI from a GeoJSON mapping, a GeoJSON string or a file path."""
    if isinstance(aoi, Mapping):
        return AOI.from_geojson(dict(aoi))
    text = str(aoi)
    if text.lstrip().startswith("{"):
        return AOI.from_geojson(text)
    try:
        return AOI.from_geojson(Path(text).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read AOI file {text!r}: {e.strerror or e}") from e


_NUMEXPR_NAMES = {
    "where",
    "sqrt",
    "log",
    "log10",
    "log1p",
    "exp",
    "expm1",
    "abs",
    "sin",
    "cos",
    "tan",
    "arcsin",
    "arccos",
    "arctan",
    "arctan2",
    "sinh",
    "cosh",
    "tanh",
    "arcsinh",
    "arccosh",
    "arctanh",
    "real",
    "imag",
    "complex",
    "conj",
    "ceil",
    "floor",
    "fmod",
    "isnan",
    "isfinite",
    "isinf",
    "contains",
    "True",
    "False",
}
_IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")


def expression_assets(expression: str) -> tuple[str, ...]:
    """STAC asset keys an expression names, in order of appearance (b1… are band names)."""
    names = [
        n
        for n in _IDENT.findall(expression)
        if n not in _NUMEXPR_NAMES and not re.fullmatch(r"b\d+", n)
    ]
    return tuple(dict.fromkeys(names))


def translate_expression(expression: str, assets: tuple[str, ...]) -> str:
    """Asset names → rio-tiler band names (b1 = first asset …; single-band assets)."""
    index = {a: f"b{i}" for i, a in enumerate(assets, start=1)}
    return _IDENT.sub(lambda m: index.get(m.group(0), m.group(0)), expression)


def expression_dtype(read: Any, source_dtype: str) -> str:
    """Output dtype of an expression run.

    rio-tiler computes expressions in float64. Bands that only pass a source band through
    (e.g. "b3;b2;b1" or the RGB of "b3;b2;b1;(b4-b3)/(b4+b3)" with lastbandhigh, which drops
    the last band) keep the source dtype, losslessly; anything computed is stored as float32.
    """
    blocks = [b.strip() for b in read.expression.split(";") if b.strip()]
    if read.pixel_selection.startswith("lastband"):
        blocks = blocks[:-1]
    if read.pixel_selection in ("count",):
        return "uint8"
    if (
        blocks
        and all(re.fullmatch(r"b\d+", b) for b in blocks)
        and read.pixel_selection not in ("mean", "stdev", "geomedian")
        and not re.fullmatch(r"p\d+", read.pixel_selection)
    ):
        return source_dtype
    return "float32"


PINNED_ITEMS = "search.items.json"  # in the run directory: the items the first run found
PINNED_SEARCH = "search.json"  # … and the hash of the search that found them


def _search_key(
    opts: AssembleOptions, aoi: AOI, assets: tuple[str, ...], extra: tuple[str, ...]
) -> str:
    st = opts.stac
    assert st is not None
    what = dataclasses.asdict(st)
    what.pop("save_mosaicjson")
    what.pop("mosaicjson_asset")
    return config_hash({"search": what, "aoi": aoi.geojson, "assets": assets, "extra": extra})


def _pinned(run_dir: Path, key: str, assets: tuple[str, ...], extra: tuple[str, ...]) -> Any:
    """The items a previous run of the same search pinned in `run_dir`, or None."""
    from mosaic_assembler.sources.stac_items import open_stac_items

    try:
        pinned = json.loads((run_dir / PINNED_SEARCH).read_text())
    except (OSError, ValueError):
        return None
    if pinned.get("key") != key or not (run_dir / PINNED_ITEMS).exists():
        return None
    source = open_stac_items(run_dir / PINNED_ITEMS, assets, extra_assets=extra)
    logger.info(
        "resuming with the %d item(s) the first run's search pinned in %s (not "
        "searching again; --restart searches anew)",
        len(source.items),
        run_dir,
    )
    return source


def _pin(run_dir: Path, key: str, source: Any) -> None:
    """Keep a search's items in the run directory, for a resumed run (atomic writes)."""
    from mosaic_assembler.sources.stac_api import save_items

    save_items(source, run_dir / PINNED_ITEMS)
    tmp = run_dir / f".{PINNED_SEARCH}.tmp"
    tmp.write_text(json.dumps({"key": key}))
    tmp.replace(run_dir / PINNED_SEARCH)


def _search(
    opts: AssembleOptions, aoi: AOI, assets: tuple[str, ...], run_dir: Path | None = None
) -> tuple[Any, str, bool]:
    """Run the STAC API search (or reuse the items a previous run pinned in `run_dir`);
    optionally save the equivalent mosaicJSON.

    Returns:
        (source, search key, whether the items came from the run directory)
    """
    from mosaic_assembler.sources.stac_api import open_stac_search, save_mosaicjson
    from mosaic_assembler.tilers.http import expand_env

    st = opts.stac
    assert st is not None
    qa = opts.read.qa_mask
    extra = (qa.band,) if qa is not None and qa.bidx is None else ()
    key = _search_key(opts, aoi, assets, extra)
    source = _pinned(run_dir, key, assets, extra) if run_dir and not opts.restart else None
    from_pin = source is not None
    if source is None:
        headers = {k: expand_env(v) for k, v in opts.http.headers} if opts.http else None
        if opts.pgstac_http and opts.pgstac_http.get("headers"):
            headers = {k: expand_env(v) for k, v in opts.pgstac_http["headers"]}
        search: dict[str, Any] = (
            {"bbox": list(aoi.bbox)} if aoi.is_bbox else {"geometry": json.loads(aoi.geojson)}
        )
        if aoi.is_bbox and aoi.bbox[0] > aoi.bbox[2]:  # across 180°: search the two parts
            search = {"geometry": json.loads(aoi.geojson)}
        source = open_stac_search(st, assets, extra_assets=extra, headers=headers, **search)
    if st.save_mosaicjson:
        save_mosaicjson(
            source,
            st.save_mosaicjson,
            minzoom=max(0, opts.zoom - 3),
            maxzoom=opts.zoom,
            asset=st.mosaicjson_asset,
        )
        logger.info("saved the search as %s", st.save_mosaicjson)
    return source, key, from_pin


def _register_pgstac(opts: AssembleOptions, aoi: AOI, source: Any, assets: tuple[str, ...]) -> Any:
    """Register the (pinned) search with titiler-pgstac; HTTP options for its tiles."""
    from mosaic_assembler.tilers.pgstac import (
        pgstac_http_options,
        pgstac_search_body,
        register_search,
    )

    st = opts.stac
    assert st is not None and opts.pgstac is not None
    http = dict(opts.pgstac_http or {})
    if opts.concurrency:
        http["concurrency"] = opts.concurrency
    search = (
        {"bbox": list(aoi.bbox)}
        if aoi.is_bbox and aoi.bbox[0] < aoi.bbox[2]
        else {"geometry": json.loads(aoi.geojson)}
    )
    body = pgstac_search_body(
        list(st.collections),
        datetime=st.datetime,
        sort_by=st.sort_by,
        ids=[i.id for i in source.items],
        **search,
    )
    from mosaic_assembler.tilers.http import expand_env

    headers = tuple(http.pop("headers", ()) or ())
    sid = register_search(opts.pgstac, body, headers={k: expand_env(v) for k, v in headers} or None)
    return pgstac_http_options(
        opts.pgstac,
        sid,
        opts.read,
        assets,
        headers=headers,
        params=tuple(http.pop("params", ()) or ()),
        **http,
    )


def _check_methods(opts: AssembleOptions) -> AssembleOptions:
    """Refuse combinations that cannot work, before anything is read."""
    method = opts.read.pixel_selection
    if opts.http is not None or opts.pgstac is not None:
        if method not in TITILER_METHODS:
            raise ConfigError(
                f"--pixel-selection {method} is computed in-process only; a "
                f"dynamic tiler knows {', '.join(TITILER_METHODS)}"
            )
        if opts.read.qa_mask is not None:
            raise ConfigError("--mask-band works with the in-process tiler, not with --tiler")
    if method == "latest-clear" and opts.items is None and opts.stac is None:
        raise ConfigError(
            "latest-clear needs STAC items (--items): it orders observations by item datetime"
        )
    return opts


def default_concurrency(assets: Any = None) -> int:
    """Tiles read at once in-process.

    One per CPU when the assets are local files: the reads are CPU-bound (warp, decompress,
    select; GDAL and numpy release the GIL) and more threads only contend for GDAL's block
    cache (2 per CPU measured 12 % slower on the demo scenes). Four per CPU for remote
    assets, whose reads mostly wait on the network.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    href = _first_href(assets)
    if href is not None and ("://" in href or href.startswith("/vsi")):
        return max(4, min(64, cpus * 4))
    return max(2, min(32, cpus))


def _first_href(assets: Any) -> str | None:
    for asset in assets or ():
        if isinstance(asset, str):
            return asset
        item = getattr(asset, "item", None)
        if item is not None:
            return next((a.get("href") for a in item.get("assets", {}).values()), None)
    return None


def run(
    output: Path,
    opts: AssembleOptions,
    progress: Callable[[Progress], None] | None = None,
    dry_run: bool = False,
) -> AssembleResult:
    """Run a validated configuration (see `mosaic_assembler.assemble`)."""
    with rasterio.Env(**_gdal_config(opts)):
        return _run(output, opts, progress, dry_run)


def _gdal_config(opts: AssembleOptions) -> dict[str, Any]:
    # GDAL's block cache defaults to 5 % of RAM and would grow with the amount read: bound it.
    config: dict[str, Any] = {"GDAL_CACHEMAX": DEFAULT_CACHE_BYTES}
    config.update({k.upper(): config_value(v) for k, v in opts.cog.config.items()})
    return config


def _hash_parts(
    opts: AssembleOptions, aoi: AOI, jobs: list, bands: BandInfo | None, chunk_tiles: int
) -> dict[str, Any]:
    digest = hashlib.sha256()
    for tile, assets in jobs:
        digest.update(f"{tile}:{'|'.join(asset_token(a) for a in assets)}\n".encode())
    return {
        "aoi": aoi.geojson,
        "zoom": opts.zoom,
        "read": dataclasses.asdict(opts.read),
        "clip": opts.clip,
        "jobs": digest.hexdigest(),
        "chunk_tiles": chunk_tiles,
        "bands": dataclasses.asdict(bands) if bands else None,
        "tiler": (opts.http.template.split("/searches/")[0], opts.http.params)
        if opts.http
        else None,
        "visual": dataclasses.asdict(opts.visual) if opts.visual else None,
    }


def _run(
    output: Path,
    opts: AssembleOptions,
    progress: Callable[[Progress], None] | None,
    dry_run: bool,
) -> AssembleResult:
    t0 = time.perf_counter()
    split = opts.split_zoom is not None
    target = OutputTarget(output, overwrite=opts.overwrite, directory=split)
    if not dry_run:
        target.check()
    opts = _check_methods(opts)
    run_dir = Path(opts.run_dir) if opts.run_dir else Path(f"{output}.run")
    source = None
    aoi = None
    search_key, from_pin = "", False
    if opts.bbox is not None:
        aoi = AOI.from_bbox(*opts.bbox)
    elif opts.aoi is not None:
        aoi = load_aoi(opts.aoi)
    assets = opts.assets
    if (opts.items is not None or opts.stac is not None) and not assets and opts.read.expression:
        assets = expression_assets(opts.read.expression)
    if opts.stac is not None:
        assert aoi is not None  # AssembleOptions requires one with --stac
        source, search_key, from_pin = _search(opts, aoi, assets, run_dir)
    elif opts.mosaicjson is not None or opts.items is not None:
        qa = opts.read.qa_mask
        extra = (qa.band,) if qa is not None and qa.bidx is None and opts.items else ()
        source = open_source(
            mosaicjson=opts.mosaicjson, items=opts.items, assets=assets, extra_assets=extra
        )
    if (opts.items is not None or opts.stac is not None) and opts.read.expression:
        opts = dataclasses.replace(
            opts,
            read=dataclasses.replace(
                opts.read, expression=translate_expression(opts.read.expression, assets)
            ),
        )
    if aoi is None:
        assert source is not None  # AssembleOptions requires an AOI without a source
        aoi = AOI.from_bbox(*source.bounds)
    plan = plan_tiles(aoi, opts.zoom, opts.read.tilesize, opts.max_pixels)
    if source is not None:
        jobs = [(t, tuple(source.assets_for_tile(*t))) for t in plan.tiles]
        jobs = [(t, a) for t, a in jobs if a]
    else:
        jobs = [(t, ()) for t in plan.tiles]
    if opts.pgstac is not None:
        assert opts.stac is not None and source is not None
        opts = dataclasses.replace(opts, http=_register_pgstac(opts, aoi, source, assets))
    if opts.http is None:
        from mosaic_assembler.tilers.local import LocalTiler
    tiler: Any = HttpTiler(opts.http, opts.read) if opts.http else LocalTiler(opts.read)
    chunk_tiles = opts.chunk_tiles or max(1, 4096 // plan.tilesize)
    assets_of = dict(jobs)
    chunks = plan_chunks(plan, chunk_tiles, (t for t, _ in jobs))
    seconds: dict[str, float] = {"plan": time.perf_counter() - t0}
    base = dict(plan=plan, seconds=seconds, chunks=len(chunks))
    if not jobs:
        assert source is not None
        if not opts.allow_empty:
            raise EmptyPlanError(
                f"the AOI (bounds {', '.join(f'{v:.5g}' for v in aoi.bbox)}) intersects no "
                f"asset of the source (source bounds "
                f"{', '.join(f'{v:.5g}' for v in source.bounds)}); nothing to do "
                "(use --allow-empty to exit successfully anyway)"
            )
        logger.warning("the AOI intersects no asset; nothing written")
        return _result(None, empty=len(plan.tiles), dry_run=dry_run, **base)
    probe = list(dict.fromkeys(a for _, assets in jobs[:50] for a in assets))[:5]
    if opts.read.expression and not opts.http:
        out_dtype = expression_dtype(
            opts.read,
            LocalTiler(dataclasses.replace(opts.read, expression=None, pixel_selection="first"))
            .band_info(probe)
            .dtype,
        )
        opts = dataclasses.replace(
            opts, read=dataclasses.replace(opts.read, output_dtype=out_dtype)
        )
        tiler = LocalTiler(opts.read)
    bands: BandInfo | None = tiler.band_info(probe)
    if bands is not None and opts.visual is not None:
        opts.visual.check_bands(bands.count)
        bands = BandInfo(bands.count, "uint8", bands.names)
    if bands is not None:
        opts.cog.check_bands(bands)
    if dry_run:
        return _result(None, empty=len(plan.tiles) - len(jobs), bands=bands, dry_run=True, **base)

    state = RunState.open(
        run_dir,
        config_hash(_hash_parts(opts, aoi, jobs, bands, chunk_tiles)),
        {"output": str(output), "tiles": len(plan.tiles), "chunks": len(chunks)},
        restart=opts.restart,
    )
    if opts.stac is not None and not from_pin:
        _pin(run_dir, search_key, source)
    finished = state.finished(chunks, accept_partial=opts.allow_partial)
    if finished:
        logger.info(
            "resuming %s: %d of %d chunks already finished", run_dir, len(finished), len(chunks)
        )
    results: dict[str, dict[str, Any]] = dict(finished)
    counts = {
        "done": sum(e["done"] for e in finished.values()),
        "empty": len(plan.tiles) - len(jobs) + sum(e["empty"] for e in finished.values()),
        "failed": sum(len(e["failed"]) for e in finished.values()),
    }
    lock = threading.Lock()
    per_tile = not opts.executor.uses_dask

    def report() -> None:
        if progress:
            progress(Progress(counts["done"], counts["empty"], counts["failed"], len(plan.tiles)))

    def on_tile(outcome: str) -> None:
        with lock:
            counts[outcome] += 1
            report()

    def on_result(r: ChunkResult) -> None:
        state.record_result(r)
        with lock:
            results[r.key] = {
                "status": r.status,
                "done": r.done,
                "empty": r.empty,
                "failed": [[z, x, y, m] for (x, y, z), m in r.failed],
                "count": r.count,
                "dtype": r.dtype,
            }
            if not per_tile:
                counts["done"] += r.done
                counts["empty"] += r.empty
                counts["failed"] += len(r.failed)
                report()

    report()
    spec = RunSpec(
        plan,
        tiler,
        Clipper.from_aoi(aoi) if opts.clip else None,
        bands,
        opts.concurrency
        or getattr(tiler, "default_concurrency", None)
        or default_concurrency(next(iter(assets_of.values()), ())),
        str(state.chunk_dir),
        opts.visual,
        tuple(_gdal_config(opts).items()),
        opts.cog.chunk_overviews(plan.tilesize, chunk_tiles * plan.tilesize),
    )
    pending = [
        ChunkJob(c, tuple(assets_of[t] for t in c.tiles)) for c in chunks if c.key not in finished
    ]
    t1 = time.perf_counter()
    try:
        run_chunks(
            spec,
            pending,
            opts.executor,
            on_submit=lambda key: state.record({"event": "submit", "chunk": key}),
            on_result=on_result,
            on_tile=on_tile if per_tile else None,
            key_prefix=f"chunk-{state.hash[:12]}-{os.getpid()}-{int(time.time())}",
        )
    except ConfigError:
        if not any(e.get("status") in ("done", "partial") for e in results.values()):
            state.remove()  # nothing worth resuming: the configuration is wrong
        raise
    finally:
        close = getattr(tiler, "close", None)
        if close is not None:
            close()
    seconds["read"] = time.perf_counter() - t1
    failed = sorted(((x, y, z), m) for e in results.values() for z, x, y, m in e["failed"])
    if failed and not opts.allow_partial:
        raise TilesFailedError(failed, len(plan.tiles))
    parts = [
        (c, state.chunk_dir / f"{c.key}.tif")
        for c in chunks
        if results.get(c.key, {}).get("status") in ("done", "partial")
    ]
    stats = dict(
        done=sum(e["done"] for e in results.values()),
        empty=len(plan.tiles) - len(jobs) + sum(e["empty"] for e in results.values()),
        failed=failed,
        resumed=len(finished),
    )
    if not parts:
        state.remove()
        if not opts.allow_empty:
            raise EmptyPlanError(
                f"all {len(plan.tiles)} tiles were empty (no data from the "
                f"{'tiler' if opts.http else 'assets'}); nothing written "
                "(use --allow-empty to exit successfully anyway)"
            )
        logger.warning("all tiles were empty; nothing written")
        return _result(None, bands=bands, **stats, **base)
    kinds = {(results[c.key]["count"], results[c.key]["dtype"]) for c, _ in parts}
    if len(kinds) != 1:
        raise OutputError(
            f"chunks have different band counts/dtypes {sorted(kinds)}: the "
            "tiler or the assets are inconsistent"
        )
    count, dtype = kinds.pop()
    out_bands = BandInfo(count, dtype, bands.names if bands else ())
    opts.cog.check_bands(out_bands)
    t2 = time.perf_counter()
    outputs: tuple[Path, ...] = ()
    if spec.overviews is not None:  # chunks resumed from a run without them, or other ones
        ensure_chunk_overviews([p for _, p in parts], spec.overviews)
    with target:
        assert target.workdir is not None
        if split:
            from mosaic_assembler.splits import write_split

            assert opts.split_zoom is not None
            staged = target.workdir / "out"
            outputs = write_split(
                plan,
                parts,
                out_bands,
                opts.split_zoom,
                staged,
                opts.cog,
                final_dir=output,
                overviews=spec.overviews,
            )
            size = sum(p.stat().st_size for p in staged.iterdir())
            target.commit(staged)
        else:
            vrt = write_vrt(
                target.workdir / "chunks.vrt",
                plan,
                parts,
                out_bands,
                overviews=spec.overviews,
                cog=opts.cog,
            )
            cog = target.workdir / "out.tif"
            finalize_cog(
                vrt,
                cog,
                opts.cog,
                existing_overviews=spec.overviews is not None,
                chunk_columns=-(-plan.width // (chunk_tiles * plan.tilesize)),
            )
            size = cog.stat().st_size
            target.commit(cog)
    seconds["finalize"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    if not opts.keep_run_dir:
        state.remove()
    return _result(
        output,
        bands=out_bands,
        size=size,
        outputs=outputs,
        run_dir=run_dir if opts.keep_run_dir else None,
        **stats,
        **base,
    )


def _result(
    path: Path | None,
    *,
    plan: Plan,
    seconds: dict[str, float],
    chunks: int,
    done: int = 0,
    empty: int = 0,
    failed: list[tuple[tuple[int, int, int], str]] | None = None,
    bands: BandInfo | None = None,
    size: int = 0,
    dry_run: bool = False,
    resumed: int = 0,
    run_dir: Path | None = None,
    outputs: tuple[Path, ...] = (),
) -> AssembleResult:
    failed = failed or []
    count = bands.count if bands else 0
    dtype = bands.dtype if bands else ""
    nbytes = numpy.dtype(dtype).itemsize if dtype else 0
    return AssembleResult(
        path=path,
        tiles_total=len(plan.tiles),
        tiles_done=done,
        tiles_empty=empty,
        tiles_failed=len(failed),
        failed_tiles=tuple(sorted(t for t, _ in failed)),
        width=plan.width,
        height=plan.height,
        count=count,
        dtype=dtype,
        zoom=plan.zoom,
        tilesize=plan.tilesize,
        bounds=plan.bounds,
        estimated_bytes=plan.width * plan.height * count * nbytes,
        size_bytes=size,
        seconds=seconds,
        dry_run=dry_run,
        chunks=chunks,
        chunks_resumed=resumed,
        run_dir=run_dir,
        outputs=outputs,
    )
