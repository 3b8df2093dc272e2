"""The click options and parameter types that need no core module (only click).

`tiles` (and `serve`) take these: importing them costs click alone, so those commands start
without the pipeline's modules. `cli.options` re-exports every name, and the options of
`assemble` and `batch` build on them; an option is still declared once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

Decorator = Callable[[Any], Any]


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


class RescaleType(click.ParamType):
    """MIN,MAX → (min, max), e.g. `0,3000`."""

    name = "MIN,MAX"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float, float]:  # noqa: D102
        if isinstance(value, tuple):
            return value
        try:
            lo, hi = (float(v) for v in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not MIN,MAX", param, ctx)
        if not lo < hi:
            self.fail(f"{value!r}: MIN must be below MAX", param, ctx)
        return lo, hi


class ZoomRangeType(click.ParamType):
    """MIN-MAX zooms (`5-12`) or one zoom (`7`) → (min, max)."""

    name = "MIN-MAX"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[int, int]:  # noqa: D102
        if isinstance(value, tuple):
            return value
        lo, sep, hi = str(value).partition("-")
        try:
            zmin, zmax = (int(lo), int(hi)) if sep else (int(lo), int(lo))
        except ValueError:
            self.fail(f"{value!r} is not MIN-MAX (e.g. 5-12) or one zoom", param, ctx)
        if not 0 <= zmin <= zmax:
            self.fail(f"{value!r}: zooms must be 0 <= MIN <= MAX", param, ctx)
        return zmin, zmax


class TmsType(click.ParamType):
    """A morecantile TileMatrixSet id (checked when parsed: morecantile loads lazily)."""

    name = "ID"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:  # noqa: D102
        import morecantile

        ids = morecantile.tms.list()
        if value not in ids:
            self.fail(f"unknown TileMatrixSet {value!r}: use one of {', '.join(ids)}", param, ctx)
        return str(value)


class ColormapType(click.ParamType):
    """A rio-tiler colour map name (viridis, magma, terrain …)."""

    name = "NAME"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:  # noqa: D102
        from rio_tiler.colormap import cmap

        if value not in cmap.list():
            self.fail(
                f"unknown colour map {value!r}: use one of rio-tiler's, e.g. viridis, magma, "
                "terrain, rdylgn",
                param,
                ctx,
            )
        return str(value)


def group(*decorators: Decorator) -> Decorator:
    """One decorator applying several options, in the order written (as in --help)."""

    def apply(f: Any) -> Any:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


zooms_opt = click.option(
    "--zooms",
    type=ZoomRangeType(),
    required=True,
    help="Zoom levels of a pyramid, MIN-MAX (e.g. 5-12) or one zoom.",
)
tms_opt = click.option(
    "--tms",
    type=TmsType(),
    default="WebMercatorQuad",
    show_default=True,
    help="TileMatrixSet id (morecantile's), e.g. WorldCRS84Quad.",
)


def tilesize_choice(default: int = 512) -> Decorator:
    """--tilesize 256|512 with a default of the command's."""
    return click.option(
        "--tilesize",
        type=click.Choice(["256", "512"]),
        default=str(default),
        show_default=True,
        callback=lambda ctx, param, value: int(value),
        help="Tile side in pixels.",
    )


bidx_opt = click.option("--bidx", type=BidxParamType(), help="Band indexes, e.g. 1,2,3.")

rescale_opt = click.option(
    "--rescale",
    multiple=True,
    type=RescaleType(),
    callback=lambda ctx, param, value: tuple(value) or None,
    help="Map MIN..MAX to 0..255 (once for all bands, or once per band).",
)
colormap_opt = click.option(
    "--colormap",
    type=ColormapType(),
    help="rio-tiler colour map for a single band, e.g. viridis.",
)

dask = group(
    click.option(
        "--dask-scheduler",
        metavar="tcp://HOST:PORT",
        help="Run chunks on an existing Dask cluster (shared run directory needed).",
    ),
    click.option(
        "--dask-local",
        type=click.IntRange(min=1),
        metavar="N",
        help="Run chunks on a local Dask cluster of N worker processes.",
    ),
)

json_opt = click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
verbosity = group(
    click.option("-v", "--verbose", count=True),
    click.option("-q", "--quiet", count=True),
)
report = group(json_opt, verbosity)
