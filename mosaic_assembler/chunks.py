"""mosaic_assembler.chunks: one chunk of tiles → one chunk GeoTIFF, as a pure function.

`compute_chunk(spec, job)` takes only small frozen, picklable values, so the same call runs
in a thread, a local process or a Dask worker. It reads the chunk's tiles concurrently
(bounded: never more than 2 × concurrency tiles in flight), writes them as they arrive with
one writer, builds the chunk's internal overviews (when the run's overview resampling allows,
see `writer.ChunkOverviews`), and renames the finished file into place: a chunk file that
exists is complete.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from mosaic_assembler import web
from mosaic_assembler._threads import bounded_map as bounded_map
from mosaic_assembler.errors import TileReadError
from mosaic_assembler.grid import Chunk, Clipper, Plan, Tile
from mosaic_assembler.tilers import TileSource
from mosaic_assembler.types import BandInfo, ChunkStatus, TileData
from mosaic_assembler.writer import ChunkOverviews, TileWriter

logger = logging.getLogger(__name__)

__all__ = ["ChunkJob", "ChunkResult", "RunSpec", "compute_chunk", "iter_tiles"]


@dataclass(frozen=True)
class ChunkJob:
    """A chunk and, for each of its tiles (same order), the assets that cover it."""

    chunk: Chunk
    assets: tuple[tuple[Any, ...], ...]

    @property
    def key(self) -> str:
        """The chunk's stable key."""
        return self.chunk.key


@dataclass(frozen=True)
class RunSpec:
    """What every chunk of a run shares.

    Attributes:
        plan: the output grid.
        tiler: a picklable TileSource (LocalTiler, HttpTiler).
        clip: masks pixels outside the AOI, or None.
        bands: band count/dtype when known before reading (in-process), else None.
        concurrency: tiles read in parallel within a chunk.
        chunk_dir: directory of the chunk GeoTIFFs.
        visual: a `visual.Visual` post-step (uint8 imagery), or None.
        gdal_config: GDAL configuration for reading and writing (GDAL_CACHEMAX …), applied
            around each chunk so that Dask workers in other processes get it too.
        overviews: internal overviews each chunk file gets before it is renamed into place,
            or None.
        provenance: the provenance kinds (`provenance.PROVENANCE`) whose chunk files
            (`KEY.count.tif`, `KEY.date.tif`) go with each chunk file.
        provenance_overviews: their internal overviews (nearest), or None.
    """

    plan: Plan
    tiler: Any
    clip: Clipper | None
    bands: BandInfo | None
    concurrency: int
    chunk_dir: str
    visual: Any = None
    gdal_config: tuple[tuple[str, Any], ...] = ()
    overviews: ChunkOverviews | None = None
    provenance: tuple[str, ...] = ()
    provenance_overviews: ChunkOverviews | None = None

    def chunk_path(self, key: str, kind: str = "") -> Path:
        """Where a finished chunk lives (`kind`: one of its provenance files)."""
        return Path(self.chunk_dir) / (f"{key}.{kind}.tif" if kind else f"{key}.tif")


