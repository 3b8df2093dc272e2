"""`assemble-mosaic [assemble] OUTPUT …`: the main command."""

from __future__ import annotations

from typing import Any

import click

from mosaic_assembler.cli import options as o
from mosaic_assembler.cli._common import (
    ARGV_KEY,
    EXIT_FAILED,
    RunError,
    flag_message,
    print_plan,
    progress_bar,
    setup_logging,
    summary_line,
)
from mosaic_assembler.errors import MosaicAssemblerError, TilesFailedError


def execute(output: str, dry_run: bool, as_json: bool, quiet: int, **options: Any) -> None:
    """Run `assemble()` and print its result (or its error as a RunError)."""
    from mosaic_assembler.api import assemble

    bar = progress_bar(bool(quiet) or dry_run or as_json)
    try:
        result = assemble(output, progress=bar, dry_run=dry_run, **options)
    except TilesFailedError as e:
        raise RunError(flag_message(str(e)), EXIT_FAILED) from e
    except MosaicAssemblerError as e:
        raise RunError(flag_message(str(e))) from e
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(result.to_json())
    elif dry_run:
        print_plan(result)
    elif result.path is None:
        click.echo("the AOI intersects no asset: nothing written", err=True)
    elif not quiet:
        click.echo(summary_line(result), err=True)
        if result.tiles_failed:
            click.echo(f"warning: {result.tiles_failed} tile(s) failed and are masked", err=True)


@click.command("assemble", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("output", type=click.Path())
@o.area
@o.grid
@o.output_grid
@o.sources
@o.tiler
@o.pixels
@o.clip_opt
@o.visual
@o.cog
@o.output
@click.option("--dry-run", is_flag=True, help="Print the plan and exit.")
@o.execution
@o.report
def assemble_command(
    output: str, verbose: int, quiet: int, dry_run: bool, as_json: bool, **options: Any
) -> None:
    """Assemble OUTPUT (a COG) from a mosaicJSON, STAC items or a dynamic tiler over an AOI."""
    setup_logging(verbose, quiet)
    options["provenance"] = options.get("provenance") or None
    options["command"] = click.get_current_context().meta.get(ARGV_KEY, ())
    execute(output, dry_run, as_json, quiet, **options)
