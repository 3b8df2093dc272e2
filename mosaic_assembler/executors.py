"""mosaic_assembler.executors: where chunks run. Threads by default; Dask when asked.

Dask (`mosaic-assembler[dask]`) is imported only when used. Chunks are Dask tasks with
stable keys (configuration hash + chunk key); a worker that dies mid-chunk has its task
rescheduled on another worker by the scheduler, and since a chunk file appears only when it
is complete, the result is the same.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from mosaic_assembler.chunks import ChunkJob, ChunkResult, RunSpec, bounded_map, compute_chunk
from mosaic_assembler.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExecutorOptions:
    """Where chunks run.

    Attributes:
        chunk_workers: chunks computed at once by the local thread pool.
        dask_scheduler: address of an existing Dask scheduler (tcp://host:port).
        dask_local: start a LocalCluster with this many worker processes.
        dask_retries: retries of a chunk task on Dask (a dead worker counts).
    """

    chunk_workers: int = 2
    dask_scheduler: str | None = None
    dask_local: int | None = None
    dask_retries: int = 3

    def __post_init__(self) -> None:
        if self.dask_scheduler and self.dask_local:
            raise ConfigError("give `dask_scheduler` or `dask_local`, not both")
        if self.chunk_workers < 1:
            raise ConfigError(f"chunk workers must be >= 1, got {self.chunk_workers}")
        if self.dask_local is not None and self.dask_local < 1:
            raise ConfigError(f"`dask_local` needs >= 1 worker, got {self.dask_local}")
        if self.uses_dask:
            _require_dask()

    @property
    def uses_dask(self) -> bool:
        """True when chunks run on Dask."""
        return bool(self.dask_scheduler or self.dask_local)


_NO_DASK = "Dask is not installed: pip install 'mosaic-assembler[dask]'"


def _require_dask() -> None:
    """Refuse a Dask run when the extra is missing, before anything is read or written."""
    try:
        import distributed  # noqa: F401
    except ImportError as e:
        raise ConfigError(_NO_DASK) from e


def run_chunks(
    spec: RunSpec,
    jobs: Sequence[ChunkJob],
    options: ExecutorOptions,
    on_submit: Callable[[str], None],
    on_result: Callable[[ChunkResult], None],
    on_tile: Callable[[str], None] | None = None,
    key_prefix: str = "chunk",
) -> None:
    """Compute the chunks, calling `on_result` in the driver as each one ends.

    Raises:
        whatever a chunk raised that is not a per-tile failure (configuration errors stop
        the run at once).
    """
    if not jobs:
        return
    if options.uses_dask:
        _run_dask(spec, jobs, options, on_submit, on_result, key_prefix)
    else:
        _run_threads(spec, jobs, options, on_submit, on_result, on_tile)


def _run_threads(
    spec: RunSpec,
    jobs: Sequence[ChunkJob],
    options: ExecutorOptions,
    on_submit: Callable[[str], None],
    on_result: Callable[[ChunkResult], None],
    on_tile: Callable[[str], None] | None,
) -> None:
    workers = min(options.chunk_workers, len(jobs))
    # the run's tile concurrency is shared between the chunks computed at once
    spec = replace(spec, concurrency=max(1, math.ceil(spec.concurrency / workers)))
    for _, fut in bounded_map(
        compute_chunk,
        ((spec, job, on_tile) for job in jobs),
        workers,
        workers,
        "chunk",
        on_submit=lambda job: on_submit(job[1].key),
    ):
        on_result(fut.result())


def dask_client(options: ExecutorOptions) -> Any:
    """A distributed Client for the options (starting a LocalCluster for dask_local)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise ConfigError(_NO_DASK) from e
    if options.dask_scheduler:
        try:
            return Client(options.dask_scheduler, timeout="20s")
        except OSError as e:
            raise ConfigError(
                f"cannot reach the Dask scheduler at {options.dask_scheduler}: {e}"
            ) from e
    cluster = LocalCluster(
        n_workers=options.dask_local,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )
    return Client(cluster)


def _run_dask(
    spec: RunSpec,
    jobs: Sequence[ChunkJob],
    options: ExecutorOptions,
    on_submit: Callable[[str], None],
    on_result: Callable[[ChunkResult], None],
    key_prefix: str,
) -> None:
    from distributed import as_completed

    client = dask_client(options)
    owns_cluster = options.dask_local is not None
    try:
        [spec_future] = client.scatter([spec], broadcast=True)
        futures = []
        for job in jobs:
            on_submit(job.key)
            futures.append(
                client.submit(
                    compute_chunk,
                    spec_future,
                    job,
                    key=f"{key_prefix}-{job.key}",
                    retries=options.dask_retries,
                    pure=False,
                )
            )
        try:
            for fut in as_completed(futures):
                on_result(fut.result())
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        if owns_cluster:
            cluster = client.cluster
            client.close()
            cluster.close()
        else:
            client.close()
