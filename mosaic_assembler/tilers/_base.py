"""Values shared by every TileSource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy

from mosaic_assembler.errors import ConfigError
from mosaic_assembler.types import BandInfo, TileData

#: Pixel-selection methods by name: rio-tiler's (fast exact kernels), geomedian, latest-clear;
#: `p1` … `p99` (percentiles) are accepted too. The CLI's help comes from here. Spelled out
#: so that the CLI and the HTTP path need not import rio-tiler; a test checks it equals
#: `selection.METHODS` plus latest-clear.
PIXEL_SELECTION_METHODS: tuple[str, ...] = (
    "first",
    "highest",
    "lowest",
    "mean",
    "median",
    "stdev",
    "count",
    "lastbandhigh",
    "lastbandlow",
    "geomedian",
    "latest-clear",
)
PIXEL_SELECTION_HELP = ", ".join(PIXEL_SELECTION_METHODS) + ", p1..p99"


def check_pixel_selection(name: str) -> str:
    """The method name, validated.

    Raises:
        ConfigError: unknown name (listing the valid ones).
    """
    if name == "latest-clear":
        return name
    from mosaic_assembler import selection

    try:
        selection.make_method(name)
    except ValueError as e:
        raise ConfigError(f"unknown pixel selection {name!r}; valid: {PIXEL_SELECTION_HELP}") from e
    return name


def make_method(name: str) -> Any:
    """A fresh method instance (latest-clear is `first` over items sorted newest first)."""
    from mosaic_assembler import selection

    return selection.make_method("first" if name == "latest-clear" else name)


def normalize_expression(expression: str) -> str:
    """rio-tiler separates output bands with ";"; accept "," between bands too.

    Only commas outside parentheses separate bands ("b1,b2" → "b1;b2"); a function's
    arguments ("arctan2(b1, b2)") are left alone.
    """
    out, depth = [], 0
    for ch in expression:
        depth += ch == "("
        depth -= ch == ")"
        out.append(";" if ch == "," and depth == 0 else ch)
    return "".join(out)


QA_KINDS = ("landsat", "scl", "expression")


@dataclass(frozen=True)
class QAMask:
    """Exclude observations flagged by a quality band before pixel selection.

    Attributes:
        band: STAC asset key of the QA band, or a 1-based band index of each COG.
        kind: "landsat" (Collection 2 QA_PIXEL bits), "scl" (Sentinel-2 L2A scene
            classes) or "expression" (e.g. "(qa & 0b11000) > 0", the band is named `qa`).
        names: bits/classes to exclude (empty: the preset defaults).
        expression: for kind "expression".
    """

    band: str
    kind: str = "landsat"
    names: tuple[str, ...] = ()
    expression: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in QA_KINDS:
            raise ConfigError(f"unknown mask kind {self.kind!r}; valid: {', '.join(QA_KINDS)}")
        if self.kind == "expression" and not self.expression:
            raise ConfigError("a mask expression is needed")
        try:  # validate names and expression once, on a tiny array
            self.exclude(numpy.zeros((1, 1), dtype="uint16"))
        except (ValueError, TypeError, SyntaxError) as e:
            raise ConfigError(f"invalid QA mask: {e}") from e

    @property
    def bidx(self) -> int | None:
        """The band index when `band` is one, else None (an asset key)."""
        return int(self.band) if self.band.isdigit() else None

    def exclude(self, qa: numpy.ndarray) -> numpy.ndarray:
        """True where the observation must be excluded."""
        from mosaic_assembler import selection

        if self.kind == "landsat":
            return selection.landsat_qa_mask(qa, self.names or selection.LANDSAT_C2_DEFAULT)
        if self.kind == "scl":
            return selection.s2_scl_mask(qa, self.names or selection.S2_SCL_DEFAULT)
        assert self.expression is not None
        return numpy.asarray(selection.expression_mask({"qa": qa}, self.expression), bool)


RESAMPLING_METHODS = (
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
    "rms",
)


@dataclass(frozen=True)
class ReadOptions:
    """How a tile is rendered; everything here affects pixels.

    Attributes:
        pixel_selection: rio-tiler method name (see PIXEL_SELECTION_METHODS).
        tilesize: 256 or 512 px.
        bidx: 1-based band indexes to read from each asset (None: all).
        expression: rio-tiler band math (e.g. "b1,b2,(b4-b3)/(b4+b3)"); excludes bidx.
        resampling: resampling used to warp assets onto the tile grid.
        qa_mask: observations to exclude, from a quality band (in-process tiler only).
        output_dtype: cast rendered tiles to this dtype (set for expressions), or None.
    """

    pixel_selection: str = "first"
    tilesize: int = 512
    bidx: tuple[int, ...] | None = None
    expression: str | None = None
    resampling: str = "nearest"
    qa_mask: QAMask | None = None
    output_dtype: str | None = None

    def __post_init__(self) -> None:
        if self.tilesize not in (256, 512):
            raise ConfigError(f"tilesize must be 256 or 512, got {self.tilesize!r}")
        check_pixel_selection(self.pixel_selection)
        if self.bidx is not None and self.expression:
            raise ConfigError("--bidx and --expression cannot be used together")
        if self.bidx is not None and (not self.bidx or any(i < 1 for i in self.bidx)):
            raise ConfigError(f"band indexes are 1-based positive integers, got {self.bidx}")
        if self.expression is not None and not self.expression.strip():
            raise ConfigError("--expression is empty")
        if self.expression is not None:
            object.__setattr__(self, "expression", normalize_expression(self.expression))
        if self.resampling not in RESAMPLING_METHODS:
            raise ConfigError(
                f"unknown resampling {self.resampling!r}; valid: {', '.join(RESAMPLING_METHODS)}"
            )


__all__ = [
    "PIXEL_SELECTION_METHODS",
    "BandInfo",
    "QAMask",
    "ReadOptions",
    "TileData",
]
