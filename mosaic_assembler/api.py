"""mosaic_assembler.api: `assemble(...)`, the one function notebooks and the CLI call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import TilesFailedError
from mosaic_assembler.options import AssembleOptions, AssembleResult, Progress, build_options
from mosaic_assembler.pipeline import run

__all__ = [
    "AssembleOptions",
    "AssembleResult",
    "Progress",
    "TilesFailedError",
    "assemble",
    "build_options",
    "run",
]


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
        callback: Callable[[Progress], None] | None = tqdm_progress()
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


def tqdm_progress(tqdm: Any = None, **tqdm_kwargs: Any) -> Callable[[Progress], None]:
    """A progress callback drawing a tqdm bar of tiles (call `.close()` when done).

    Args:
        tqdm: the tqdm class (default `tqdm.auto.tqdm`, right for notebooks and terminals).
        **tqdm_kwargs: passed to it (file, leave, disable …).
    """
    if tqdm is None:
        from tqdm.auto import tqdm

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
