"""mosaic_assembler.pipeline: one run as named phases.

    resolve   options → the run's AOI, opened source (searched or pinned), assets, expression
    plan      tiles of the AOI, the assets of each, chunks
    prepare   the tiler (titiler-pgstac registration, in-process or HTTP), output bands, dtype
    execute   chunks (threads or Dask), recorded in the run directory; resumes finished ones
    finalize  chunk files → COG (or split COGs), atomically; the run directory removed

resolve and prepare live in `mosaic_assembler.resolve`, the only module that interprets the
options; this one has the phases that follow.

Each phase returns a small value the next one takes; nothing else is shared between them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
import rasterio

from mosaic_assembler.chunks import ChunkJob, ChunkResult, RunSpec
from mosaic_assembler.companions import (
    check_companions,
    place_companions,
    provenance_overviews,
    stale_companions,
    write_companions,
)
from mosaic_assembler.errors import ConfigError, EmptyPlanError, OutputError, TilesFailedError
from mosaic_assembler.executors import run_chunks
from mosaic_assembler.grid import Chunk, Clipper, Plan, check_split, plan_chunks, plan_tiles
from mosaic_assembler.options import (
    AssembleOptions,
    AssembleResult,
    Progress,
)
from mosaic_assembler.resolve import Prepared, Resolved, prepare, resolve
from mosaic_assembler.sources.pinning import pin_items
from mosaic_assembler.state import RunState, asset_token, config_hash
from mosaic_assembler.storage import (
    CHUNK_READS,
    gdal_env,
    is_s3,
)
from mosaic_assembler.types import BandInfo, Tile
from mosaic_assembler.writer import (
    DEFAULT_CACHE_BYTES,
    ChunkOverviews,
    config_value,
    ensure_chunk_overviews,
    finalize_cog,
    write_vrt,
)

logger = logging.getLogger(__name__)

__all__ = ["default_concurrency", "run"]

ProgressCallback = Callable[[Progress], None]


def run(
    output: Path | str,
    opts: AssembleOptions,
    progress: ProgressCallback | None = None,
    dry_run: bool = False,
) -> AssembleResult:
    """Run a validated configuration (see `mosaic_assembler.assemble`)."""
    # GDAL reads its /vsicurl chunk and cache sizes once per process: for chunks on S3 (read
    # back by the finalize) they are set for the whole run
    chunk_reads = CHUNK_READS if is_s3(opts.run_dir or output) else {}
    with rasterio.Env(**{**gdal_env(), **chunk_reads, **gdal_config(opts)}):
        t0 = time.perf_counter()
        target = output_target(output, opts.overwrite, directory=opts.split_zoom is not None)
        if not dry_run:
            target.check()
            if opts.split_zoom is None:
                check_companions(output, opts.read.provenance, opts.overwrite)
        resolved = resolve(output, opts)
        planned = plan(resolved, t0)
        if not planned.jobs:
            return _nothing_to_do(resolved, planned, dry_run)
        prepared = prepare(resolved, planned.jobs)
        if dry_run:
            empty = len(planned.plan.tiles) - len(planned.jobs)
            return _result(planned, _Counts(empty=empty), prepared.bands, dry_run=True)
        executed = execute(resolved, planned, prepared, progress)
        return finalize(resolved, planned, prepared, executed, target)


def output_target(output: str | Path, overwrite: bool, directory: bool) -> Any:
    """The atomic output target of a local path or an s3:// URL."""
    if is_s3(output):
        from mosaic_assembler.storage._target import S3OutputTarget

        return S3OutputTarget(str(output), overwrite=overwrite, directory=directory)
    from mosaic_assembler.writer import OutputTarget

    return OutputTarget(output, overwrite=overwrite, directory=directory)


def open_run_state(
    run_dir: str | Path, hash: str, summary: dict[str, Any], restart: bool = False
) -> Any:
    """Open (or create) a local or S3 run directory (`state.RunState` / `S3RunState`)."""
    if is_s3(run_dir):
        from mosaic_assembler.storage._rundir import S3RunState

        return S3RunState.open(str(run_dir), hash, summary, restart=restart)
    from mosaic_assembler.state import RunState

    return RunState.open(Path(run_dir), hash, summary, restart=restart)


