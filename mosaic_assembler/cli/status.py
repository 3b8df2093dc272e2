"""`assemble-mosaic status RUN_DIR` and `assemble-mosaic demo OUT_DIR`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from mosaic_assembler.cli import options as o
from mosaic_assembler.cli._common import RunError, display_path, setup_logging
from mosaic_assembler.cli.assemble import execute
from mosaic_assembler.errors import MosaicAssemblerError


@click.command("status")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(run_dir: str, as_json: bool) -> None:
    """Progress of a run directory (a path or s3://bucket/prefix): chunks, tiles, ETA."""
    from mosaic_assembler.state import run_status

    try:
        st = run_status(run_dir if run_dir.startswith("s3://") else Path(run_dir))
    except MosaicAssemblerError as e:
        raise RunError(str(e)) from e
    if as_json:
        click.echo(json.dumps(st))
        return
    eta = st["eta_seconds"]
    click.echo(f"run:     {st['run_dir']} -> {st['output']}")
    click.echo(
        f"chunks:  {st['chunks_done']} done, {st['chunks_failed']} failed, "
        f"{st['chunks_pending']} pending of {st['chunks']}"
    )
    click.echo(
        f"tiles:   {st['tiles_done']} done, {st['tiles_empty']} empty, "
        f"{st['tiles_failed']} failed of {st['tiles']}"
    )
    click.echo("eta:     " + (f"{eta:.0f} s" if eta is not None else "unknown"))


@click.command("demo")
@click.argument("out_dir", type=click.Path(file_okay=False))
@o.pixel_selection_opt(default="median", template_may_decide=False)
@o.report
def demo_command(
    out_dir: str, pixel_selection: str, as_json: bool, verbose: int, quiet: int
) -> None:
    """Generate a synthetic multi-date sample in OUT_DIR and assemble a composite of it."""
    from mosaic_assembler.demo_data import make_demo_sample

    setup_logging(verbose, quiet)
    sample = make_demo_sample(out_dir)
    output = Path(out_dir) / f"{pixel_selection}.tif"
    bbox = " ".join(f"{v:.4f}" for v in sample.bbox)
    if not quiet and not as_json:
        items = display_path(sample.items_path)
        click.echo(
            f"sample: {items} ({len(sample.scene_paths)} scenes) and "
            f"{display_path(sample.mosaicjson_path)}",
            err=True,
        )
        click.echo(
            f"running: assemble-mosaic --bbox {bbox} --zoom {sample.zoom} --items {items} "
            f"--assets blue,green,red,nir08 --pixel-selection {pixel_selection} "
            f"--overwrite {output}",
            err=True,
        )
    execute(
        str(output), False, as_json, quiet, bbox=sample.bbox, zoom=sample.zoom,
        items=str(sample.items_path), assets="blue,green,red,nir08",
        pixel_selection=pixel_selection, overwrite=True,
    )  # fmt: skip
