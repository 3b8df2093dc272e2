"""assemble-mosaic: the command line. Thin: parse → `assemble()` → print.

One module per verb (`assemble`, `status`, `demo`); the options they share are declared once
in `cli.options`. Nothing below the CLI imports click or prints.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import traceback
import types
from typing import Any

import click

from mosaic_assembler import __version__
from mosaic_assembler.cli import _common
from mosaic_assembler.cli._common import ARGV_KEY, EXIT_FAILED, RunError

__all__ = ["RunError", "cli", "main"]

#: Each command and where it is defined. A command's module is imported when the command
#: runs (or --help lists the commands), so `tiles` starts without the modules of `assemble`
#: (the pipeline, the COG writer, the STAC client: ~0.45 s of a ~2 s pyramid run).
COMMANDS = {
    "assemble": "mosaic_assembler.cli.assemble:assemble_command",
    "status": "mosaic_assembler.cli.status:status_command",
    "demo": "mosaic_assembler.cli.status:demo_command",
    "serve": "mosaic_assembler.cli.serve:serve_command",
    "tiles": "mosaic_assembler.cli.tiles:tiles_command",
    "batch": "mosaic_assembler.cli.batch:batch_command",
    "chips": "mosaic_assembler.cli.chips:chips_command",
}


class DefaultCommandGroup(click.Group):
    """Commands imported when they run; the default runs when no command is named.

    Click's "lazy loading of subcommands" pattern: `COMMANDS` names each command's module.
    """

    default_command = "assemble"

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: D102
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: D102
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        if cmd_name not in self.commands:
            module, _, attr = COMMANDS[cmd_name].partition(":")
            self.commands[cmd_name] = getattr(importlib.import_module(module), attr)
        return self.commands[cmd_name]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:  # noqa: D102
        if args and args[0] not in COMMANDS and args[0] not in self.commands:
            if args[0] not in ("-h", "--help", "--version"):
                args = [self.default_command, *args]
        ctx.meta[ARGV_KEY] = ("assemble-mosaic", *args)  # the STAC sidecar records it
        return super().parse_args(ctx, args)


@click.group(cls=DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version")
def cli() -> None:
    """Assemble a Cloud Optimized GeoTIFF from imagery over an area of interest.

    \b
    assemble-mosaic --bbox W S E N --zoom Z --mosaicjson m.json OUT.tif
    assemble-mosaic --aoi area.geojson --zoom Z --items items.json --assets red,green,blue OUT.tif
    assemble-mosaic demo OUT_DIR
    """


def _return_freed_memory() -> None:
    """Have glibc give large freed blocks back to the system (this process only).

    Tiles are ~1-6 MB arrays allocated and freed by several threads; glibc raises its mmap
    threshold after the first frees and then keeps such blocks in per-thread heaps, so the
    peak RSS grew with the number of tiles read (bench_memory: 258 MB at 16 tiles, 362 MB at
    256). A fixed 128 KB threshold (what MALLOC_MMAP_THRESHOLD_ would set) keeps it flat
    (228 / 284 MB) for ~5 % more wall time. Skipped where there is no glibc, or when the user
    set the thresholds in the environment.
    """
    if sys.platform != "linux" or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


class _RioTilerWithoutXarray(importlib.abc.MetaPathFinder):
    """Loads `rio_tiler.io.xarray` with xarray and rioxarray refused (this process only).

    `rio_tiler.io` imports `rio_tiler.io.xarray`, which imports xarray and rioxarray when
    they are installed (odc-stac and titiler-xarray bring them): pandas, dask.array and
    ~100 modules more, ~0.7 s and ~55 MB (tiles bench: 291 -> 237 MB peak) before the
    first tile of every command, for a reader this tool never uses. Both imports are
    optional there (`except ImportError`), so they are refused while that one module
    executes and allowed again right after: a later `import xarray` works as usual; only
    rio-tiler's `XarrayReader` is left without it.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "rio_tiler.io.xarray":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            with _common.refused_imports("xarray", "rioxarray"):
                run(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line on stderr and a non-zero exit for every expected error."""
    _return_freed_memory()
    # The last thing before the interpreter tears down: the collector would otherwise walk
    # every object of the ~1,000 imported modules again (~0.3 s of a ~2 s `tiles` run);
    # the memory goes back to the system with the process anyway. atexit's other handlers
    # (registered later, run earlier) still run first.
    atexit.unregister(gc.freeze)  # once, however often main() runs in this process
    atexit.register(gc.freeze)
    if "rio_tiler.io" not in sys.modules:
        sys.meta_path.insert(0, _RioTilerWithoutXarray())
    try:
        cli.main(args=argv, prog_name="assemble-mosaic", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"Error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted; no output written.", err=True)
        sys.exit(130)
    except Exception as e:  # a bug or an unexpected environment: still one line
        if _common.verbosity >= 2:
            traceback.print_exc()
        click.echo(
            f"Error: unexpected {type(e).__name__}: {e} (run with -vv for a traceback)", err=True
        )
        sys.exit(EXIT_FAILED)
    sys.exit(0)
