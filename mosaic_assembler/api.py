"""mosaic_assembler.api: `assemble(...)`, the one entry point of notebooks and the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from typing_extensions import Unpack

from mosaic_assembler.errors import ConfigError, TilesFailedError
from mosaic_assembler.options import (
    AssembleKwargs,
    AssembleOptions,
    AssembleResult,
    Progress,
    build_options,
)
from mosaic_assembler.pipeline import run
from mosaic_assembler.storage import is_s3

__all__ = [
    "AssembleKwargs",
    "AssembleOptions",
    "AssembleResult",
    "Progress",
    "TilesFailedError",
    "assemble",
    "build_options",
    "run",
    "tqdm_progress",
]


def assemble(
    output: str | Path,
    options: AssembleOptions | None = None,
    *,
    progress: bool | Callable[[Progress], None] | None = True,
    dry_run: bool = False,
    **kwargs: Unpack[AssembleKwargs],
) -> AssembleResult:
    """Assemble a COG of `output` from a source over an AOI.

    Args:
        output: path of the COG to write (appears atomically when the run succeeds).
        options: a ready `AssembleOptions`; or give the options as keyword arguments.
        progress: True for a tqdm.auto bar, False for none, or a callback given a
            `Progress` after every tile.
        dry_run: plan only: no tile is read and nothing is written.
        **kwargs: the run's options, flat (`AssembleKwargs` lists them: one per CLI option,
            `--pixel-selection` is `pixel_selection`); `zoom` and a source are required.

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
    if options is not None and kwargs:
        raise ConfigError("give an AssembleOptions or keyword arguments, not both")
    opts = options if options is not None else build_options(**kwargs)
    callback: Callable[[Progress], None] | None
    if progress is True:
        callback = tqdm_progress()
    elif progress is False or progress is None:
        callback = None
    else:
        callback = progress
    try:
        target = str(output) if is_s3(output) else Path(output)
        return run(target, opts, progress=callback, dry_run=dry_run)
    finally:
        close = getattr(callback, "close", None)
        if close is not None:
            close()


def tqdm_progress(tqdm: Any = None, **tqdm_kwargs: Any) -> Callable[[Progress], None]:
    """A progress callback drawing a tqdm bar of tiles (call `.close()` when done).

    Args:
        tqdm: the tqdm class (default `tqdm.auto.tqdm`, right for notebooks and terminals).
        **tqdm_kwargs: passed to it (file, leave, disable …).
    """
    if tqdm is None:
        from tqdm.auto import tqdm as tqdm_auto

        tqdm = tqdm_auto

    bar: Any = None

    def update(p: Progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, unit="tile", desc="tiles", **tqdm_kwargs)
        bar.n = p.done + p.empty + p.failed
        bar.set_postfix(empty=p.empty, failed=p.failed, refresh=False)
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    update.close = close  # type: ignore[attr-defined]
    return update