def gdal_config(opts: AssembleOptions) -> dict[str, Any]:
    """The GDAL configuration of a run: a bounded block cache, then the user's `--config`."""
    # GDAL's block cache defaults to 5 % of RAM and would grow with the amount read: bound it.
    config: dict[str, Any] = {"GDAL_CACHEMAX": DEFAULT_CACHE_BYTES}
    config.update({k.upper(): config_value(v) for k, v in opts.cog.config.items()})
    return config


# ------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class Planned:
    """The tiles of the run and how they are grouped.

    Attributes:
        jobs: (tile, its assets) of the tiles that have assets (all tiles without a source).
        overviews: internal overviews each chunk file gets (None: GDAL computes them all).
        seconds: phase timings, filled in as the run goes.
    """

    plan: Plan
    jobs: list[tuple[Tile, tuple[Any, ...]]]
    chunks: list[Chunk]
    chunk_tiles: int
    overviews: ChunkOverviews | None
    seconds: dict[str, float] = field(default_factory=dict)
    t0: float = 0.0


def plan(r: Resolved, t0: float) -> Planned:
    """Tiles of the AOI (with the assets of each) grouped into chunks."""
    opts = r.opts
    tiles = plan_tiles(r.aoi, r.zoom, r.read.tilesize, opts.max_pixels, r.grid)
    if opts.split_zoom is not None:
        check_split(r.grid, opts.split_zoom, r.zoom)
    if r.source is not None:
        # the source's lookup in the run's TMS (a mosaicJSON may have its own)
        own = r.grid.is_default and not getattr(r.source, "tms_json", "")
        on = {} if own else {"tms": r.grid.tms}
        jobs = [(t, tuple(r.source.assets_for_tile(*t, **on))) for t in tiles.tiles]
        jobs = [(t, a) for t, a in jobs if a]
    else:
        jobs = [(t, ()) for t in tiles.tiles]
    chunk_tiles = opts.chunk_tiles or max(1, 4096 // tiles.tilesize)
    chunks = plan_chunks(tiles, chunk_tiles, (t for t, _ in jobs))
    overviews = opts.cog.chunk_overviews(tiles.tilesize, chunk_tiles * tiles.tilesize)
    if tiles.window is not None:
        # a cropped output: the chunks' overviews do not align with its window, GDAL makes them
        overviews = None
    seconds = {"plan": time.perf_counter() - t0}
    return Planned(tiles, jobs, chunks, chunk_tiles, overviews, seconds, t0)


def _nothing_to_do(r: Resolved, p: Planned, dry_run: bool) -> AssembleResult:
    """The AOI intersects no asset: an error unless allow_empty."""
    if not r.opts.allow_empty:
        raise EmptyPlanError(
            f"the AOI (bounds {', '.join(f'{v:.5g}' for v in r.aoi.bbox)}) intersects no "
            f"asset of the source (source bounds "
            f"{', '.join(f'{v:.5g}' for v in r.source.bounds)}); nothing to do "
            "(use `allow_empty` to exit successfully anyway)"
        )
    logger.warning("the AOI intersects no asset; nothing written")
    return _result(p, _Counts(empty=len(p.plan.tiles)), dry_run=dry_run)


# --------------------------------------------------------------------------------- execute
@dataclass
class _Counts:
    """Tiles so far, by outcome (failed: ((x, y, z), message) pairs)."""

    done: int = 0
    empty: int = 0
    failed: list[tuple[Tile, str]] = field(default_factory=list)

    def add(self, r: ChunkResult) -> None:
        self.done += r.done
        self.empty += r.empty
        self.failed.extend(r.failed)


class _Tracker:
    """Counts tiles (per tile in threads, per chunk on Dask) and reports progress."""

    def __init__(self, callback: ProgressCallback | None, total: int, counts: _Counts):
        self.callback, self.total, self.counts = callback, total, counts
        self.lock = threading.Lock()
        self.failed = len(counts.failed)

    def report(self) -> None:
        c = self.counts
        if self.callback:
            self.callback(Progress(c.done, c.empty, self.failed, self.total))

    def tile(self, outcome: str) -> None:
        with self.lock:
            if outcome == "failed":
                self.failed += 1
            else:
                setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)
            self.report()

    def chunk(self, r: ChunkResult) -> None:
        with self.lock:
            self.counts.add(r)
            self.failed = len(self.counts.failed)
            self.report()


