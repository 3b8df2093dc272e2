"""`assemble-mosaic chips POINTS OUT_DIR …`: per-plot, per-date chips and their values."""

from __future__ import annotations

import sys
from typing import Any

import click

from mosaic_assembler.chips._items import GROUP_BY
from mosaic_assembler.cli import options as o
from mosaic_assembler.cli._common import EXIT_FAILED, RunError, flag_message, setup_logging

_ARGUMENTS = {"`out_dir`": "OUT_DIR", "`points`": "POINTS"}


def _message(e: Exception) -> str:
    text = flag_message(str(e))
    for name, shown in _ARGUMENTS.items():
        text = text.replace(name, shown)
    return text


def _bar(quiet: bool) -> Any:
    """A tqdm bar of points on stderr (none when stderr is not a terminal), or None."""
    if quiet:
        return None
    from tqdm import tqdm

    bar: Any = None

    def update(p: Any) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=p.total, unit="point", desc="points", file=sys.stderr,
                       leave=False, disable=None)  # fmt: skip
        bar.n = p.done + p.empty + p.failed
        bar.set_postfix(empty=p.empty, failed=p.failed, refresh=False)
        bar.refresh()

    update.close = lambda: bar.close() if bar is not None else None  # type: ignore[attr-defined]
    return update


@click.command("chips", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("points", type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--size", type=click.IntRange(1, 4096), default=255, show_default=True,
              help="Chip side in pixels, centred on the point's pixel.")  # fmt: skip
@o.item_sources
@click.option("--id-fields", metavar="A[,B]",
              help="Id column(s) of POINTS [default: every column but x/y].")  # fmt: skip
@click.option("--points-crs", default="EPSG:4326", show_default=True, help="CRS of x/y.")
@o.mask
@click.option("--group-by", type=click.Choice(GROUP_BY), default="item", show_default=True,
              help="One observation per item, or per local solar day (scenes fused "
              "first-valid in item order).")  # fmt: skip
@click.option("--composite", "composites", multiple=True, metavar="NAME[=E,E,E:MIN-MAX,...]",
              help="8-bit PNG per chip: b432, b743, tcap (the seed's stretches), or "
              "NAME=EXPR,EXPR,EXPR:MIN-MAX[,MIN-MAX,MIN-MAX] (repeatable).")  # fmt: skip
@click.option("--rescale-c1", is_flag=True,
              help="Values and composites in Landsat Collection 1 units: "
              "int16((v * 2.75e-05 - 0.2) * 10000), on every asset but the mask band "
              "(values.csv says so in its rescale column).")  # fmt: skip
@click.option("--batch-points", type=click.IntRange(min=1), default=32, show_default=True,
              help="Points per task (one thread's or Dask worker's unit of work).")  # fmt: skip
@click.option("--concurrency", type=click.IntRange(min=1), default=2, show_default=True,
              help="Tasks run at once in this process.")  # fmt: skip
@click.option("--config", "gdal_config", multiple=True, type=o.KeyValueType(),
              callback=lambda ctx, param, value: dict(value),
              help="GDAL config option NAME=VALUE (repeatable).")  # fmt: skip
@click.option("--restart", is_flag=True, help="Forget the ledger of OUT_DIR; redo every point.")
@o.dask
@o.report
def chips_command(
    points: str, out_dir: str, rescale_c1: bool, verbose: int, quiet: int, as_json: bool,
    **options: Any,
) -> None:  # fmt: skip
    """Chips at POINTS (CSV id(s),x,y or GeoJSON) for every observation, into OUT_DIR.

    \b
    OUT_DIR/chips/<point>/<date>_<item>.tif   the chip (one band per asset, with its mask)
    OUT_DIR/<composite>/<point>/<date>_<item>.png
    OUT_DIR/values.csv                        one row per point x observation
    OUT_DIR/ledger.jsonl                      a rerun skips the finished points
    """
    from mosaic_assembler.chips import extract_chips
    from mosaic_assembler.errors import MosaicAssemblerError

    setup_logging(verbose, quiet)
    bar = _bar(bool(quiet) or as_json)
    try:
        r = extract_chips(points, out_dir, rescale="c1" if rescale_c1 else "none",
                          progress=bar, **options)  # fmt: skip
    except MosaicAssemblerError as e:
        raise RunError(_message(e)) from e
    finally:
        if bar is not None:
            bar.close()
    _report(r, as_json, quiet)


def _report(r: Any, as_json: bool, quiet: int) -> None:
    if as_json:
        import dataclasses
        import json

        click.echo(json.dumps(dataclasses.asdict(r), default=str))
    elif not quiet:
        click.echo(
            f"wrote {r.values_path}: {r.rows} rows; points: {r.done} done, {r.empty} empty, "
            f"{r.failed} failed, {r.skipped} finished before; {r.reads['opens']} opens, "
            f"{r.reads['reads']} reads; {r.seconds:.1f} s",
            err=True,
        )
    for key, message in r.failures:
        click.echo(f"failed: {key}: {message}", err=True)
    if r.failed:
        raise RunError(f"{r.failed} point(s) failed; rerun to retry them", EXIT_FAILED)
