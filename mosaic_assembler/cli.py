"""assemble-mosaic: the command line. Thin: parse → options → `api.run`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from mosaic_assembler import __version__
from mosaic_assembler.api import tqdm_progress
from mosaic_assembler.errors import MosaicAssemblerError, TilesFailedError
from mosaic_assembler.options import AssembleResult, build_options
from mosaic_assembler.pipeline import run
from mosaic_assembler.tilers._base import (
    PIXEL_SELECTION_HELP,
    RESAMPLING_METHODS,
    check_pixel_selection,
)
from mosaic_assembler.writer import COG_PROFILES, OVERVIEW_RESAMPLINGS

EXIT_USAGE = 2
EXIT_FAILED = 1


class BidxParamType(click.ParamType):
    """Comma-separated 1-based band indexes, e.g. `1,2,3`."""

    name = "bidx"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, ...]:  # noqa: D102
        if isinstance(value, tuple):
            return value
        try:
            out = tuple(int(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of band indexes", param, ctx)
        if not out or any(v < 1 for v in out):
            self.fail(f"band indexes are 1-based, got {value!r}", param, ctx)
        return out


class MethodType(click.ParamType):
    """A pixel-selection method name (a registry name or p1..p99)."""

    name = "METHOD"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:  # noqa: D102
        try:
            return check_pixel_selection(str(value))
        except MosaicAssemblerError as e:
            self.fail(str(e), param, ctx)


class KeyValueType(click.ParamType):
    """NAME=VALUE (for --co and --config)."""

    name = "NAME=VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:  # noqa: D102
        if isinstance(value, tuple):
            return value
        name, sep, val = str(value).partition("=")
        if not sep or not name:
            self.fail(f"{value!r} is not NAME=VALUE", param, ctx)
        return name.strip(), val


class DefaultCommandGroup(click.Group):
    """A group whose default command runs when the first argument is not a subcommand."""

    default_command = "assemble"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:  # noqa: D102
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help", "--version"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


class RunError(click.ClickException):
    """An expected error of a run: one line, exit code 2 (bad input) or 1 (tiles failed)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


def _setup_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    logging.basicConfig(
        level=max(logging.DEBUG, level),
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if verbose < 2:  # retries are reported by our own messages; urllib3's are noise
        logging.getLogger("urllib3").setLevel(logging.ERROR)


def _progress_bar(quiet: bool) -> Any:
    if quiet:
        return None
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI, pipes)
    return tqdm_progress(tqdm, file=sys.stderr, leave=False, disable=None)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def _print_plan(r: AssembleResult) -> None:
    click.echo(
        f"tiles:   {r.tiles_total} at zoom {r.zoom} ({r.tilesize} px), "
        f"{r.tiles_total - r.tiles_empty} with assets"
    )
    bands = f"{r.count} band(s) {r.dtype}" if r.count else "bands decided by the tiler"
    click.echo(f"output:  {r.width} x {r.height} px, {bands}, EPSG:3857")
    click.echo("bounds:  " + ", ".join(f"{v:.3f}" for v in r.bounds))
    if r.count:
        click.echo(f"size:    {_human(r.estimated_bytes)} uncompressed (estimated)")
    else:
        click.echo(f"size:    {_human(r.width * r.height)} per byte of band data (estimated)")


def _summary_line(r: AssembleResult) -> str:
    return (
        f"wrote {r.path}: {r.width} x {r.height} px, {r.count} x {r.dtype}; tiles: "
        f"{r.tiles_done} done, {r.tiles_empty} empty, {r.tiles_failed} failed; "
        f"{r.seconds.get('total', 0):.1f} s; {_human(r.size_bytes)}"
    )


