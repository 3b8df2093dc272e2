"""`extract_chips`: points × observations → chips, composites, values.csv; resumable.

Load the points, open the items (a file or a search), find each point's observations, skip
the points the ledger lists as finished, run spatially sorted batches on threads or Dask
(a ledger line per point as each batch ends, one fsync per batch), then write values.csv
from the points' parts.

Local batches run in worker processes (`concurrency` > 1): a chip's time is numpy, GDAL's
encoders and rasterio calls that hold the GIL, so threads do not scale.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosaic_assembler.chips._extract import Batch, PointOutcome, process_batch
from mosaic_assembler.chips._items import ItemRef, Observation, observations_for, to_refs
from mosaic_assembler.chips._options import ChipsOptions
from mosaic_assembler.chips._outputs import assemble_values, columns, part_is_whole
from mosaic_assembler.chips._points import Point, PointSet, load_points
from mosaic_assembler.chips._remote import RemoteOut
from mosaic_assembler.chips._spec import ChipSpec
from mosaic_assembler.errors import ConfigError, OutputError
from mosaic_assembler.ledger import append_line, append_lines, last_by, read_lines
from mosaic_assembler.results import Progress
from mosaic_assembler.storage import is_s3

logger = logging.getLogger(__name__)

__all__ = ["ChipsResult", "run_chips"]

FINISHED = ("done", "empty")


@dataclass(frozen=True)
class ChipsResult:
    """What a chips run did.

    Attributes:
        out_dir: the output directory.
        values_path: values.csv.
        points: points in POINTS; `done` of them with rows, `empty` without a valid
            observation, `failed`, `skipped` (finished by an earlier run).
        rows: rows of values.csv.
        failures: (point key, message) of the failed points.
        reads: read counters of this run (`opens`, `reads`, `blocks`, `pixels`).
        seconds: wall time.
    """

    out_dir: Path | str
    values_path: Path | str
    points: int
    done: int
    empty: int
    failed: int
    skipped: int
    rows: int
    failures: tuple[tuple[str, str], ...] = ()
    reads: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def _spec(opts: ChipsOptions, pts: PointSet) -> ChipSpec:
    return ChipSpec(str(opts.out_dir), opts.size, opts.assets, pts.crs, opts.mask,
                    opts.composites, opts.rescale, pts.id_fields,
                    opts.gdal_config)  # fmt: skip


def _open_source(opts: ChipsOptions, spec: ChipSpec, pts: PointSet) -> Any:
    extra = tuple(k for k in spec.keys if k not in opts.assets)
    if opts.items is not None:
        from mosaic_assembler.sources.stac_items import open_stac_items

        return open_stac_items(opts.items, opts.assets, extra)
    from mosaic_assembler.sources.stac_api import open_stac_search

    assert opts.stac is not None
    pad = 0.02 + opts.size * 60 / 111_000  # a chip of up to 60 m pixels, in degrees
    lons, lats = [p.lon for p in pts.points], [p.lat for p in pts.points]
    bbox = (min(lons) - pad, min(lats) - pad, max(lons) + pad, max(lats) + pad)
    return open_stac_search(opts.stac, opts.assets, extra_assets=extra, bbox=bbox)


def _pixel_size(source: Any) -> float:
    """The coarsest nominal pixel size of the items, metres (gsd, proj:transform; else 30)."""
    sizes = []
    for ia in source.items:
        props = ia.item.get("properties") or {}
        t = props.get("proj:transform")
        sizes.append(float(props.get("gsd") or (abs(t[0]) if t else 30)))
    return max(sizes) if sizes else 30.0


def _morton(points: Sequence[Point]) -> list[int]:
    """Z-order of the points (batches of neighbours share reads)."""
    lons, lats = [p.lon for p in points], [p.lat for p in points]
    x0, y0 = min(lons), min(lats)
    dx, dy = (max(lons) - x0) or 1.0, (max(lats) - y0) or 1.0

    def key(p: Point) -> int:
        x, y = int((p.lon - x0) / dx * 65535), int((p.lat - y0) / dy * 65535)
        return sum(((x >> b) & 1) << (2 * b) | ((y >> b) & 1) << (2 * b + 1) for b in range(16))

    return sorted(range(len(points)), key=lambda i: key(points[i]))


def _batches(
    order: list[int], pts: Sequence[Point], obs: Sequence[list[Observation]],
    refs: Sequence[ItemRef], n: int,
) -> Iterator[Batch]:  # fmt: skip
    for s in range(0, len(order), n):
        idx = order[s : s + n]
        used = sorted({i for k in idx for o in obs[k] for i in o.items})
        yield Batch(tuple(pts[k] for k in idx), tuple(tuple(obs[k]) for k in idx),
                    tuple(refs[i] for i in used))  # fmt: skip


def _ledger(
    opts: ChipsOptions, spec: ChipSpec, out: Path
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The ledger and its finished points (refusing one written with other options).

    A point is finished when its last whole line says done or empty and its values part
    holds the rows that line counts (the parts are not fsync'ed one by one: a part lost
    with the machine is recomputed).
    """
    path = out / "ledger.jsonl"
    if opts.restart and path.exists():
        path.unlink()
    entries = read_lines(path)
    runs = {e.get("config") for e in entries if e.get("event") == "run"}
    if runs - {opts.fingerprint()}:
        raise ConfigError(
            f"{out} holds chips made with other options; give `restart` to redo them "
            "or another `out_dir`"
        )
    append_line(path, {"event": "run", "config": opts.fingerprint()})
    last = last_by(entries, "point", "point")
    return path, {
        k: e
        for k, e in last.items()
        if e.get("status") in FINISHED and part_is_whole(spec, k, int(e.get("rows") or 0))
    }