@dataclass(frozen=True)
class Executed:
    """The chunks' results (resumed ones included) and the open run directory."""

    results: dict[str, ChunkResult]
    resumed: int
    state: RunState  # or storage's S3RunState (same interface)
    seconds: float


def execute(r: Resolved, p: Planned, prep: Prepared, progress: ProgressCallback | None) -> Executed:
    """Compute the chunks not finished yet, recording each in the run directory."""
    opts = r.opts
    state = open_run_state(
        r.run_dir,
        config_hash(_hash_parts(r, p, prep)),
        {"output": str(r.output), "tiles": len(p.plan.tiles), "chunks": len(p.chunks)},
        restart=opts.restart,
    )
    if opts.stac is not None and not r.pinned:  # local or s3:// (is_s3: a str)
        pin_items(r.run_dir if is_s3(r.run_dir) else Path(r.run_dir), r.search_key, r.source)
    finished = state.finished(p.chunks, accept_partial=opts.allow_partial)
    finished = _with_provenance(finished, state, prep.read.provenance)
    earlier = _failed_before(state)
    if finished:
        logger.info(
            "resuming %s: %d of %d chunks already finished", r.run_dir, len(finished), len(p.chunks)
        )
    results = dict(finished)
    counts = _Counts(empty=len(p.plan.tiles) - len(p.jobs))
    for done in finished.values():
        counts.add(done)
    tracker = _Tracker(progress, len(p.plan.tiles), counts)
    per_tile = not opts.executor.uses_dask

    def on_result(result: ChunkResult) -> None:
        if earlier.get(result.key):  # tiles that failed in an earlier attempt were retried
            retried = sorted({*result.retried, *earlier[result.key]})
            result = dataclasses.replace(result, retried=tuple(retried))
        state.record_result(result)
        results[result.key] = result
        if not per_tile:
            tracker.chunk(result)

    tracker.report()
    t1 = time.perf_counter()
    assets_of = dict(p.jobs)
    pending = [
        ChunkJob(c, tuple(assets_of[t] for t in c.tiles)) for c in p.chunks if c.key not in finished
    ]
    try:
        run_chunks(
            _run_spec(r, p, prep, state), pending, opts.executor,
            on_submit=lambda key: state.record({"event": "submit", "chunk": key}),
            on_result=on_result, on_tile=tracker.tile if per_tile else None,
            key_prefix=f"chunk-{state.hash[:12]}-{os.getpid()}-{int(time.time())}",
        )  # fmt: skip
    except ConfigError:
        if not any(x.status.has_file for x in results.values()):
            state.remove()  # nothing worth resuming: the configuration is wrong
        raise
    finally:
        close = getattr(prep.tiler, "close", None)
        if close is not None:
            close()
    return Executed(results, len(finished), state, time.perf_counter() - t1)


def _with_provenance(
    finished: dict[str, ChunkResult], state: RunState, kinds: tuple[str, ...]
) -> dict[str, ChunkResult]:
    """The finished chunks whose provenance files are there too (the others are redone)."""
    if not kinds:
        return finished
    return {
        key: res
        for key, res in finished.items()
        if not res.status.has_file or all(state.has_chunk_file(f"{key}.{k}.tif") for k in kinds)
    }


