"""What the commands share: exit codes, the one-line error, logging, progress, printing."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mosaic_assembler._redact import REDACTING_FILTER

if TYPE_CHECKING:
    from mosaic_assembler.results import AssembleResult

EXIT_USAGE = 2
#: `click.Context.meta` key of the command line as typed (the STAC sidecar records it).
ARGV_KEY = "mosaic_assembler.argv"
EXIT_FAILED = 1


class RunError(click.ClickException):
    """An expected error of a run: one line, exit code 2 (bad input) or 1 (tiles failed)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class


@contextlib.contextmanager
def refused_imports(*names: str) -> Iterator[None]:
    """`import NAME` raises ImportError inside the block, for the names not yet imported.

    For a library's optional imports (`try: import x / except ImportError`) that a command
    does not need: they are allowed again after the block, so a later `import NAME` works.
    """
    refused = [m for m in names if m not in sys.modules]
    for m in refused:
        sys.modules[m] = None  # type: ignore[assignment]  # `import m` → ImportError
    try:
        yield
    finally:
        for m in refused:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]


_PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)`")


def flag_message(message: str, ctx: click.Context | None = None) -> str:
    """A core message for the command line: `parameter` names become the command's flags.

    The core names the parameters of `assemble()` (`pixel_selection`, `headers` …); a user of
    the CLI reads `--pixel-selection`, `--header`. Names that are not options of the command
    (e.g. `qa` in a mask expression) are left as they are.
    """
    ctx = ctx or click.get_current_context(silent=True)
    flags: dict[str, str] = {}
    for param in ctx.command.params if ctx else ():
        longs = [o for o in param.opts if o.startswith("--")]
        if param.name and longs:
            flags[param.name] = longs[0]
    return _PARAMETER.sub(lambda m: flags.get(m.group(1), m.group(0)), message)


#: The -v count of the running command (main() shows tracebacks from 2 on).
verbosity = 0


class _LevelFilter(logging.Filter):
    """Our records from `ours` up, other libraries' from `others` up.

    The gate is on the handler, not on the root logger's level, because libraries change
    that level when imported (cogeo-mosaic sets the root logger to INFO).
    """

    def __init__(self, ours: int, others: int):
        super().__init__()
        self.ours, self.others = ours, others

    def filter(self, record: logging.LogRecord) -> bool:
        mine = record.name == "mosaic_assembler" or record.name.startswith("mosaic_assembler.")
        return record.levelno >= (self.ours if mine else self.others)


def setup_logging(verbose: int, quiet: int) -> None:
    """Log to stderr: ours at WARNING, one step per -v (more) or -q (less).

    Other libraries log at WARNING (or quieter with -q) unless -v; urllib3 only from -vv.
    """
    global verbosity
    verbosity = verbose
    ours = max(logging.DEBUG, logging.WARNING - 10 * verbose + 10 * quiet)
    others = ours if verbose else max(ours, logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(_LevelFilter(ours, others))
    handler.addFilter(REDACTING_FILTER)  # secrets never reach stderr, whoever logs them
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(min(ours, others))
    logging.getLogger("mosaic_assembler").setLevel(ours)
    if verbose < 2:  # retries are reported by our own messages; urllib3's are noise
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    # Python warnings go through the same gate (-q silences them too) ...
    logging.captureWarnings(True)
    # ... but not rio-tiler's false alarm on STAC items that carry no band statistics at all
    warnings.filterwarnings(
        "ignore", message="Some statistics data in STAC are invalid", category=UserWarning
    )


def progress_bar(quiet: bool) -> Any:
    """A tqdm bar of tiles on stderr, or None."""
    if quiet:
        return None
    from tqdm import tqdm

    from mosaic_assembler.api import tqdm_progress

    # disable=None: no bar when stderr is not a terminal (logs, CI, pipes)
    return tqdm_progress(tqdm, file=sys.stderr, leave=False, disable=None)


def human(n: float) -> str:
    """A byte count for people (SI units)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def print_plan(r: AssembleResult) -> None:
    """The --dry-run plan."""
    click.echo(
        f"tiles:   {r.tiles_total} at zoom {r.zoom} ({r.tilesize} px), "
        f"{r.tiles_total - r.tiles_empty} with assets"
    )
    bands = f"{r.count} band(s) {r.dtype}" if r.count else "bands decided by the tiler"
    click.echo(f"output:  {r.width} x {r.height} px, {bands}, {r.crs}")
    click.echo("bounds:  " + ", ".join(f"{v:.3f}" for v in r.bounds))
    if r.count:
        click.echo(f"size:    {human(r.estimated_bytes)} uncompressed (estimated)")
    else:
        click.echo(f"size:    {human(r.width * r.height)} per byte of band data (estimated)")


def summary_line(r: AssembleResult) -> str:
    """The one line a successful run prints."""
    return (
        f"wrote {r.path}: {r.width} x {r.height} px, {r.count} x {r.dtype}; tiles: "
        f"{r.tiles_done} done, {r.tiles_empty} empty, {r.tiles_failed} failed; "
        f"{r.seconds.get('total', 0):.1f} s; {human(r.size_bytes)}"
    )