def _execute(output: str, dry_run: bool, as_json: bool, quiet: int, **options: Any) -> None:
    bar = _progress_bar(bool(quiet) or dry_run or as_json)
    try:
        result = run(Path(output), build_options(**options), progress=bar, dry_run=dry_run)
    except TilesFailedError as e:
        raise RunError(str(e), EXIT_FAILED) from e
    except MosaicAssemblerError as e:
        raise RunError(str(e)) from e
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(result.to_json())
    elif dry_run:
        _print_plan(result)
    elif result.path is None:
        click.echo("the AOI intersects no asset: nothing written", err=True)
    elif not quiet:
        click.echo(_summary_line(result), err=True)
        if result.tiles_failed:
            click.echo(f"warning: {result.tiles_failed} tile(s) failed and are masked", err=True)


source_options = [
    click.option("--mosaicjson", type=click.Path(dir_okay=False), help="mosaicJSON file."),
    click.option(
        "--items",
        type=click.Path(dir_okay=False),
        help="STAC ItemCollection / FeatureCollection JSON file.",
    ),
    click.option("--stac", metavar="URL", help="Search a STAC API (the AOI is the geometry)."),
    click.option("--collections", metavar="C[,C2]", help="STAC collections to search."),
    click.option("--datetime", metavar="INTERVAL", help="e.g. 2019-04-01/2019-09-30."),
    click.option(
        "--query",
        multiple=True,
        metavar="COND",
        help="Query-extension condition, e.g. 'eo:cloud_cover<5' (repeatable).",
    ),
    click.option("--filter", metavar="CQL2", help="CQL2 filter, text or JSON."),
    click.option("--max-items", type=click.IntRange(min=1), help="Keep at most N items."),
    click.option(
        "--seasons",
        metavar="S[,S2]",
        help="Keep items whose month is in these meteorological seasons of their "
        "hemisphere (spring,summer,autumn,winter).",
    ),
    click.option(
        "--sort-by",
        metavar="FIELD",
        help="Item order for the selection, '-' for descending (e.g. eo:cloud_cover).",
    ),
    click.option(
        "--save-mosaicjson",
        type=click.Path(dir_okay=False),
        help="Also write the search as a mosaicJSON (+ items) to rerun without the API.",
    ),
    click.option(
        "--mosaicjson-asset",
        metavar="KEY",
        help="Asset whose href --save-mosaicjson lists (default: item files).",
    ),
    click.option("--assets", help="Asset keys to read from each STAC item, e.g. red,green,blue."),
]


def _apply(options: list) -> Any:
    def deco(f: Any) -> Any:
        for o in reversed(options):
            f = o(f)
        return f

    return deco


