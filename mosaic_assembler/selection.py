"""mosaic_assembler.selection: pixel-selection methods, their traits, read options and QA masks.

``METHODS`` is the one list of methods: each entry carries the traits the rest of the
package reads (the CLI's choices and help, the dynamic-tiler check, the dtype rule of
expression runs, band info). It imports neither rio-tiler nor the readers, so the CLI
starts without them; the implementations (:mod:`._selection_methods`, subclasses of
rio-tiler's ``MosaicMethodBase``) are imported when a method is made, or when one of their
names (``MedianMethod`` …, ``IMPLEMENTATIONS``) is first read from this module.

Dependency order: _selection_kernels <- _selection_qa, _selection_methods <- selection
(which imports _selection_methods lazily).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mosaic_assembler._grouping import GROUP_BY
from mosaic_assembler._selection_qa import (
    LANDSAT_C2_DEFAULT,
    LANDSAT_QA_BITS,
    QA_KINDS,
    S2_SCL_CLASSES,
    S2_SCL_DEFAULT,
    QAMask,
    expression_mask,
    landsat_qa_mask,
    s2_scl_mask,
)
from mosaic_assembler.errors import ConfigError
from mosaic_assembler.harmonize import HARMONIZE
from mosaic_assembler.provenance import check_provenance

if TYPE_CHECKING:  # at run time these come from __getattr__ (they import rio-tiler)
    from rio_tiler.mosaic.methods.base import MosaicMethodBase

    from mosaic_assembler._selection_methods import (
        IMPLEMENTATIONS,
        CountMethod,
        FirstMethod,
        GeomedianMethod,
        HighestMethod,
        LastBandHighMethod,
        LastBandLowMethod,
        LatestClearMethod,
        LowestMethod,
        MeanMethod,
        MedianMethod,
        PercentileMethod,
        StdevMethod,
    )

__all__ = [
    "IMPLEMENTATIONS",
    "LANDSAT_C2_DEFAULT",
    "LANDSAT_QA_BITS",
    "METHODS",
    "PIXEL_SELECTION_HELP",
    "PIXEL_SELECTION_METHODS",
    "QA_KINDS",
    "RESAMPLING_METHODS",
    "S2_SCL_CLASSES",
    "S2_SCL_DEFAULT",
    "CountMethod",
    "FirstMethod",
    "GeomedianMethod",
    "HighestMethod",
    "LastBandHighMethod",
    "LastBandLowMethod",
    "LatestClearMethod",
    "LowestMethod",
    "MeanMethod",
    "MedianMethod",
    "MethodTraits",
    "PercentileMethod",
    "QAMask",
    "ReadOptions",
    "StdevMethod",
    "check_pixel_selection",
    "expression_mask",
    "landsat_qa_mask",
    "make_method",
    "method_traits",
    "normalize_expression",
    "output_dtype",
    "s2_scl_mask",
    "server_methods",
]

DtypeRule = Literal["source", "float32", "uint8"]


@dataclass(frozen=True)
class MethodTraits:
    """What a pixel-selection method needs and what it does to the output.

    Attributes:
        name: the method's name (``p37`` for a member of the percentile family).
        reduces: combines every observation (mean, median …; no early exit) rather than
            picking one (first, highest …).
        dtype: output dtype of an expression run (rio-tiler computes those in float64):
            "source" keeps the source dtype when every output band passes a source band
            through (float32 otherwise), "float32" always float32, "uint8" for counts.
        drops_last_band: the last band decides and is not output (``lastband*``).
        needs_datetimes: observations are fed newest first by item datetime, so the source
            must be STAC items (latest-clear).
        server_name: the ``pixel_selection`` a dynamic tiler (TiTiler: rio-tiler's nine)
            knows this method by; None: computed in-process only.
        band_name: the name of the one band the method outputs (count), or None.
        key: the entry in ``METHODS`` (``p1..p99`` for a percentile), also the
            ``name`` of its implementation class.
        param: the family's parameter (the percentile), or None.
    """

    name: str
    reduces: bool
    dtype: DtypeRule
    drops_last_band: bool = False
    needs_datetimes: bool = False
    server_name: str | None = None
    band_name: str | None = None
    key: str = ""
    param: int | None = None

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)


def _rio(name: str, reduces: bool, dtype: DtypeRule, **traits: Any) -> MethodTraits:
    """One of rio-tiler's methods: TiTiler knows it by the same name."""
    return MethodTraits(name, reduces, dtype, server_name=name, **traits)


#: The percentile family: ``p1`` … ``p99`` (numpy's linear method over valid observations).
PERCENTILES = MethodTraits("p1..p99", reduces=True, dtype="float32")

#: Method name -> traits: rio-tiler's nine, geomedian, latest-clear and the percentiles.
METHODS: dict[str, MethodTraits] = {
    t.name: t
    for t in (
        _rio("first", False, "source"),
        _rio("highest", False, "source"),
        _rio("lowest", False, "source"),
        _rio("mean", True, "float32"),
        _rio("median", True, "source"),
        _rio("stdev", True, "float32"),
        _rio("count", True, "uint8", band_name="count"),
        _rio("lastbandhigh", False, "source", drops_last_band=True),
        _rio("lastbandlow", False, "source", drops_last_band=True),
        MethodTraits("geomedian", reduces=True, dtype="float32"),
        MethodTraits("latest-clear", reduces=False, dtype="source", needs_datetimes=True),
        PERCENTILES,
    )
}
#: The methods with one fixed name (all but the percentile family).
PIXEL_SELECTION_METHODS: tuple[str, ...] = tuple(n for n in METHODS if n != PERCENTILES.key)
PIXEL_SELECTION_HELP = ", ".join(METHODS)
_PERCENTILE = re.compile(r"p([1-9][0-9]?)")


def method_traits(name: str) -> MethodTraits:
    """The traits of method ``name`` (case and surrounding blanks ignored).

    Raises:
        ConfigError: unknown name (listing the valid ones); it is a ValueError.
    """
    key = name.strip().lower()
    if key in METHODS and key != PERCENTILES.key:
        return METHODS[key]
    if match := _PERCENTILE.fullmatch(key):
        return dataclasses.replace(PERCENTILES, name=key, param=int(match.group(1)))
    raise ConfigError(f"unknown pixel selection {name!r}; valid: {PIXEL_SELECTION_HELP}")


def check_pixel_selection(name: str) -> str:
    """The method name, validated (unchanged).

    Raises:
        ConfigError: unknown name (listing the valid ones).
    """
    method_traits(name)
    return name


def make_method(name: str) -> MosaicMethodBase:
    """A fresh method instance by name: a ``METHODS`` name or ``p1`` … ``p99``.

    Raises:
        ConfigError: unknown name (the message lists the valid ones); it is a ValueError.
    """
    traits = method_traits(name)
    from mosaic_assembler import _selection_methods  # rio-tiler: only once a method is made

    return _selection_methods.new_method(traits.key, traits.param)


def server_methods() -> tuple[str, ...]:
    """The ``pixel_selection`` names a dynamic tiler (TiTiler) knows."""
    return tuple(t.server_name for t in METHODS.values() if t.server_name)


def output_dtype(method: str, source_dtype: str, passthrough: bool) -> str:
    """Output dtype of an expression run with ``method`` (its ``dtype`` trait).

    Args:
        method: the pixel-selection name.
        source_dtype: the dtype of the source bands.
        passthrough: every output band (the decision band of ``lastband*`` aside) is a
            source band passed through ("b3;b2;b1"): it can keep the source dtype losslessly.
    """
    rule = method_traits(method).dtype
    if rule == "source":
        return source_dtype if passthrough else "float32"
    return rule


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
        pixel_selection: a method name (see ``METHODS``) or ``p1`` … ``p99``.
        tilesize: 256 or 512 px.
        bidx: 1-based band indexes to read from each asset (None: all).
        expression: rio-tiler band math (e.g. "b1,b2,(b4-b3)/(b4+b3)"); excludes bidx.
        resampling: resampling used to warp assets onto the tile grid.
        qa_mask: observations to exclude, from a quality band (in-process tiler only).
        output_dtype: cast rendered tiles to this dtype (set for expressions), or None.
        group_by: "item" (every item is an observation, rio-tiler's semantics) or
            "solar_day" (the items of one local solar day fused first, first valid pixel in
            the run's order; the method then works over dates).
        harmonize: "s2" removes Sentinel-2's +1000 DN offset (baseline >= 04.00) before
            selection (see `harmonize`), or None.
        provenance: "count" and/or "date" rasters beside the output (see `provenance`).
    """

    pixel_selection: str = "first"
    tilesize: int = 512
    bidx: tuple[int, ...] | None = None
    expression: str | None = None
    resampling: str = "nearest"
    qa_mask: QAMask | None = None
    output_dtype: str | None = None
    group_by: str = "item"
    harmonize: str | None = None
    provenance: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tilesize not in (256, 512):
            raise ConfigError(f"tilesize must be 256 or 512, got {self.tilesize!r}")
        check_pixel_selection(self.pixel_selection)
        if self.bidx is not None and self.expression:
            raise ConfigError("`bidx` and `expression` cannot be used together")
        if self.bidx is not None and (not self.bidx or any(i < 1 for i in self.bidx)):
            raise ConfigError(f"band indexes are 1-based positive integers, got {self.bidx}")
        if self.expression is not None and not self.expression.strip():
            raise ConfigError("`expression` is empty")
        if self.expression is not None:
            object.__setattr__(self, "expression", normalize_expression(self.expression))
        if self.resampling not in RESAMPLING_METHODS:
            raise ConfigError(
                f"unknown resampling {self.resampling!r}; valid: {', '.join(RESAMPLING_METHODS)}"
            )
        if self.group_by not in GROUP_BY:
            raise ConfigError(f"unknown `group_by` {self.group_by!r}; valid: {', '.join(GROUP_BY)}")
        if self.harmonize is not None and self.harmonize not in HARMONIZE:
            raise ConfigError(
                f"unknown `harmonize` {self.harmonize!r}; valid: {', '.join(HARMONIZE)}"
            )
        traits = method_traits(self.pixel_selection)
        try:
            kinds = check_provenance(tuple(self.provenance), traits.name, traits.reduces)
        except ValueError as e:
            raise ConfigError(str(e)) from e
        object.__setattr__(self, "provenance", kinds)


_LAZY = {
    "IMPLEMENTATIONS",
    "CountMethod",
    "FirstMethod",
    "GeomedianMethod",
    "HighestMethod",
    "LastBandHighMethod",
    "LastBandLowMethod",
    "LatestClearMethod",
    "LowestMethod",
    "MeanMethod",
    "MedianMethod",
    "PercentileMethod",
    "StdevMethod",
}


def __getattr__(name: str) -> Any:
    # the implementations import rio-tiler: loaded when first named
    if name in _LAZY:
        from mosaic_assembler import _selection_methods

        return getattr(_selection_methods, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
