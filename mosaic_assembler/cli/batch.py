"""`assemble-mosaic batch FEATURES OUT_DIR --id-field NAME …`: one COG per feature."""

from __future__ import annotations

import sys
from typing import Any

import click

from mosaic_assembler.cli import options as o
from mosaic_assembler.cli._common import (
    EXIT_FAILED,
    RunError,
    display_path,
    flag_message,
    setup_logging,
)
from mosaic_assembler.errors import MosaicAssemblerError

#: The core's names of the command's arguments (flags are mapped by `flag_message`).
_ARGUMENTS = {"`features`": "FEATURES", "`out_dir`": "OUT_DIR"}


def _message(text: str) -> str:
    for name, shown in _ARGUMENTS.items():
        text = text.replace(name, shown)
    return flag_message(text)


def feature_bar(quiet: bool) -> Any:
    """A tqdm bar of features on stderr (a `BatchProgress` callback with `.close()`), or None."""
    if quiet:
        return None
    from tqdm import tqdm

    bar: Any = None

    def update(p: Any) -> None:
        nonlocal bar
        if bar is None:  # disable=None: no bar when stderr is not a terminal
            bar = tqdm(total=p.total, unit="feature", desc="features", file=sys.stderr,
                       leave=False, disable=None)  # fmt: skip
        bar.n = p.done + p.empty + p.failed
        bar.set_postfix(empty=p.empty, failed=p.failed, skipped=p.skipped, refresh=False)
        bar.refresh()

    def close() -> None:
        if bar is not None:
            bar.close()

    update.close = close  # type: ignore[attr-defined]
    return update


@click.command("batch", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("features", type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--id-field",
    required=True,
    metavar="NAME",
    help="Attribute naming each feature's COG, OUT_DIR/<id>.tif (sanitised, made unique).",
)
@click.option(
    "--wkt-field",
    metavar="NAME",
    help="CSV FEATURES: the column of each polygon's WKT, in lon/lat [default: WKT, then "
    "geometry].",
)
@click.option("--layer", metavar="NAME", help="Layer of a multi-layer FEATURES [default: first].")
@click.option(
    "--feature-workers",
    type=click.IntRange(min=1),
    help="Features computed at once, in threads [default: 1]. With --dask-local or "
    "--dask-scheduler each feature is a Dask task instead.",
)
@o.grid
@o.output_grid
@o.sources
@o.tiler
@o.pixels
@o.clip_opt
@o.visual
@o.cog
@o.output
@o.execution
@o.report
def batch_command(
    features: str,
    out_dir: str,
    id_field: str,
    wkt_field: str | None,
    layer: str | None,
    feature_workers: int | None,
    verbose: int,
    quiet: int,
    as_json: bool,
    **options: Any,
) -> None:
    """One COG per polygon of FEATURES (GeoJSON, GeoPackage, Shapefile, CSV with WKT).

    \b
    Writes OUT_DIR/<id>.tif per feature (the feature is its AOI; --clip masks outside it),
    OUT_DIR/ledger.jsonl (done / empty / failed per feature: a rerun skips finished ones),
    OUT_DIR/index.json (a STAC ItemCollection of the COGs) and OUT_DIR/mosaic.json.
    --run-dir is the parent of the features' run directories [default: OUT_DIR/.runs].
    OUT_DIR may be an s3://bucket/prefix (the ledger is then OUT_DIR/ledger/, one object
    per event).
    Exit code 1 when a feature failed (the others are still written).
    """
    setup_logging(verbose, quiet)
    from mosaic_assembler.batch import assemble_batch

    bar = feature_bar(bool(quiet) or as_json)
    try:
        result = assemble_batch(
            features, out_dir, id_field=id_field, wkt_field=wkt_field, layer=layer,
            feature_workers=feature_workers, progress=bar, **options,
        )  # fmt: skip
    except MosaicAssemblerError as e:
        raise RunError(_message(str(e))) from e
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(result.to_json())
    elif not quiet:
        _print_summary(result)
    if result.failed:
        ids = ", ".join(f.id for f in result.failed[:5]) + (" …" if len(result.failed) > 5 else "")
        raise RunError(
            f"{len(result.failed)} of {len(result.features)} feature(s) failed ({ids}); the "
            "others are written; re-run the same command to retry the failed ones",
            EXIT_FAILED,
        )


def _print_summary(r: Any) -> None:
    """The batch's lines on stderr: the counts, what was written, then each failure."""
    written = [_show(p) for p in (r.index, r.mosaicjson) if p is not None]
    skipped = f" ({len(r.skipped)} finished before, skipped)" if r.skipped else ""
    click.echo(
        f"batch {_show(r.out_dir)}: {len(r.features)} features: {len(r.done)} done, "
        f"{len(r.empty)} empty, {len(r.failed)} failed{skipped}; wrote "
        f"{', '.join(written) or 'no index'}; {r.seconds:.1f} s",
        err=True,
    )
    for f in r.failed:
        click.echo(f"failed: {f.id}: {_message(f.message)}", err=True)


def _show(path: Any) -> str:
    """A local path relative to the working directory, or an s3:// URL as it is."""
    return path if isinstance(path, str) and "://" in path else display_path(path)