@click.group(cls=DefaultCommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version")
def cli() -> None:
    """Assemble a Cloud Optimized GeoTIFF from imagery over an area of interest.

    \b
    assemble-mosaic --bbox W S E N --zoom Z --mosaicjson m.json OUT.tif
    assemble-mosaic --aoi area.geojson --zoom Z --items items.json --assets red,green,blue OUT.tif
    assemble-mosaic demo OUT_DIR
    """


@cli.command("assemble", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("output", type=click.Path())
@click.option(
    "--bbox",
    nargs=4,
    type=float,
    metavar="W S E N",
    help="AOI in lon/lat; W > E crosses the antimeridian.",
)
@click.option(
    "--aoi",
    metavar="FILE",
    help="GeoJSON (Multi)Polygon/Feature/FeatureCollection; '-' reads stdin.",
)
@click.option("--zoom", "-z", type=int, required=True, help="WebMercatorQuad zoom (0-24).")
@click.option("--tilesize", type=click.Choice(["256", "512"]), default="512", show_default=True)
@_apply(source_options)
@click.option(
    "--tiler",
    metavar="URL_TEMPLATE",
    help="Fetch tiles from a dynamic tiler: URL with {z}, {x}, {y} (e.g. TiTiler's "
    ".../mosaicjson/tiles/WebMercatorQuad/{z}/{x}/{y}.tif?url=m.json), or "
    "titiler-pgstac:URL to register the --stac search there.",
)
@click.option(
    "--tiler-param",
    "tiler_params",
    multiple=True,
    type=KeyValueType(),
    help="Extra query parameter KEY=VALUE for --tiler (repeatable).",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    type=KeyValueType(),
    help="HTTP header KEY=VALUE for --tiler (repeatable); ${NAME} expands from the "
    "environment. Never printed.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Retries per tile for 429/5xx/timeouts.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=120.0,
    show_default=True,
    help="Read timeout per tile request, seconds.",
)
@click.option(
    "--pixel-selection",
    type=MethodType(),
    default="first",
    show_default=True,
    help=f"Pixel-selection method: {PIXEL_SELECTION_HELP}.",
)
@click.option(
    "--mask-band",
    metavar="ASSET_OR_BIDX",
    help="Quality band: a STAC asset key (e.g. qa_pixel, scl) or a band index of each "
    "COG; flagged observations are excluded before selection.",
)
@click.option(
    "--mask-bits",
    metavar="KIND[:NAME,...]",
    help="What --mask-band flags: 'landsat' (Collection 2 QA_PIXEL: fill, "
    "dilated_cloud, cirrus, cloud, cloud_shadow, snow) or 'scl' (Sentinel-2 L2A "
    "classes: no_data, saturated, cloud_shadow, cloud_medium, cloud_high, cirrus, "
    "snow), optionally with your own list, e.g. landsat:cloud,cloud_shadow.",
)
@click.option(
    "--mask-expression",
    metavar="EXPR",
    help="Raw exclusion test on the quality band `qa`, e.g. '(qa & 0b11000) > 0'.",
)
@click.option("--bidx", type=BidxParamType(), help="Band indexes, e.g. 1,2,3.")
@click.option("--expression", help="rio-tiler band math, e.g. 'b1,b2,(b4-b3)/(b4+b3)'.")
@click.option(
    "--resampling",
    type=click.Choice(list(RESAMPLING_METHODS)),
    default="nearest",
    show_default=True,
)
@click.option("--clip", is_flag=True, help="Mask pixels outside the AOI polygon.")
@click.option(
    "--rescale",
    multiple=True,
    metavar="MIN,MAX",
    help="Visual output: map MIN..MAX to 0..255 uint8 (once for all bands, or once "
    "per band). Never for analysis.",
)
@click.option(
    "--color-ops",
    metavar="OPS",
    help="Visual output: rio-color operations on RGB after --rescale, e.g. "
    "'gamma RGB 3.5, saturation 1.7, sigmoidal RGB 15 0.35'.",
)
@click.option(
    "--cog-profile",
    type=click.Choice(list(COG_PROFILES)),
    default="deflate",
    show_default=True,
    help="deflate/zstd/lzw for analytic data; webp/jpeg for uint8 visual output.",
)
@click.option(
    "--co",
    "creation_options",
    multiple=True,
    type=KeyValueType(),
    help="COG creation option NAME=VALUE (repeatable).",
)
@click.option(
    "--config",
    "gdal_config",
    multiple=True,
    type=KeyValueType(),
    help="GDAL config option NAME=VALUE (repeatable).",
)
@click.option(
    "--overview-resampling",
    type=click.Choice(list(OVERVIEW_RESAMPLINGS)),
    default="nearest",
    show_default=True,
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.option("--dry-run", is_flag=True, help="Print the plan and exit.")
@click.option("--allow-empty", is_flag=True, help="Succeed when the AOI intersects no asset.")
@click.option("--allow-partial", is_flag=True, help="Write the COG with failed tiles masked.")
@click.option(
    "--max-pixels",
    type=float,
    default=1e10,
    show_default=True,
    help="Refuse outputs larger than this (width x height).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    help="Tiles read in parallel [default in-process: CPUs for local files, "
    "4 x CPUs for remote ones; 16 with --tiler].",
)
@click.option(
    "--chunk-tiles",
    type=click.IntRange(min=1),
    help="Chunk side in tiles (unit of work and resume) [default: 4096 px / tilesize].",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    help="Run directory for chunks and the manifest [default: OUTPUT.run].",
)
@click.option("--keep-run-dir", is_flag=True, help="Keep the run directory after success.")
@click.option("--restart", is_flag=True, help="Discard an existing run directory.")
@click.option(
    "--split-zoom",
    type=click.IntRange(0, 24),
    help="Write OUTPUT as a directory of one COG per zoom-Z quadkey, with "
    "mosaic.json and items.json.",
)
@click.option(
    "--dask-scheduler",
    metavar="tcp://HOST:PORT",
    help="Run chunks on an existing Dask cluster (shared run directory needed).",
)
@click.option(
    "--dask-local",
    type=click.IntRange(min=1),
    metavar="N",
    help="Run chunks on a local Dask cluster of N worker processes.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-v", "--verbose", count=True)
@click.option("-q", "--quiet", count=True)
def assemble_command(
    output: str,
    aoi: str | None,
    tilesize: str,
    bidx: Any,
    creation_options: tuple,
    gdal_config: tuple,
    tiler_params: tuple,
    headers: tuple,
    verbose: int,
    quiet: int,
    dry_run: bool,
    as_json: bool,
    **kwargs: Any,
) -> None:
    """Assemble OUTPUT (a COG) from a mosaicJSON, STAC items or a dynamic tiler over an AOI."""
    _setup_logging(verbose, quiet)
    aoi_value: Any = aoi
    if aoi == "-":
        aoi_value = click.get_text_stream("stdin").read()
        if not aoi_value.strip():
            raise click.BadParameter("stdin is empty", param_hint="--aoi")
    if not kwargs["bbox"]:
        kwargs["bbox"] = None
    ctx = click.get_current_context()
    if ctx.get_parameter_source("pixel_selection") is click.core.ParameterSource.DEFAULT:
        kwargs["pixel_selection"] = None  # a --tiler template's pixel_selection may decide
    _execute(
        output,
        dry_run,
        as_json,
        quiet,
        aoi=aoi_value,
        tilesize=int(tilesize),
        bidx=bidx,
        creation_options=dict(creation_options),
        gdal_config=dict(gdal_config),
        tiler_params=tiler_params,
        headers=headers,
        query=kwargs.pop("query") or None,
        **kwargs,
    )


@cli.command("status")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(run_dir: str, as_json: bool) -> None:
    """Progress of a run directory: chunks done/failed/pending, tiles, ETA."""
    import json

    from mosaic_assembler.state import run_status

    try:
        st = run_status(Path(run_dir))
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


@cli.command("demo")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option(
    "--pixel-selection",
    type=MethodType(),
    default="median",
    show_default=True,
    help=f"Pixel-selection method: {PIXEL_SELECTION_HELP}.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.option("-v", "--verbose", count=True)
@click.option("-q", "--quiet", count=True)
def demo_command(
    out_dir: str, pixel_selection: str, as_json: bool, verbose: int, quiet: int
) -> None:
    """Generate a synthetic multi-date sample in OUT_DIR and assemble a composite of it."""
    from mosaic_assembler.demo_data import make_demo_sample

    _setup_logging(verbose, quiet)
    sample = make_demo_sample(out_dir)
    output = Path(out_dir) / f"{pixel_selection}.tif"
    bbox = " ".join(f"{v:.4f}" for v in sample.bbox)
    if not quiet and not as_json:
        items = _display_path(sample.items_path)
        click.echo(
            f"sample: {items} ({len(sample.scene_paths)} scenes) and "
            f"{_display_path(sample.mosaicjson_path)}",
            err=True,
        )
        click.echo(
            f"running: assemble-mosaic --bbox {bbox} --zoom {sample.zoom} --items {items} "
            f"--assets blue,green,red,nir08 --pixel-selection {pixel_selection} "
            f"--overwrite {output}",
            err=True,
        )
    _execute(
        str(output),
        False,
        as_json,
        quiet,
        bbox=sample.bbox,
        zoom=sample.zoom,
        items=str(sample.items_path),
        assets="blue,green,red,nir08",
        pixel_selection=pixel_selection,
        overwrite=True,
    )


def _display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line on stderr and a non-zero exit for every expected error."""
    _return_freed_memory()
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
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        click.echo(
            f"Error: unexpected {type(e).__name__}: {e} (run with -vv for a traceback)", err=True
        )
        sys.exit(EXIT_FAILED)
    sys.exit(0)


if __name__ == "__main__":
    main()