def _failed_before(state: RunState) -> dict[str, set[Tile]]:
    """Chunk → the tiles that failed in its earlier attempts (from the end records)."""
    out: dict[str, set[Tile]] = {}
    for e in state.end_records():
        if e.get("failed"):
            out.setdefault(e["chunk"], set()).update((x, y, z) for z, x, y, _ in e["failed"])
    return out


def _run_spec(r: Resolved, p: Planned, prep: Prepared, state: RunState) -> RunSpec:
    """What every chunk of the run shares (small, frozen, picklable)."""
    opts = r.opts
    first_assets = p.jobs[0][1] if p.jobs else ()
    concurrency = (
        opts.concurrency
        or getattr(prep.tiler, "default_concurrency", None)
        or default_concurrency(first_assets)
    )
    return RunSpec(
        p.plan, prep.tiler, Clipper.from_aoi(r.aoi, r.grid) if opts.clip else None, prep.bands,
        concurrency, str(state.chunk_dir), opts.visual, tuple(gdal_config(opts).items()),
        p.overviews, prep.read.provenance, provenance_overviews(p.overviews),
    )  # fmt: skip


def _hash_parts(r: Resolved, p: Planned, prep: Prepared) -> dict[str, Any]:
    """Everything that affects the output's pixels (a run directory belongs to one of these)."""
    opts = r.opts
    digest = hashlib.sha256()
    for tile, assets in p.jobs:
        digest.update(f"{tile}:{'|'.join(asset_token(a) for a in assets)}\n".encode())
    http = prep.http
    grid = {} if r.grid.is_default else {"grid": r.grid.tms_json, "window": p.plan.window}
    return {
        **grid,
        "aoi": r.aoi.geojson,
        "zoom": r.zoom,
        "read": dataclasses.asdict(prep.read),
        "clip": opts.clip,
        "jobs": digest.hexdigest(),
        "chunk_tiles": p.chunk_tiles,
        "bands": dataclasses.asdict(prep.bands) if prep.bands else None,
        "tiler": (http.template.split("/searches/")[0], http.params) if http else None,
        "visual": dataclasses.asdict(opts.visual) if opts.visual else None,
    }


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


# -------------------------------------------------------------------------------- finalize
def finalize(r: Resolved, p: Planned, prep: Prepared, ex: Executed, target: Any) -> AssembleResult:
    """Chunk files → the COG (or split COGs), renamed into place; the run directory removed."""
    opts, results = r.opts, ex.results
    p.seconds["read"] = ex.seconds
    counts = _Counts(empty=len(p.plan.tiles) - len(p.jobs))
    for result in results.values():
        counts.add(result)
    counts.failed.sort()
    if counts.failed and not opts.allow_partial:
        raise TilesFailedError(counts.failed, len(p.plan.tiles))
    parts = [
        (c, ex.state.chunk_dir / f"{c.key}.tif")
        for c in p.chunks
        if c.key in results and results[c.key].status.has_file
    ]
    if not parts:
        return _all_empty(r, p, prep, ex, counts)
    bands = _output_bands([results[c.key] for c, _ in parts], prep.bands)
    opts.cog.check_bands(bands)
    t2 = time.perf_counter()
    if p.overviews is not None:  # chunks resumed from a run without them, or other ones
        ensure_chunk_overviews([path for _, path in parts], p.overviews)
    # an overwrite without a kind of provenance: the older run's file of that kind goes
    stale = stale_companions(r.output, r.read.provenance) if opts.overwrite else []
    with target:
        assert target.workdir is not None
        staged, outputs = _write_output(r, p, parts, bands, target.workdir)
        files = staged.iterdir() if staged.is_dir() else [staged]
        size = sum(f.stat().st_size for f in files)
        companions = write_companions(r, p, parts, staged, target.workdir)
        if companions:  # before the output: an output that exists has its companions
            check_companions(r.output, r.read.provenance, opts.overwrite)
            place_companions(r.output, companions, opts.overwrite)
        target.commit(staged)
    for path in stale:
        logger.info("removing %s, written by an earlier run of this output", path.name)
        path.unlink(missing_ok=True)
    p.seconds["finalize"] = time.perf_counter() - t2
    p.seconds["total"] = time.perf_counter() - p.t0
    if not opts.keep_run_dir:
        ex.state.remove()
    run_dir = r.run_dir if opts.keep_run_dir else None
    return _result(p, counts, bands, path=r.output, size=size, outputs=outputs,
                   resumed=ex.resumed, run_dir=run_dir)  # fmt: skip


