"""`assemble-mosaic tiles SRC OUT --zooms 5-12`: a static tile pyramid and its previewer."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from mosaic_assembler.cli import _params as o
from mosaic_assembler.cli._common import (
    RunError,
    flag_message,
    progress_bar,
    refused_imports,
    setup_logging,
)
from mosaic_assembler.errors import MosaicAssemblerError


def _tile_sized_malloc() -> None:
    """Give glibc back its large mmap threshold for this process (and the workers it forks).

    `cli.main` sets a 128 KB mmap threshold (bounded RSS for `assemble`'s threads). A tile
    renders through several arrays above that size (a 256-px RGB tile is 196 KB, its masked
    copies as many), so each would be a fresh mmap and munmap, page faults included:
    measured ~1.7 s of system time over the 779 tiles of bench_tiles.py --zooms 6-14. A
    32 MB threshold (glibc's dynamic maximum) reuses the heap; the workers are
    single-threaded and the parent only writes, so the memory stays flat. Skipped where
    there is no glibc, or when the user set MALLOC_* in the environment.
    """
    if sys.platform != "linux" or any(k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _may_touch_s3(src: str, out: str, options: dict[str, Any]) -> bool:
    """Whether rasterio may need its boto3 session in this run.

    An s3:// (or amazonaws.com) SRC or OUT does; so may a mosaic.json (its members may be
    on S3) and a Dask run (a local cluster's workers fork from here).
    """
    if options.get("dask_scheduler") or options.get("dask_local"):
        return True
    text = f"{src} {out}".lower()
    return "s3://" in text or "amazonaws.com" in text or not src.lower().endswith((".tif", ".tiff"))


def _import_rasterio_without_boto3() -> None:
    """Import rasterio and rio-tiler with boto3 refused, for a run that reads no S3.

    `rasterio.session` imports boto3 whenever it is installed (our s3 extra), to build AWS
    sessions for s3:// paths, and `rio_tiler.io.stac` to fetch STAC documents from S3: ~0.2 s
    of a ~2 s pyramid of a local COG, before the first tile. Both imports are optional there
    (`except ImportError`), so boto3 is refused while the two are imported and allowed
    again right after: a later `import boto3` works as usual (our S3 code imports it
    itself); rasterio alone keeps GDAL's own handling of AWS credentials for an s3:// path
    in this process. Nothing is done when rasterio or boto3 is already imported.
    """
    if "rasterio" in sys.modules:
        return
    with refused_imports("boto3"):
        import rasterio  # noqa: F401
        import rio_tiler.io  # noqa: F401


@click.command("tiles", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("out", type=click.Path())
@o.zooms_opt
@click.option(
    "--format",
    "img_format",
    type=click.Choice(["png", "webp", "jpeg"]),
    default="png",
    show_default=True,
    help="Tile image format.",
)
@o.bidx_opt
@o.rescale_opt
@o.colormap_opt
@o.tms_opt
@o.tilesize_choice(256)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="Tiles rendered at once, by worker processes (threads under 256 tiles) [default: CPUs].",
)
@o.dask
@click.option("--overwrite", is_flag=True, help="Render every tile again, even those there.")
@o.report
def tiles_command(
    src: str, out: str, as_json: bool, verbose: int, quiet: int, **options: Any
) -> None:
    """Render a tile pyramid of SRC (a COG or a split output's mosaic.json) into OUT.

    \b
    OUT is a directory ({z}/{x}/{y}.png, index.html opens from the file system) or a
    .pmtiles file (PMTiles v3, previewed by NAME.html through a static server with range
    requests: python -m mosaic_assembler.render.rangeserver DIR), or the same on S3:
    s3://bucket/prefix or s3://bucket/NAME.pmtiles. SRC may be s3:// too. A rerun skips
    the tiles already there.
    """
    if not _may_touch_s3(src, out, options):
        _import_rasterio_without_boto3()
    from mosaic_assembler.render import render_tiles

    _tile_sized_malloc()
    setup_logging(verbose, quiet)
    bar = progress_bar(bool(quiet) or as_json)
    try:
        result = render_tiles(src, out, progress=bar, **options)
    except MosaicAssemblerError as e:
        raise RunError(flag_message(str(e))) from e
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        doc = {k: str(v) if isinstance(v, Path) else v for k, v in vars(result).items()}
        click.echo(json.dumps(doc))
        return
    if quiet:
        return
    zmin, zmax = result.zooms
    click.echo(
        f"wrote {result.path}: {result.tiles_written} tiles written, {result.tiles_skipped} "
        f"skipped (already there), {result.tiles_empty} empty, zooms {zmin}-{zmax}; "
        f"{result.seconds:.1f} s",
        err=True,
    )
    if result.previewer is None:
        return
    if str(result.path).startswith("s3://"):
        click.echo(
            f"preview: {result.previewer} (serve the bucket over HTTP, or copy the prefix "
            "and open it from the file system)",
            err=True,
        )
    elif str(result.path).lower().endswith(".pmtiles"):
        folder = Path(result.previewer).parent
        click.echo(
            f"preview: python -m mosaic_assembler.render.rangeserver {folder} (or any static "
            f"server with range requests), then open "
            f"http://127.0.0.1:8000/{Path(result.previewer).name}",
            err=True,
        )
    else:
        click.echo(f"preview: open {result.previewer} (no server needed)", err=True)
