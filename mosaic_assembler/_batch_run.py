"""mosaic_assembler._batch_run: a batch's features run, in threads or as Dask tasks.

Each feature is one `assemble()` of its own (`run_feature`), whose outcome is a ledger
entry (done, empty or failed with the message): a failure never stops the other features.
On Dask every feature is a task that runs its chunks in threads on its worker.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_assembler._features import Feature
from mosaic_assembler.api import assemble
from mosaic_assembler.errors import EmptyPlanError, MosaicAssemblerError
from mosaic_assembler.executors import ExecutorOptions
from mosaic_assembler.ledger import FileLedger, S3Ledger
from mosaic_assembler.options import AssembleOptions

logger = logging.getLogger(__name__)

__all__ = ["FeatureJob", "failed_entry", "run_feature", "run_jobs"]

_ALLOW_EMPTY = re.compile(r" \(use `allow_empty`[^)]*\)")


@dataclass(frozen=True)
class FeatureJob:
    """One feature's run (small, frozen, picklable: it may be a Dask task)."""

    feature: Feature
    output: str
    options: AssembleOptions


def run_jobs(
    jobs: list[FeatureJob], workers: int, ledger: FileLedger | S3Ledger
) -> Iterator[dict[str, Any]]:
    """Each job's ledger entry as it ends: threads here, or Dask tasks (one per feature)."""
    if not jobs:
        return
    executor = jobs[0].options.executor
    if executor.uses_dask:
        yield from _run_dask(jobs, executor, ledger)
        return
    from mosaic_assembler.chunks import bounded_map

    def start(args: tuple[Any, ...]) -> None:
        ledger.append({"event": "start", "feature": args[0].feature.id})

    n = min(workers, len(jobs))
    for _, fut in bounded_map(run_feature, ((j,) for j in jobs), n, n, "feature", start):
        yield fut.result()


def _run_dask(
    jobs: list[FeatureJob], executor: ExecutorOptions, ledger: FileLedger | S3Ledger
) -> Iterator[dict[str, Any]]:
    """Every feature a Dask task running its own assemble, with its chunks on that worker."""
    from distributed import as_completed

    from mosaic_assembler.executors import dask_client

    local = dataclasses.replace(executor, dask_scheduler=None, dask_local=None)
    client = dask_client(executor)
    prefix = f"feature-{os.getpid()}-{int(time.time())}"
    try:
        futures = {}
        for job in jobs:
            ledger.append({"event": "start", "feature": job.feature.id})
            task = dataclasses.replace(
                job, options=dataclasses.replace(job.options, executor=local)
            )
            fut = client.submit(
                run_feature, task, key=f"{prefix}-{job.feature.id}",
                retries=executor.dask_retries, pure=False,
            )  # fmt: skip
            futures[fut] = job
        try:
            for fut in as_completed(list(futures)):
                try:
                    yield fut.result()
                except Exception as e:  # the task itself died (a killed worker, retries spent)
                    yield failed_entry(futures[fut], f"Dask task failed: {type(e).__name__}: {e}")
        except BaseException:
            client.cancel(list(futures))
            raise
    finally:
        cluster = client.cluster if executor.dask_local else None
        client.close()
        if cluster is not None:
            cluster.close()


def failed_entry(job: FeatureJob, message: str, seconds: float = 0.0) -> dict[str, Any]:
    """The ledger entry of a feature that failed."""
    f = job.feature
    return {"feature": f.id, "value": f.value, "g": f.token, "event": "failed",
            "message": message, "seconds": seconds}  # fmt: skip


def run_feature(job: FeatureJob) -> dict[str, Any]:
    """Assemble one feature; its ledger entry (a failure is an entry, never an exception)."""
    t0 = time.perf_counter()
    f = job.feature
    base = {"feature": f.id, "value": f.value, "g": f.token}
    try:
        r = assemble(job.output, job.options, progress=False)
    except EmptyPlanError as e:  # not an error in a batch: drop the advice to allow it
        message = _ALLOW_EMPTY.sub("", str(e))
        return {**base, "event": "empty", "message": message, "seconds": _since(t0)}
    except MosaicAssemblerError as e:
        return failed_entry(job, str(e), _since(t0))
    except Exception as e:  # one feature's bug or broken file must not stop the others
        logger.debug("feature %s failed", f.id, exc_info=True)
        return failed_entry(job, f"unexpected {type(e).__name__}: {e}", _since(t0))
    return {
        **base, "event": "done", "path": Path(job.output).name, "width": r.width,
        "height": r.height, "count": r.count, "dtype": r.dtype, "zoom": r.zoom,
        "tilesize": r.tilesize, "tms": r.tms, "crs": r.crs, "bounds": list(r.bounds),
        "tiles_done": r.tiles_done,
        "tiles_empty": r.tiles_empty, "tiles_failed": r.tiles_failed,
        "chunks_resumed": r.chunks_resumed, "size_bytes": r.size_bytes, "seconds": _since(t0),
    }  # fmt: skip


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 3)
