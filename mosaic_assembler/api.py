"""mosaic_assembler.api: `assemble(...)`, the one function notebooks and the CLI call."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
import rasterio

from mosaic_assembler.errors import (
    ConfigError,
    EmptyPlanError,
    MosaicAssemblerError,
    TileReadError,
)
from mosaic_assembler.grid import AOI, Clipper, Plan, check_zoom, plan_tiles
from mosaic_assembler.sources import open_source
from mosaic_assembler.tilers import BandInfo, LocalTiler, ReadOptions, TileData, TileSource
from mosaic_assembler.tilers.http import HttpOptions, HttpTiler
from mosaic_assembler.writer import (
    DEFAULT_CACHE_BYTES,
    COGOptions,
    OutputTarget,
    TileWriter,
    config_value,
    finalize_cog,
)

logger = logging.getLogger(__name__)

__all__ = ["AssembleOptions", "AssembleResult", "Progress", "TilesFailedError", "assemble"]


class TilesFailedError(MosaicAssemblerError):
    """Some tiles could not be read; carries them as ((z, x, y), message) pairs."""

    def __init__(self, failed: list[tuple[tuple[int, int, int], str]], total: int):
        self.failed = failed
        first = ", ".join(f"{z}/{x}/{y}" for (x, y, z), _ in failed[:5])
        more = " …" if len(failed) > 5 else ""
        super().__init__(
            f"{len(failed)} of {total} tiles failed ({first}{more}); first error: "
            f"{failed[0][1]}. No output written (use --allow-partial to write the rest masked)"
        )


@dataclass(frozen=True)
class Progress:
    """Tiles finished so far; handed to the progress callback after every tile."""

    done: int
    empty: int
    failed: int
    total: int


@dataclass(frozen=True)
class AssembleOptions:
    """Everything a run needs, validated on construction.

    At most one of `bbox`/`aoi` (neither: the source's bounds). One of `mosaicjson`/`items`,
    or `http` (a dynamic tiler resolves the assets; a source may still be given to skip
    tiles that have none).
    """

    zoom: int
    bbox: tuple[float, float, float, float] | None = None
    aoi: Mapping[str, Any] | str | Path | None = None
    mosaicjson: str | Path | None = None
    items: str | Path | None = None
    assets: tuple[str, ...] = ()
    read: ReadOptions = field(default_factory=ReadOptions)
    cog: COGOptions = field(default_factory=COGOptions)
    clip: bool = False
    overwrite: bool = False
    allow_empty: bool = False
    allow_partial: bool = False
    max_pixels: float = 1e10
    concurrency: int | None = None
    http: HttpOptions | None = None

    def __post_init__(self) -> None:
        check_zoom(self.zoom)
        if self.bbox is not None:
            AOI.from_bbox(*self.bbox)  # validates
        if self.bbox is not None and self.aoi is not None:
            raise ConfigError("give either a bbox or an AOI, not both")
        if self.concurrency is not None and self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if not self.max_pixels > 0:
            raise ConfigError(f"max-pixels must be positive, got {self.max_pixels}")
        if self.http is None and self.mosaicjson is None and self.items is None:
            raise ConfigError("give a source: --mosaicjson FILE, --items FILE or --tiler URL")
        if self.http is not None and self.mosaicjson is None and self.items is None:
            if self.bbox is None and self.aoi is None:
                raise ConfigError("--tiler without a local source needs --bbox or --aoi")


@dataclass(frozen=True)
class AssembleResult:
    """What a run did.

    Attributes:
        path: the COG written (None for a dry run or an empty run).
        tiles_total: tiles the AOI covers.
        tiles_done: tiles written with data.
        tiles_empty: tiles with no data (no asset, or all pixels masked).
        tiles_failed: tiles that could not be read (only with allow_partial).
    """

    path: Path | None
    tiles_total: int
    tiles_done: int
    tiles_empty: int
    tiles_failed: int
    failed_tiles: tuple[tuple[int, int, int], ...]
    width: int
    height: int
    count: int
    dtype: str
    zoom: int
    tilesize: int
    bounds: tuple[float, float, float, float]
    estimated_bytes: int
    size_bytes: int
    seconds: Mapping[str, float]
    dry_run: bool = False

    def to_json(self) -> str:
        """The result as a JSON object (paths as strings)."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path) if self.path else None
        d["failed_tiles"] = [f"{z}/{x}/{y}" for x, y, z in self.failed_tiles]
        return json.dumps(d)


def _load_aoi(aoi: Mapping[str, Any] | str | Path) -> AOI:
    if isinstance(aoi, Mapping):
        return AOI.from_geojson(dict(aoi))
    text = str(aoi)
    if text.lstrip().startswith("{"):
        return AOI.from_geojson(text)
    try:
        return AOI.from_geojson(Path(text).read_text())
    except OSError as e:
        raise ConfigError(f"cannot read AOI file {text!r}: {e.strerror or e}") from e


def _iter_results(
    tiler: TileSource,
    jobs: list[tuple[tuple[int, int, int], list]],
    concurrency: int,
) -> Iterator[tuple[tuple[int, int, int], TileData | None, str | None]]:
    """Read tiles concurrently; yield them as they finish, never more than 2×N in flight.

    A tile that fails is yielded with its error message; a configuration error (e.g. a 4xx
    from a tiler) propagates at once and cancels what is pending.
    """
    pending: dict[Future, tuple[int, int, int]] = {}
    it = iter(jobs)
    limit = 2 * concurrency
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tile")
    try:
        while True:
            while len(pending) < limit:
                job = next(it, None)
                if job is None:
                    break
                pending[pool.submit(tiler.read_tile, *job)] = job[0]
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                tile = pending.pop(fut)
                try:
                    data = fut.result()
                except TileReadError as e:
                    yield tile, None, str(e)
                else:
                    yield tile, data, None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def assemble(
    output: str | Path,
    *,
    progress: bool | Callable[[Progress], None] = True,
    dry_run: bool = False,
    **options: Any,
) -> AssembleResult:
    """Assemble a COG of `output` from a source over an AOI.

    Args:
        output: path of the COG to write (appears atomically when the run succeeds).
        progress: True for a tqdm.auto bar, False for none, or a callback given a
            `Progress` after every tile.
        dry_run: plan only: no tile is read and nothing is written.
        **options: `AssembleOptions` fields; read options (`pixel_selection`, `tilesize`,
            `bidx`, `expression`, `resampling`) and COG options (`cog_profile`,
            `creation_options`, `gdal_config`, `overview_resampling`) may be given flat.

    Returns:
        AssembleResult.

    Raises:
        ConfigError: invalid options (bad bbox, zoom, method, profile …).
        SourceError: the source cannot be read.
        EmptyPlanError: the AOI intersects no asset (unless allow_empty).
        OutputError: the output cannot be written.
        TilesFailedError: tiles failed (unless allow_partial).

    Examples:
        >>> from mosaic_assembler import assemble
        >>> r = assemble("out.tif", bbox=(5.6, 45.3, 6.4, 45.7), zoom=10,
        ...              items="items.json", assets=("red", "green", "blue"),
        ...              pixel_selection="median")
    """
    opts = build_options(**options)
    if progress is True:
        callback: Callable[[Progress], None] | None = _tqdm_callback()
    elif progress is False or progress is None:
        callback = None
    else:
        callback = progress
    try:
        return run(Path(output), opts, progress=callback, dry_run=dry_run)
    finally:
        close = getattr(callback, "close", None)
        if close is not None:
            close()


def build_options(**options: Any) -> AssembleOptions:
    """AssembleOptions from flat keyword arguments.

    Raises:
        ConfigError: unknown or invalid option.
    """
    read_keys = {f.name for f in dataclasses.fields(ReadOptions)}
    cog_map = {
        "cog_profile": "profile",
        "creation_options": "creation_options",
        "gdal_config": "config",
        "overview_resampling": "overview_resampling",
    }
    http_map = {"tiler": "template", "tiler_params": "params", "headers": "headers",
                "retries": "retries", "timeout": "timeout", "http_seed": "seed",
                "backoff": "backoff"}
    read_kw = {k: options.pop(k) for k in list(options) if k in read_keys}
    http_kw = {http_map[k]: options.pop(k) for k in list(options) if k in http_map}
    for key in ("params", "headers"):
        if isinstance(http_kw.get(key), Mapping):
            http_kw[key] = tuple(http_kw[key].items())
        elif http_kw.get(key) is not None:
            http_kw[key] = tuple(tuple(kv) for kv in http_kw[key])
    http_kw = {k: v for k, v in http_kw.items() if v is not None}
    if http_kw.get("template"):
        if options.get("concurrency"):
            http_kw["concurrency"] = options["concurrency"]
        options["http"] = HttpOptions(**http_kw)
    cog_kw = {cog_map[k]: options.pop(k) for k in list(options) if k in cog_map}
    if "bidx" in read_kw and read_kw["bidx"] is not None:
        read_kw["bidx"] = tuple(read_kw["bidx"])
    if "assets" in options and options["assets"] is not None:
        a = options["assets"]
        options["assets"] = tuple(a.split(",")) if isinstance(a, str) else tuple(a)
    if options.get("bbox") is not None:
        bbox = tuple(options["bbox"])
        if len(bbox) != 4:
            raise ConfigError(f"bbox needs 4 numbers W S E N, got {len(bbox)}")
        options["bbox"] = bbox
    known = {f.name for f in dataclasses.fields(AssembleOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown option(s): {', '.join(unknown)}")
    if "zoom" not in options:
        raise ConfigError("zoom is required")
    try:
        return AssembleOptions(read=ReadOptions(**read_kw), cog=COGOptions(**cog_kw), **options)
    except TypeError as e:
        raise ConfigError(str(e)) from e


def _tqdm_callback() -> Callable[[Progress], None]:
    from tqdm.auto import tqdm

    bar: Any = None

    def update(p: Progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, unit="tile", desc="tiles")
        bar.n = p.done + p.empty + p.failed
        bar.set_postfix(empty=p.empty, failed=p.failed, refresh=False)
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    update.close = close  # type: ignore[attr-defined]
    return update


def run(
    output: Path,
    opts: AssembleOptions,
    progress: Callable[[Progress], None] | None = None,
    dry_run: bool = False,
) -> AssembleResult:
    """Run a validated configuration (see `assemble`)."""
    # GDAL's block cache defaults to 5 % of RAM and would grow with the amount read: bound it.
    config: dict[str, Any] = {"GDAL_CACHEMAX": DEFAULT_CACHE_BYTES}
    config.update({k.upper(): config_value(v) for k, v in opts.cog.config.items()})
    with rasterio.Env(**config):
        return _run(output, opts, progress, dry_run)


def _run(
    output: Path,
    opts: AssembleOptions,
    progress: Callable[[Progress], None] | None,
    dry_run: bool,
) -> AssembleResult:
    t0 = time.perf_counter()
    target = OutputTarget(output, overwrite=opts.overwrite)
    if not dry_run:
        target.check()
    source = None
    if opts.mosaicjson is not None or opts.items is not None:
        source = open_source(mosaicjson=opts.mosaicjson, items=opts.items, assets=opts.assets)
    if opts.bbox is not None:
        aoi = AOI.from_bbox(*opts.bbox)
    elif opts.aoi is not None:
        aoi = _load_aoi(opts.aoi)
    else:
        assert source is not None  # AssembleOptions guarantees an AOI without a source
        aoi = AOI.from_bbox(*source.bounds)
    plan = plan_tiles(aoi, opts.zoom, opts.read.tilesize, opts.max_pixels)
    if source is not None:
        jobs = [(t, source.assets_for_tile(*t)) for t in plan.tiles]
        jobs = [(t, a) for t, a in jobs if a]
    else:
        jobs = [(t, []) for t in plan.tiles]
    tiler: Any = HttpTiler(opts.http, opts.read) if opts.http else LocalTiler(opts.read)
    seconds: dict[str, float] = {"plan": time.perf_counter() - t0}
    grid = dict(
        tiles_total=len(plan.tiles), zoom=plan.zoom, tilesize=plan.tilesize,
        bounds=plan.bounds, width=plan.width, height=plan.height,
    )
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
        return _result(None, plan, grid, 0, len(plan.tiles), [], None, 0, seconds, dry_run)
    probe = list(dict.fromkeys(a for _, assets in jobs[:50] for a in assets))[:5]
    bands: BandInfo | None = tiler.band_info(probe)
    if bands is not None:
        opts.cog.check_bands(bands)
    if dry_run:
        return _result(None, plan, grid, 0, len(plan.tiles) - len(jobs), [], bands, 0,
                       seconds, True)
    concurrency = opts.concurrency or getattr(tiler, "default_concurrency", None) or \
        _default_concurrency()
    clipper = Clipper.from_aoi(aoi) if opts.clip else None
    done, empty = 0, len(plan.tiles) - len(jobs)
    failed: list[tuple[tuple[int, int, int], str]] = []
    logger.info("assembling %d tiles (%d to read) into %d x %d px", len(plan.tiles), len(jobs),
                plan.width, plan.height)
    with target:
        assert target.workdir is not None
        streamed = target.workdir / "streamed.tif"
        writer: TileWriter | None = None
        t1 = time.perf_counter()
        try:
            if progress:
                progress(Progress(done, empty, 0, len(plan.tiles)))
            for tile, data, error in _iter_results(tiler, jobs, concurrency):
                if error is not None:
                    failed.append((tile, error))
                    logger.debug("tile %s failed: %s", tile, error)
                else:
                    if data is not None and clipper is not None:
                        valid = data.valid & clipper.inside(tile, plan.tilesize)
                        data = TileData(data.data, valid) if valid.any() else None
                    if data is None:
                        empty += 1
                    else:
                        if writer is None:  # opened on the first tile with data
                            bands = bands or BandInfo(data.data.shape[0], str(data.data.dtype),
                                                      ())
                            opts.cog.check_bands(bands)
                            writer = TileWriter(streamed, plan, bands)
                        writer.write(tile, data)
                        done += 1
                if progress:
                    progress(Progress(done, empty, len(failed), len(plan.tiles)))
        finally:
            if writer is not None:
                writer.close()
            close = getattr(tiler, "close", None)
            if close is not None:
                close()
        seconds["read"] = time.perf_counter() - t1
        if failed and not opts.allow_partial:
            raise TilesFailedError(sorted(failed), len(plan.tiles))
        if writer is None:
            if failed:
                raise TilesFailedError(sorted(failed), len(plan.tiles))
            if not opts.allow_empty:
                raise EmptyPlanError(
                    f"all {len(plan.tiles)} tiles were empty (no data from the "
                    f"{'tiler' if opts.http else 'assets'}); nothing written "
                    "(use --allow-empty to exit successfully anyway)"
                )
            logger.warning("all tiles were empty; nothing written")
            return _result(None, plan, grid, 0, empty, failed, bands, 0, seconds, False)
        t2 = time.perf_counter()
        cog = target.workdir / "out.tif"
        finalize_cog(streamed, cog, opts.cog)
        size = cog.stat().st_size
        target.commit(cog)
        seconds["finalize"] = time.perf_counter() - t2
    seconds["total"] = time.perf_counter() - t0
    return _result(output, plan, grid, done, empty, failed, writer.bands, size, seconds, False)


def _result(
    path: Path | None,
    plan: Plan,
    grid: dict[str, Any],
    done: int,
    empty: int,
    failed: list[tuple[tuple[int, int, int], str]],
    bands: BandInfo | None,
    size: int,
    seconds: dict[str, float],
    dry_run: bool,
) -> AssembleResult:
    count = bands.count if bands else 0
    dtype = bands.dtype if bands else ""
    itemsize = numpy.dtype(dtype).itemsize if dtype else 0
    return AssembleResult(
        path=path, tiles_done=done, tiles_empty=empty, tiles_failed=len(failed),
        failed_tiles=tuple(sorted(t for t, _ in failed)), count=count, dtype=dtype,
        estimated_bytes=plan.width * plan.height * count * itemsize, size_bytes=size,
        seconds=seconds, dry_run=dry_run, **grid,
    )


def _default_concurrency() -> int:
    import os

    return max(2, min(32, (os.cpu_count() or 1) * 2))
