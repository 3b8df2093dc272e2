"""`bounded_map`: a thread pool with a bound on the jobs in flight (standard library only).

Used by the chunk reader (`chunks`, which re-exports it), the batch runner and `tiles`'
thread path; apart so that `tiles` loads it without the pipeline's modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any


def bounded_map(
    fn: Callable[..., Any],
    jobs: Iterable[tuple[Any, ...]],
    workers: int,
    limit: int,
    name: str,
    on_submit: Callable[[tuple[Any, ...]], None] | None = None,
) -> Iterator[tuple[tuple[Any, ...], Future]]:
    """Run fn(*job) in a thread pool; yield (job, finished future) as each one finishes.

    At most `limit` jobs are in flight (memory stays bounded whatever the number of jobs).
    When the consumer stops early or raises, pending jobs are cancelled.
    """
    pending: dict[Future, tuple[Any, ...]] = {}
    it = iter(jobs)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        while True:
            while len(pending) < limit:
                job = next(it, None)
                if job is None:
                    break
                if on_submit is not None:
                    on_submit(job)
                pending[pool.submit(fn, *job)] = job
            if not pending:
                return
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                yield pending.pop(fut), fut
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