@dataclass(frozen=True)
class ChunkResult:
    """What computing a chunk did.

    Attributes:
        status: "done" (file written, no failure), "partial" (file written, some tiles
            failed), "empty" (no tile had data, no file), "failed" (tiles failed, none had data).
        failed: ((x, y, z), message) of the tiles that failed.
        items: the ids of the items (or the asset hrefs, credentials redacted) the chunk's
            tiles were given by the asset index, sorted.
        retried: (x, y, z) of the tiles that took more than one request.
    """

    key: str
    status: ChunkStatus
    done: int
    empty: int
    failed: tuple[tuple[Tile, str], ...]
    count: int
    dtype: str
    seconds: float
    items: tuple[str, ...] = ()
    retried: tuple[Tile, ...] = ()

    def to_record(self) -> dict[str, Any]:
        """The manifest's "end" event of this chunk (tiles as [z, x, y, message])."""
        return {
            "event": "end",
            "chunk": self.key,
            "status": str(self.status),
            "done": self.done,
            "empty": self.empty,
            "failed": [[z, x, y, msg] for (x, y, z), msg in self.failed],
            "count": self.count,
            "dtype": self.dtype,
            "seconds": round(self.seconds, 3),
            "items": list(self.items),
            "retried": [[z, x, y] for x, y, z in self.retried],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChunkResult:
        """The result a manifest "end" event records (the inverse of `to_record`)."""
        return cls(
            key=record["chunk"],
            status=ChunkStatus(record["status"]),
            done=record["done"],
            empty=record["empty"],
            failed=tuple(((x, y, z), msg) for z, x, y, msg in record["failed"]),
            count=record["count"],
            dtype=record["dtype"],
            seconds=record.get("seconds", 0.0),
            items=tuple(record.get("items", ())),
            retried=tuple((x, y, z) for z, x, y in record.get("retried", ())),
        )


def iter_tiles(
    tiler: TileSource,
    jobs: list[tuple[Tile, Any]],
    concurrency: int,
) -> Iterator[tuple[Tile, TileData | None, str | None]]:
    """Read tiles concurrently; yield (tile, data, error) as they finish.

    Never more than 2 × concurrency tiles are in flight. A tile that fails (TileReadError)
    is yielded with its message (credential query parameters redacted: GDAL's message may
    hold the URL); any other error (a 4xx from a tiler, a bug) propagates at
    once and cancels what is pending.
    """
    for (tile, _), fut in bounded_map(tiler.read_tile, jobs, concurrency, 2 * concurrency, "tile"):
        try:
            data = fut.result()
        except TileReadError as e:  # recorded in the chunk's record: no credential in it
            yield tile, None, web.redact(str(e))
        else:
            yield tile, data, None


def compute_chunk(
    spec: RunSpec,
    job: ChunkJob,
    on_tile: Callable[[str], None] | None = None,
) -> ChunkResult:
    """Read a chunk's tiles and write the chunk GeoTIFF (atomically: temp file + rename).

    Runs inside `rasterio.Env(**spec.gdal_config)`.

    Args:
        spec: what the run's chunks share.
        job: the chunk and its per-tile assets.
        on_tile: called with "done", "empty" or "failed" after each tile (progress).

    Returns:
        ChunkResult.
    """
    from mosaic_assembler.storage import gdal_env, is_s3

    # this process's S3 endpoint and HTTP retries (a Dask worker's own environment), then the run's
    with rasterio.Env(**{**gdal_env(), **dict(spec.gdal_config)}):
        if is_s3(spec.chunk_dir):  # an S3 run directory: compute in TMPDIR, upload, record
            from mosaic_assembler.storage._records import compute_remote_chunk

            return compute_remote_chunk(spec, job, on_tile, _compute_chunk)  # type: ignore[no-any-return]
        return _compute_chunk(spec, job, on_tile)


def _post_process(spec: RunSpec, tile: Tile, data: TileData | None) -> TileData | None:
    """The AOI clip and the visual step on a read tile (None: nothing left to write)."""
    if data is not None and spec.clip is not None:
        valid = data.valid & spec.clip.inside(tile, spec.plan.tilesize)
        data = TileData(data.data, valid, data.extra) if valid.any() else None
    if data is not None and spec.visual is not None:
        data = TileData(spec.visual.apply(data.data), data.valid, data.extra)
    return data


def asset_ids(assets: Iterable[Iterable[Any]]) -> tuple[str, ...]:
    """The sorted ids of the items (or hrefs, credentials redacted) in per-tile asset lists."""
    ids = {getattr(a, "id", None) or web.redact(str(a)) for tile in assets for a in tile}
    return tuple(sorted(ids))


def _compute_chunk(
    spec: RunSpec,
    job: ChunkJob,
    on_tile: Callable[[str], None] | None,
) -> ChunkResult:
    t0 = time.perf_counter()
    plan, chunk = spec.plan, job.chunk
    final = spec.chunk_path(chunk.key)
    tmp = final.with_name(f"{final.stem}.partial-{os.getpid()}.tif")
    writer: TileWriter | None = None
    extras: dict[str, TileWriter] = {}
    bands = spec.bands
    done = empty = 0
    failed: list[tuple[Tile, str]] = []
    retried: list[Tile] = []
    jobs = [(t, a) for t, a in zip(chunk.tiles, job.assets, strict=True)]
    try:
        for tile, data, error in iter_tiles(spec.tiler, jobs, spec.concurrency):
            if error is not None:
                failed.append((tile, error))
                outcome = "failed"
            else:
                if data is not None and data.retries:
                    retried.append(tile)
                data = _post_process(spec, tile, data)
                if data is None:
                    empty += 1
                    outcome = "empty"
                else:
                    if writer is None:  # opened on the first tile with data
                        bands = bands or BandInfo(data.data.shape[0], str(data.data.dtype), ())
                        writer = TileWriter(tmp, plan, bands, chunk=chunk)
                    for kind, arr in data.extra:
                        if kind not in extras:
                            info = BandInfo(arr.shape[0], str(arr.dtype), ())
                            extras[kind] = TileWriter(
                                _tmp(spec, chunk.key, kind), plan, info, chunk
                            )
                        extras[kind].write(tile, TileData(arr, data.valid))
                    writer.write(tile, data)
                    done += 1
                    outcome = "done"
            if on_tile is not None:
                on_tile(outcome)
        if writer is not None:
            for kind, extra in list(extras.items()):  # before the chunk file: it marks done
                if spec.provenance_overviews is not None:
                    extra.add_overviews(spec.provenance_overviews)
                extra.close()
                del extras[kind]
                os.replace(_tmp(spec, chunk.key, kind), spec.chunk_path(chunk.key, kind))
            if spec.overviews is not None:
                writer.add_overviews(spec.overviews)
            writer.close()
            writer = None
            os.replace(tmp, final)
    finally:
        for kind, extra in extras.items():
            extra.close()
            _tmp(spec, chunk.key, kind).unlink(missing_ok=True)
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    if done:
        status = ChunkStatus.PARTIAL if failed else ChunkStatus.DONE
    else:
        status = ChunkStatus.FAILED if failed else ChunkStatus.EMPTY
    return ChunkResult(
        key=chunk.key,
        status=status,
        done=done,
        empty=empty,
        failed=tuple(sorted(failed)),
        count=bands.count if bands and done else 0,
        dtype=bands.dtype if bands and done else "",
        seconds=time.perf_counter() - t0,
        items=asset_ids(job.assets),
        retried=tuple(sorted(retried)),
    )


def _tmp(spec: RunSpec, key: str, kind: str) -> Path:
    """The temporary name of a chunk's provenance file while it is written."""
    return Path(spec.chunk_dir) / f"{key}.{kind}.partial-{os.getpid()}.tif"
