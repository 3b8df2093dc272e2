"""`render_tiles`: plan the pyramid, skip what is there, render the rest, finish, preview."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import morecantile

from mosaic_assembler.errors import ConfigError, EmptyPlanError
from mosaic_assembler.render._previewer import previewer_files, write_previewer
from mosaic_assembler.render._s3sinks import S3FolderSink, S3PMTilesSink
from mosaic_assembler.render._sinks import FolderSink, PMTilesSink, TileSink
from mosaic_assembler.render._spec import (
    FORMATS,
    RenderSpec,
    Tile,
    TileRenderer,
    TilesOptions,
    init_worker,
    open_spec,
    plan_pyramid,
    render_batch,
    render_in_worker,
)
from mosaic_assembler.results import Progress

if TYPE_CHECKING:
    from mosaic_assembler.executors import ExecutorOptions

logger = logging.getLogger(__name__)

#: Tiles per Dask task: a task opens the COG once, and ~64 tiles keep the scheduler's
#: overhead (~1 ms a task) small next to the rendering (~5-20 ms a tile).
DASK_BATCH = 64

#: How tiles are rendered without Dask: "processes", "threads", or "auto" (processes when
#: there are PROCESS_MIN_TILES tiles or more to render and more than one worker).
PARALLEL = ("auto", "processes", "threads")

#: Below this many tiles to render, "auto" uses threads: a worker process starts in ~1-2 s
#: (importing rio-tiler), the time of ~100-200 tiles.
PROCESS_MIN_TILES = 256

#: At most this many tiles per process task: batches keep the pickling and scheduling
#: overhead small and let a worker read neighbouring tiles (GDAL's block cache), while
#: small batches keep the progress bar moving and the last batches short.
PROCESS_BATCH = 32


@dataclass(frozen=True)
class TilesResult:
    """What a `render_tiles` run did.

    Attributes:
        path: the pyramid (folder or .pmtiles; a str for an s3:// OUT).
        previewer: its index.html (None for a TMS Leaflet cannot show; an s3:// URL for an
            s3:// OUT).
        tiles_total: tiles of the TMS touching the data over the zooms.
        tiles_written: tiles rendered and written by this run.
        tiles_skipped: tiles already there (a resumed or repeated run).
        tiles_empty: tiles without data (not written).
        zooms: (min, max).
        bounds: the data's bounds in lon/lat.
        seconds: wall time.
    """

    path: Path | str
    previewer: Path | str | None
    tiles_total: int
    tiles_written: int
    tiles_skipped: int
    tiles_empty: int
    zooms: tuple[int, int]
    bounds: tuple[float, float, float, float]
    seconds: float


def render_tiles(
    src: str | Path,
    out: str | Path,
    *,
    zooms: tuple[int, int] | str,
    img_format: str = "png",
    bidx: Sequence[int] | None = None,
    rescale: Sequence[tuple[float, float]] | tuple[float, float] | None = None,
    colormap: str | None = None,
    tms: str = "WebMercatorQuad",
    tilesize: int = 256,
    concurrency: int | None = None,
    parallel: str = "auto",
    dask_scheduler: str | None = None,
    dask_local: int | None = None,
    overwrite: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> TilesResult:
    """Render a tile pyramid of a COG (or a split output's mosaic.json) with rio-tiler.

    Args:
        src: a COG, or the `mosaic.json` of a split output (`split_zoom`); local or s3://
            (read by GDAL through /vsis3/).
        out: a directory (`{z}/{x}/{y}.{ext}`) or a `.pmtiles` file (PMTiles v3); or an
            s3://bucket/prefix (tile objects, listed once to skip those there) or an
            s3://bucket/NAME.pmtiles (built locally, then uploaded in one create-only put).
        zooms: (min, max) or "MIN-MAX".
        img_format: png, webp or jpeg.
        bidx: 1-based band indexes (default: every band).
        rescale: (min, max) for all bands, or one pair per band; maps to 0..255.
        colormap: a rio-tiler colour map name, for a single band.
        tms: a morecantile TileMatrixSet id.
        tilesize: 256 or 512.
        concurrency: tiles rendered at once, by processes or threads (default: CPUs).
        parallel: "processes" (a pool of worker processes, each with its own open reader;
            the images come back to this process, which writes them), "threads" (a thread
            pool in this process; rio-tiler's rendering holds the GIL, so threads use about
            one core), or "auto": processes for a pyramid of 256 tiles or more to render and
            more than one worker, else threads. Ignored with the Dask options.
        dask_scheduler: render on this Dask cluster instead (tcp://host:port).
        dask_local: render on a local Dask cluster of this many processes.
        overwrite: render every tile again, even those already there.
        progress: called with a `Progress` after each tile (done counts skipped ones).

    Returns:
        TilesResult.

    Raises:
        ConfigError: invalid options, or options that do not fit the source.
        SourceError: SRC is missing or unreadable.
        OutputError: OUT cannot hold the pyramid (a file, another pyramid).
        EmptyPlanError: no tile of the zooms holds data.
    """
    t0 = time.monotonic()
    if parallel not in PARALLEL:
        raise ConfigError(f"`parallel` must be one of {', '.join(PARALLEL)}, got {parallel!r}")
    options = TilesOptions(
        zooms=_zooms(zooms),
        img_format=img_format,
        bidx=tuple(bidx) if bidx else None,
        rescale=_rescale(rescale),
        colormap=colormap,
        tms=tms,
        tilesize=int(tilesize),
    )
    executor: ExecutorOptions | None = None
    if dask_scheduler or dask_local:  # the pipeline's modules only for a Dask run
        from mosaic_assembler.executors import ExecutorOptions

        executor = ExecutorOptions(dask_scheduler=dask_scheduler, dask_local=dask_local)
    check_out(out)
    remote = str(out).startswith("s3://")
    if not remote:
        out = Path(out)
    spec = open_spec(src, options)
    sink = open_sink(out, options.ext, FORMATS[img_format][2], tms, spec.fingerprint(), overwrite)
    planned = list(plan_pyramid(spec))
    todo = [t for t in planned if not sink.has(t)]
    skipped = len(planned) - len(todo)
    logger.info("%d tiles planned, %d already there", len(planned), skipped)
    counts = {"written": 0, "empty": 0}

    def report() -> None:
        if progress is not None:
            done = counts["written"] + skipped
            progress(Progress(done, counts["empty"], 0, len(planned)))

    report()
    workers = concurrency or os.cpu_count() or 1
    if parallel == "auto":
        parallel = "processes" if workers > 1 and len(todo) >= PROCESS_MIN_TILES else "threads"
    if executor is not None and executor.uses_dask:
        results = _render_dask(spec, todo, executor)
    elif parallel == "processes" and todo:
        results = _render_processes(spec, todo, workers)
    else:
        results = _render_threads(spec, todo, workers)
    for tile, data in results:
        if data is None:
            counts["empty"] += 1
        else:
            sink.put(tile, data)
            counts["written"] += 1
        report()
    if counts["written"] + skipped == 0:
        raise EmptyPlanError(f"no tile of zooms {options.zooms[0]}-{options.zooms[1]} holds data")
    meta = _metadata(spec, _name(out))
    sink.finish(meta)
    present = sink.present() if _is_folder(out) else ()
    page: Path | str | None
    if remote:
        files = previewer_files(_name(out, True), not _is_folder(out), meta, tms, present)
        page = sink.write_files(files) if files else None  # type: ignore[attr-defined]
    else:
        page = write_previewer(Path(out), meta, tms, present)
    return TilesResult(
        path=out,
        previewer=page,
        tiles_total=len(planned),
        tiles_written=counts["written"],
        tiles_skipped=skipped,
        tiles_empty=counts["empty"],
        zooms=options.zooms,
        bounds=meta["bounds"],
        seconds=time.monotonic() - t0,
    )


def check_out(out: str | Path) -> None:
    """Refuse an object store other than S3 (gs://, az:// …): not supported."""
    text = str(out)
    if "://" in text and not text.startswith("s3://"):
        raise ConfigError(
            f"OUT {out}: of object stores only s3:// is supported; write to a folder, a "
            ".pmtiles file or an s3:// prefix"
        )


def open_sink(
    out: str | Path, ext: str, tile_type: str, tms: str, fingerprint: str, overwrite: bool
) -> TileSink:
    """A folder sink, or a PMTiles sink for `*.pmtiles`; their S3 versions for s3:// OUT.

    Raises:
        ConfigError: another object store, or PMTiles with a TMS other than WebMercatorQuad.
        OutputError: OUT cannot hold the pyramid.
    """
    check_out(out)
    text = str(out)
    pmtiles = text.lower().endswith(".pmtiles")
    if pmtiles and tms != "WebMercatorQuad":
        raise ConfigError(f"PMTiles holds WebMercatorQuad tiles only, not `tms` {tms}")
    if text.startswith("s3://"):
        if pmtiles:
            return S3PMTilesSink(text, ext, tile_type, fingerprint, overwrite)
        return S3FolderSink(text, ext, fingerprint, overwrite)
    if pmtiles:
        return PMTilesSink(Path(out), ext, tile_type, fingerprint, overwrite)
    return FolderSink(Path(out), ext, fingerprint, overwrite)


def _is_folder(out: str | Path) -> bool:
    return not str(out).lower().endswith(".pmtiles")


def _name(out: str | Path, full: bool = False) -> str:
    """The pyramid's name (its last part without suffix, as tiles.json has it), or full."""
    last = str(out).rstrip("/").rsplit("/", 1)[-1]
    return last if full else Path(last).stem


def _zooms(zooms: tuple[int, int] | str) -> tuple[int, int]:
    from mosaic_assembler.render._spec import parse_zooms

    if isinstance(zooms, str):
        return parse_zooms(zooms)
    zmin, zmax = zooms
    return int(zmin), int(zmax)


def _rescale(
    rescale: Sequence[tuple[float, float]] | tuple[float, float] | None,
) -> tuple[tuple[float, float], ...] | None:
    if not rescale:
        return None
    pairs: Any = rescale
    if len(pairs) == 2 and all(isinstance(v, int | float) for v in pairs):
        pairs = (pairs,)  # one (min, max) for every band
    return tuple((float(lo), float(hi)) for lo, hi in pairs)


def _render_threads(
    spec: RenderSpec, todo: list[Tile], workers: int
) -> Iterator[tuple[Tile, bytes | None]]:
    """Tiles on a bounded thread pool, one renderer (open datasets) per thread.

    A renderer is never closed from another thread (rasterio keeps its GDAL environment per
    thread); its datasets close when the thread's local storage goes, as the pool ends.
    """
    import threading

    from mosaic_assembler._threads import bounded_map

    local = threading.local()

    def render(tile: Tile) -> bytes | None:
        r = getattr(local, "renderer", None)
        if r is None:
            r = local.renderer = TileRenderer(spec)
        return r.render(tile)

    for (tile,), fut in bounded_map(render, ((t,) for t in todo), workers, 4 * workers, "tile"):
        yield tile, fut.result()


def _render_processes(
    spec: RenderSpec, todo: list[Tile], workers: int, batch: int | None = None
) -> Iterator[tuple[Tile, bytes | None]]:
    """Batches of tiles on a pool of worker processes, each with its own renderer.

    Workers are forked when that is safe, else come from a fork server (`_mp_context`).
    A worker opens the source once
    (`init_worker`) and renders whole batches; the encoded images come back here, where the
    sink writes them. At most 2 batches a worker are in flight (bounded memory).
    """
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    size = batch or max(1, min(PROCESS_BATCH, len(todo) // (4 * workers)))
    batches = [todo[i : i + size] for i in range(0, len(todo), size)]
    workers = max(1, min(workers, len(batches)))
    pool = ProcessPoolExecutor(
        workers, mp_context=_mp_context(), initializer=init_worker, initargs=(spec,)
    )
    pending: set[Future[list[tuple[Tile, bytes | None]]]] = set()
    it = iter(batches)
    try:
        while True:
            while len(pending) < 2 * workers:
                b = next(it, None)
                if b is None:
                    break
                pending.add(pool.submit(render_in_worker, b))
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield from fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _mp_context() -> multiprocessing.context.BaseContext:
    """How worker processes start: the cheapest way that is safe here.

    - Linux, and no other Python thread runs: fork, as gdal2tiles' workers start. No Python
      lock can be held at the fork, the datasets `open_spec` read are closed, and a worker
      starts at once with rio-tiler already imported. (The native threads numpy's OpenBLAS
      starts are stopped by its own fork handler.) The pool forks every worker before it
      starts its own threads.
    - Otherwise (a thread runs, e.g. a progress bar's monitor or a server's; not Linux): a
      fork server that has imported the renderer (a clean single-threaded process; ~1-2 s
      to start, once per Python process), or spawn where there is none (Windows).
    """
    import threading

    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["mosaic_assembler.render._spec"])
        return ctx
    return multiprocessing.get_context("spawn")


def _render_dask(
    spec: RenderSpec, todo: list[Tile], executor: ExecutorOptions
) -> Iterator[tuple[Tile, bytes | None]]:
    """Batches of tiles as Dask tasks; the images come back to the driver, which writes them."""
    from distributed import as_completed

    from mosaic_assembler.executors import dask_client

    client = dask_client(executor)
    try:
        batches = [todo[i : i + DASK_BATCH] for i in range(0, len(todo), DASK_BATCH)]
        futures = [
            client.submit(render_batch, spec, batch, key=f"tiles-{spec.fingerprint()}-{i}")
            for i, batch in enumerate(batches)
        ]
        for fut in as_completed(futures):
            yield from fut.result()
            fut.release()
    finally:
        cluster: Any = getattr(client, "cluster", None)
        client.close()
        if executor.dask_local and cluster is not None:
            cluster.close()


def _metadata(spec: RenderSpec, name: str) -> dict[str, Any]:
    """The pyramid's description (tiles.json, PMTiles metadata, the previewer's config)."""
    o = spec.options
    tms = morecantile.tms.get(o.tms)
    w, s, e, n = (float(v) for v in spec.bounds)
    if tms.rasterio_geographic_crs != "EPSG:4326":
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(tms.rasterio_geographic_crs, "EPSG:4326", w, s, e, n)
    cz = max(o.zooms[0], min(o.zooms[1], o.zooms[0] + 2))
    return {
        "name": name,
        "format": o.img_format,
        "ext": o.ext,
        "tms": o.tms,
        "tilesize": o.tilesize,
        "minzoom": o.zooms[0],
        "maxzoom": o.zooms[1],
        "bounds": [w, s, e, n],
        "center": [(w + e) / 2, (s + n) / 2, cz],
    }
