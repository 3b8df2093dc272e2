"""Shared click options and parameter types (rasterio's `rio/options.py` is the model).

Every command that takes an area, a grid, a source or an output uses these decorators, so
`--bbox`, `--zoom`, `--items` … mean the same everywhere. Options are grouped (`area`,
`grid`, `sources`, `tiler`, `pixels`, `visual`, `cog`, `output`, `execution`, `report`);
each value arrives at the command already parsed into what `assemble()` takes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from mosaic_assembler._grouping import GROUP_BY
from mosaic_assembler.cli._params import Decorator, bidx_opt, dask, group, tilesize_choice

# the options that need click alone live in `_params` (lean `tiles`); `report` is re-exported
from mosaic_assembler.cli._params import report as report
from mosaic_assembler.harmonize import HARMONIZE
from mosaic_assembler.provenance import PROVENANCE
from mosaic_assembler.selection import (
    PIXEL_SELECTION_HELP,
    RESAMPLING_METHODS,
    check_pixel_selection,
)
from mosaic_assembler.writer import COG_PROFILES, OVERVIEW_RESAMPLINGS


class MethodType(click.ParamType):
    """A pixel-selection method name (a registry name or p1..p99)."""

    name = "METHOD"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:  # noqa: D102
        from mosaic_assembler.errors import MosaicAssemblerError

        try:
            return check_pixel_selection(str(value))
        except MosaicAssemblerError as e:
            self.fail(str(e), param, ctx)


class KeyValueType(click.ParamType):
    """NAME=VALUE (for --co, --config, --header, --tiler-param)."""

    name = "NAME=VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:  # noqa: D102
        if isinstance(value, tuple):
            return value
        name, sep, val = str(value).partition("=")
        if not sep or not name:
            self.fail(f"{value!r} is not NAME=VALUE", param, ctx)
        return name.strip(), val


#: `--aoi -` reads at most this much from stdin (a country outline is a few MB).
MAX_STDIN_AOI = 64 * 2**20


def _read_aoi(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """`--aoi -` reads the GeoJSON from stdin, whatever it holds (parsed here, never a path)."""
    if value != "-":
        return value
    stream = getattr(sys.stdin, "buffer", sys.stdin)
    data = stream.read(MAX_STDIN_AOI + 1)
    data = data.encode() if isinstance(data, str) else data
    if len(data) > MAX_STDIN_AOI:
        raise click.BadParameter(f"stdin holds more than {MAX_STDIN_AOI // 2**20} MB", ctx, param)
    if not data.strip():
        raise click.BadParameter("stdin is empty", ctx=ctx, param=param)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        reason = "it is not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e)
        raise click.BadParameter(f"stdin is not GeoJSON ({reason})", ctx, param) from e


def _none_if_default(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """None when the user did not give it (so another input, e.g. a template, may decide)."""
    assert param.name is not None
    source = ctx.get_parameter_source(param.name)
    return None if source is click.core.ParameterSource.DEFAULT else value


# ---------------------------------------------------------------------------------- area
bbox_opt = click.option(
    "--bbox",
    nargs=4,
    type=float,
    metavar="W S E N",
    callback=lambda ctx, param, value: tuple(value) if value else None,
    help="AOI in lon/lat; W > E crosses the antimeridian.",
)
aoi_opt = click.option(
    "--aoi",
    metavar="FILE",
    callback=_read_aoi,
    help="GeoJSON (Multi)Polygon/Feature/FeatureCollection; '-' reads stdin.",
)
clip_opt = click.option("--clip", is_flag=True, help="Mask pixels outside the AOI polygon.")
area = group(bbox_opt, aoi_opt)

# ---------------------------------------------------------------------------------- grid
zoom_opt = click.option(
    "--zoom",
    "-z",
    type=int,
    help="Level of the TileMatrixSet (WebMercatorQuad: 0-24); required unless --crs.",
)
tilesize_opt = tilesize_choice(512)
grid = group(zoom_opt, tilesize_opt)


class GridTmsType(click.ParamType):
    """A morecantile TileMatrixSet id or an OGC TMS 2.0 JSON file (validated by the core)."""

    name = "ID|FILE"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:  # noqa: D102
        import morecantile

        text = str(value)
        if text in morecantile.tms.list() or text.endswith(".json") or Path(text).is_file():
            return text
        self.fail(
            f"unknown TileMatrixSet {text!r}: use one of {', '.join(morecantile.tms.list())} "
            "or a TMS JSON file",
            param,
            ctx,
        )


#: The output grid of `assemble` (README: "Output grids").
output_grid = group(
    click.option(
        "--tms",
        "tms",
        type=GridTmsType(),
        help="Output TileMatrixSet: a morecantile id (WGS1984Quad, EuropeanETRS89_LAEAQuad, "
        "UTM31WGS84Quad …) or an OGC TMS 2.0 JSON file [default: WebMercatorQuad].",
    ),
    click.option(
        "--crs",
        metavar="CRS",
        help="A custom grid in this CRS (EPSG:32631, WKT, PROJ, or auto-utm: the UTM zone "
        "of the AOI's centre); with --resolution, instead of --tms/--zoom.",
    ),
    click.option(
        "--resolution",
        type=float,
        metavar="R",
        help="Pixel size of the --crs grid, in its units.",
    ),
    click.option(
        "--snap",
        type=click.Choice(["native", "none"]),
        help="native: the --crs grid is the sources' pixel grid (no resampling; the default "
        "when they all share --crs and --resolution); none: pixel corners at multiples of R.",
    ),
)

# ------------------------------------------------------------------------------- sources
items_opt = click.option(
    "--items",
    type=click.Path(dir_okay=False),
    help="STAC ItemCollection / FeatureCollection JSON file.",
)
stac_opt = click.option(
    "--stac", metavar="URL", help="Search a STAC API (over the AOI, or the points for chips)."
)
#: the parameters of a --stac search
stac_search = group(
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
)
assets_opt = click.option(
    "--assets", help="Asset keys to read from each STAC item, e.g. red,green,blue."
)
sources = group(
    click.option("--mosaicjson", type=click.Path(dir_okay=False), help="mosaicJSON file."),
    items_opt,
    stac_opt,
    stac_search,
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
    assets_opt,
)
#: STAC items only (a file or a search), for commands that read items' assets (chips)
item_sources = group(items_opt, stac_opt, stac_search, assets_opt)

# --------------------------------------------------------------------------------- tiler
tiler = group(
    click.option(
        "--tiler",
        metavar="URL_TEMPLATE",
        help="Fetch tiles from a dynamic tiler: URL with {z}, {x}, {y} (e.g. TiTiler's "
        ".../mosaicjson/tiles/WebMercatorQuad/{z}/{x}/{y}.tif?url=m.json), or "
        "titiler-pgstac:URL to register the --stac search there.",
    ),
    click.option(
        "--tiler-param",
        "tiler_params",
        multiple=True,
        type=KeyValueType(),
        help="Extra query parameter KEY=VALUE for --tiler (repeatable).",
    ),
    click.option(
        "--header",
        "headers",
        multiple=True,
        type=KeyValueType(),
        help="HTTP header KEY=VALUE for --tiler (repeatable); ${NAME} expands from the "
        "environment. Never printed.",
    ),
    click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=5,
        show_default=True,
        help="Retries per tile for 429/5xx/timeouts.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=120.0,
        show_default=True,
        help="Read timeout per tile request, seconds.",
    ),
)


# -------------------------------------------------------------------------------- pixels
def pixel_selection_opt(default: str = "first", template_may_decide: bool = True) -> Decorator:
    """--pixel-selection; None reaches the command when a --tiler template may decide."""
    return click.option(
        "--pixel-selection",
        type=MethodType(),
        default=default,
        show_default=True,
        callback=_none_if_default if template_may_decide else None,
        help=f"Pixel-selection method: {PIXEL_SELECTION_HELP}.",
    )


mask = group(
    click.option(
        "--mask-band",
        metavar="ASSET_OR_BIDX",
        help="Quality band: a STAC asset key (e.g. qa_pixel, scl) or a band index of each "
        "COG; flagged observations are excluded before selection.",
    ),
    click.option(
        "--mask-bits",
        metavar="KIND[:NAME,...]",
        help="What --mask-band flags: 'landsat' (Collection 2 QA_PIXEL: fill, "
        "dilated_cloud, cirrus, cloud, cloud_shadow, snow) or 'scl' (Sentinel-2 L2A "
        "classes: no_data, saturated, cloud_shadow, cloud_medium, cloud_high, cirrus, "
        "snow), optionally with your own list, e.g. landsat:cloud,cloud_shadow.",
    ),
    click.option(
        "--mask-expression",
        metavar="EXPR",
        help="Raw exclusion test on the quality band `qa`, e.g. '(qa & 0b11000) > 0'.",
    ),
)
pixels = group(
    pixel_selection_opt(),
    mask,
    bidx_opt,
    click.option("--expression", help="rio-tiler band math, e.g. 'b1,b2,(b4-b3)/(b4+b3)'."),
    click.option(
        "--resampling",
        type=click.Choice(list(RESAMPLING_METHODS)),
        default="nearest",
        show_default=True,
    ),
    click.option(
        "--group-by",
        type=click.Choice(list(GROUP_BY)),
        default="item",
        show_default=True,
        help="Observations: every item (rio-tiler/TiTiler), or the scenes of one local solar "
        "day fused first (first valid pixel in item order; odc-stac's solar_day).",
    ),
    click.option(
        "--provenance",
        multiple=True,
        type=click.Choice(list(PROVENANCE)),
        help="Also write OUT.count.tif (valid observations per pixel) and/or OUT.date.tif "
        "(int32 days since 1970-01-01 of the observation a picker chose). Repeatable.",
    ),
    click.option(
        "--harmonize",
        type=click.Choice(list(HARMONIZE)),
        help="s2: remove the +1000 DN offset of Sentinel-2 L2A processing baseline >= 04.00 "
        "before selection.",
    ),
)

# -------------------------------------------------------------------------------- visual
visual = group(
    click.option(
        "--rescale",
        multiple=True,
        metavar="MIN,MAX",
        help="Visual output: map MIN..MAX to 0..255 uint8 (once for all bands, or once "
        "per band). Never for analysis.",
    ),
    click.option(
        "--color-ops",
        metavar="OPS",
        help="Visual output: rio-color operations on RGB after --rescale, e.g. "
        "'gamma RGB 3.5, saturation 1.7, sigmoidal RGB 15 0.35'.",
    ),
)

# ----------------------------------------------------------------------------------- cog
cog = group(
    click.option(
        "--cog-profile",
        type=click.Choice(list(COG_PROFILES)),
        default="deflate",
        show_default=True,
        help="deflate/zstd/lzw for analytic data; webp/jpeg for uint8 visual output.",
    ),
    click.option(
        "--co",
        "creation_options",
        multiple=True,
        type=KeyValueType(),
        callback=lambda ctx, param, value: dict(value),
        help="COG creation option NAME=VALUE (repeatable).",
    ),
    click.option(
        "--config",
        "gdal_config",
        multiple=True,
        type=KeyValueType(),
        callback=lambda ctx, param, value: dict(value),
        help="GDAL config option NAME=VALUE (repeatable).",
    ),
    click.option(
        "--overview-resampling",
        type=click.Choice(list(OVERVIEW_RESAMPLINGS)),
        default="nearest",
        show_default=True,
    ),
)

# -------------------------------------------------------------------------------- output
overwrite_opt = click.option("--overwrite", is_flag=True, help="Replace an existing output.")
output = group(
    overwrite_opt,
    click.option("--allow-empty", is_flag=True, help="Succeed when the AOI intersects no asset."),
    click.option("--allow-partial", is_flag=True, help="Write the COG with failed tiles masked."),
    click.option(
        "--max-pixels",
        type=float,
        default=1e10,
        show_default=True,
        help="Refuse outputs larger than this (width x height).",
    ),
    click.option(
        "--split-zoom",
        type=click.IntRange(0, 24),
        help="Write OUTPUT as a directory of one COG per zoom-Z quadkey, with "
        "mosaic.json and items.json.",
    ),
)

# ----------------------------------------------------------------------------- execution
execution = group(
    click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        help="Tiles read in parallel [default in-process: CPUs for local files, "
        "4 x CPUs for remote ones; 16 with --tiler].",
    ),
    click.option(
        "--chunk-tiles",
        type=click.IntRange(min=1),
        help="Chunk side in tiles (unit of work and resume) [default: 4096 px / tilesize].",
    ),
    click.option(
        "--run-dir",
        type=click.Path(file_okay=False),
        help="Run directory for chunks and the manifest [default: OUTPUT.run].",
    ),
    click.option("--keep-run-dir", is_flag=True, help="Keep the run directory after success."),
    click.option("--restart", is_flag=True, help="Discard an existing run directory."),
    dask,
)