def _all_empty(
    r: Resolved, p: Planned, prep: Prepared, ex: Executed, counts: _Counts
) -> AssembleResult:
    """No chunk had data: an error unless allow_empty."""
    ex.state.remove()
    if not r.opts.allow_empty:
        raise EmptyPlanError(
            f"all {len(p.plan.tiles)} tiles were empty (no data from the "
            f"{'tiler' if prep.http else 'assets'}); nothing written "
            "(use `allow_empty` to exit successfully anyway)"
        )
    logger.warning("all tiles were empty; nothing written")
    return _result(p, counts, prep.bands, resumed=ex.resumed)


def _output_bands(results: list[ChunkResult], bands: BandInfo | None) -> BandInfo:
    """The output's bands, as the chunk files have them (they must all agree)."""
    kinds = {(x.count, x.dtype) for x in results}
    if len(kinds) != 1:
        raise OutputError(
            f"chunks have different band counts/dtypes {sorted(kinds)}: the "
            "tiler or the assets are inconsistent"
        )
    count, dtype = kinds.pop()
    return BandInfo(count, dtype, bands.names if bands else ())


def _write_output(
    r: Resolved, p: Planned, parts: list[tuple[Chunk, Path]], bands: BandInfo, workdir: Path
) -> tuple[Path, tuple[Path | str, ...]]:
    """Write the COG (or the split directory) in `workdir`; return it and the split COGs."""
    opts = r.opts
    if opts.split_zoom is not None:
        from mosaic_assembler.splits import write_split

        staged = workdir / "out"
        outputs = write_split(
            p.plan, parts, bands, opts.split_zoom, staged, opts.cog, final_dir=r.output,
            overviews=p.overviews,
        )  # fmt: skip
        return staged, outputs
    vrt = write_vrt(
        workdir / "chunks.vrt", p.plan, parts, bands, p.plan.window, overviews=p.overviews,
        cog=opts.cog,
    )  # fmt: skip
    cog = workdir / "out.tif"
    finalize_cog(
        vrt, cog, opts.cog, existing_overviews=p.overviews is not None,
        chunk_columns=-(-p.plan.output_window[3] // (p.chunk_tiles * p.plan.tilesize)),
    )  # fmt: skip
    return cog, ()


def _result(
    p: Planned,
    counts: _Counts,
    bands: BandInfo | None = None,
    *,
    path: Path | str | None = None,
    size: int = 0,
    dry_run: bool = False,
    resumed: int = 0,
    run_dir: Path | str | None = None,
    outputs: tuple[Path | str, ...] = (),
) -> AssembleResult:
    plan = p.plan
    _, _, height, width = plan.output_window
    count, dtype = (bands.count, bands.dtype) if bands else (0, "")
    nbytes = numpy.dtype(dtype).itemsize if dtype else 0
    return AssembleResult(
        path=path, tiles_total=len(plan.tiles), tiles_done=counts.done,
        tiles_empty=counts.empty, tiles_failed=len(counts.failed),
        failed_tiles=tuple(sorted(t for t, _ in counts.failed)), width=width,
        height=height, count=count, dtype=dtype, zoom=plan.zoom, tilesize=plan.tilesize,
        bounds=plan.bounds, estimated_bytes=width * height * count * nbytes,
        size_bytes=size, seconds=p.seconds, dry_run=dry_run, chunks=len(p.chunks),
        chunks_resumed=resumed, run_dir=run_dir, outputs=outputs,
        crs=plan.grid.crs_text if plan.grid.crs.to_epsg() else "custom", tms=plan.grid.id,
    )  # fmt: skip