def run_chips(
    opts: ChipsOptions, progress: Callable[[Progress], None] | None = None
) -> ChipsResult:
    """Run a chips extraction (see `extract_chips`)."""
    t0 = time.perf_counter()
    remote = RemoteOut(str(opts.out_dir)) if is_s3(opts.out_dir) else None
    out: Path | str = remote.url.url if remote is not None else Path(opts.out_dir)
    pts = load_points(opts.points, opts.id_fields, opts.points_crs)
    spec = _spec(opts, pts)
    if remote is not None:
        remote.check()
    else:
        try:
            Path(out).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create `out_dir` {str(out)!r}: {e}") from e
    source = _open_source(opts, spec, pts)
    refs, footprints = to_refs(source, spec.keys, opts.group_by)
    half_m = opts.size / 2 * _pixel_size(source) * 1.5
    if remote is not None:
        ledger = None
        finished = remote.finished(opts.fingerprint(), opts.restart)
    else:
        ledger, finished = _ledger(opts, spec, Path(out))
    todo = [k for k, p in enumerate(pts.points) if p.key not in finished]
    todo_pts = [pts.points[k] for k in todo]
    obs = observations_for(todo_pts, refs, footprints, opts.group_by, half_m)
    batches = list(_batches(_morton(todo_pts) if todo_pts else [], todo_pts, obs, refs,
                            opts.batch_points))  # fmt: skip
    counts = {"done": 0, "empty": 0, "failed": 0}
    failures: list[tuple[str, str]] = []
    reads = {"opens": 0, "reads": 0, "blocks": 0, "pixels": 0}
    parts = {k: str(e.get("part", "")) for k, e in finished.items()}

    def on_result(outcomes: list[PointOutcome], stats: dict[str, int]) -> None:
        if remote is not None:
            remote.record(outcomes)
            parts.update((o.key, o.part) for o in outcomes if o.status != "failed")
        else:
            assert ledger is not None
            append_lines(ledger, [{"event": "point", "point": o.key, "status": o.status,
                                   "rows": o.rows, "error": o.error}
                                  for o in outcomes])  # fmt: skip
        for o in outcomes:
            counts[o.status] += 1
            if o.status == "failed":
                failures.append((o.key, o.error))
        for k in reads:
            reads[k] += stats.get(k, 0)
        if progress is not None:
            progress(Progress(counts["done"], counts["empty"], counts["failed"], len(todo)))

    _execute(spec, batches, opts, on_result)
    failed = {k for k, _ in failures}
    keys = [p.key for p in pts.points if p.key not in failed]
    values_path: Path | str
    if remote is not None:
        values_path, rows = remote.write_values(
            columns(spec), [parts[k] for k in keys if k in parts]
        )
    else:
        values_path, rows = assemble_values(spec, keys)
    return ChipsResult(out, values_path, len(pts.points), counts["done"], counts["empty"],
                       counts["failed"], len(finished), rows, tuple(failures), reads,
                       round(time.perf_counter() - t0, 3))  # fmt: skip


def _execute(
    spec: ChipSpec,
    batches: list[Batch],
    opts: ChipsOptions,
    on_result: Callable[[list[PointOutcome], dict[str, int]], None],
) -> None:
    if not batches:
        return
    if opts.executor.uses_dask:
        _execute_dask(spec, batches, opts, on_result)
        return
    workers = min(opts.concurrency, len(batches))
    if workers == 1:
        for b in batches:
            outcomes, stats = process_batch(spec, b)
            on_result(outcomes, stats)
        return
    _execute_processes(spec, batches, workers, on_result)


def _process_pool(workers: int) -> Any:
    """A pool of `workers` processes, forked on Linux, spawned elsewhere.

    Fork has no start-up cost and does not re-import the caller's `__main__` (spawn and
    forkserver need it guarded by `if __name__ == "__main__"`).
    """
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def _execute_processes(
    spec: ChipSpec,
    batches: list[Batch],
    workers: int,
    on_result: Callable[[list[PointOutcome], dict[str, int]], None],
) -> None:
    """The batches on `workers` processes, at most two each in flight, as they finish."""
    from concurrent.futures import FIRST_COMPLETED, wait

    todo = iter(batches)
    pool = _process_pool(workers)
    pending: set[Any] = set()
    try:
        while True:
            while len(pending) < 2 * workers and (b := next(todo, None)) is not None:
                pending.add(pool.submit(process_batch, spec, b))
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                outcomes, stats = fut.result()
                on_result(outcomes, stats)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _execute_dask(
    spec: ChipSpec,
    batches: list[Batch],
    opts: ChipsOptions,
    on_result: Callable[[list[PointOutcome], dict[str, int]], None],
) -> None:
    from distributed import as_completed

    from mosaic_assembler.executors import dask_client

    client = dask_client(opts.executor)
    owns = opts.executor.dask_local is not None
    try:
        [spec_f] = client.scatter([spec], broadcast=True)
        fp = opts.fingerprint()
        futures = [
            client.submit(
                process_batch,
                spec_f,
                b,
                key=f"chips-{fp}-{n}",
                retries=opts.executor.dask_retries,
                pure=False,
            )  # fmt: skip
            for n, b in enumerate(batches)
        ]
        try:
            for fut in as_completed(futures):
                outcomes, stats = fut.result()
                on_result(outcomes, stats)
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        cluster = client.cluster if owns else None
        client.close()
        if cluster is not None:
            cluster.close()
