"""Fast pixel-selection methods for rio-tiler mosaics, plus percentiles, geomedian and QA masks.

The rio-tiler-named classes (``FirstMethod`` ... ``CountMethod``) are drop-in replacements
for ``rio_tiler.mosaic.methods.defaults`` (they subclass ``MosaicMethodBase``, so
``mosaic_reader(..., pixel_selection=MedianMethod())`` works unchanged). For the same
feed sequence, ``data`` has the same dtype, shape and mask as rio-tiler's and the same
value at every unmasked pixel (signed zeros included), numpy.ma's quirks included.
What is different is how they get there:

* ``first/highest/lowest/lastband*`` update one (data, mask) buffer in place;
* ``mean`` and ``count`` keep running sums (same accumulator dtype and order as numpy.ma);
* ``median`` and ``stdev`` keep the fed (data, mask) arrays (no numpy.ma stack) and
  reduce them in cache-sized pixel chunks: a pruned sorting network for the median, a
  sequential float64 pass for the deviations.

Methods that reduce a stack need every fed array to have the same dtype (rio-tiler would
promote; we raise ``TypeError``). ``data`` is computed once and cached until the next
``feed`` (``mosaic_reader`` reads it twice).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy
from rio_tiler.mosaic.methods.base import MosaicMethodBase

from mosaic_assembler import _selection_kernels as _k

__all__ = [
    "LANDSAT_C2_DEFAULT",
    "LANDSAT_QA_BITS",
    "METHODS",
    "S2_SCL_CLASSES",
    "S2_SCL_DEFAULT",
    "CountMethod",
    "FirstMethod",
    "GeomedianMethod",
    "HighestMethod",
    "LastBandHighMethod",
    "LastBandLowMethod",
    "LowestMethod",
    "MeanMethod",
    "MedianMethod",
    "PercentileMethod",
    "StdevMethod",
    "expression_mask",
    "landsat_qa_mask",
    "make_method",
    "s2_scl_mask",
]


def _split(array: Any) -> tuple[numpy.ndarray, numpy.ndarray]:
    return numpy.ma.getdata(array), numpy.ma.getmaskarray(array)


@dataclass(repr=False, eq=False)
class _Method(MosaicMethodBase):
    name: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<Mosaic: {type(self).__name__}>"


# --------------------------------------------------------------------------- in-place pickers
@dataclass(repr=False, eq=False)
class _PickMethod(_Method):
    """Keep one (data, mask) buffer; overwrite it where ``_pick`` is True.

    Same rule as rio-tiler's ``numpy.ma.where(pidex, array, mosaic)``. The first array is
    kept by reference (as rio-tiler does) and copied, with the dtype ``numpy.where`` would
    promote to, only when a second one arrives.
    """

    _owned: bool = field(default=False, init=False)

    def _pick(self, data, mask, new, new_mask) -> numpy.ndarray:  # pragma: no cover
        raise NotImplementedError

    def feed(self, array: numpy.ma.MaskedArray) -> None:
        """Merge ``array`` into the mosaic."""
        if self.mosaic is None:
            self.mosaic = array
            return
        new, new_mask = _split(array)
        data, mask = _split(self.mosaic)
        dtype = numpy.result_type(data, new)
        if not self._owned or dtype != data.dtype:
            self.mosaic = numpy.ma.MaskedArray(data.astype(dtype), mask=mask.copy())
            self._owned = True
            data, mask = _split(self.mosaic)
        pidex = self._pick(data, mask, new, new_mask)
        _k.select(pidex, new, data, out=data)  # branch-free copyto(where=pidex)
        _k.select(pidex, new_mask, mask, out=mask)


@dataclass(repr=False, eq=False)
class FirstMethod(_PickMethod):
    """First unmasked value; ``is_done`` once nothing is masked (mosaic_reader stops early)."""

    name: ClassVar[str] = "first"
    exit_when_filled: bool = field(default=True, init=False)

    def _pick(self, data, mask, new, new_mask):
        return mask & ~new_mask


@dataclass(repr=False, eq=False)
class HighestMethod(_PickMethod):
    """Highest value (NaN never wins a comparison, so an unmasked NaN sticks)."""

    name: ClassVar[str] = "highest"

    def _pick(self, data, mask, new, new_mask):
        return ((new > data) & ~new_mask) | mask


@dataclass(repr=False, eq=False)
class LowestMethod(_PickMethod):
    """Lowest value."""

    name: ClassVar[str] = "lowest"

    def _pick(self, data, mask, new, new_mask):
        return ((new < data) & ~new_mask) | mask


@dataclass(repr=False, eq=False)
class _LastBandMethod(_PickMethod):
    @property
    def data(self) -> numpy.ma.MaskedArray | None:
        """Mosaic without the decision (last) band."""
        return None if self.mosaic is None else self.mosaic[:-1].copy()


@dataclass(repr=False, eq=False)
class LastBandHighMethod(_LastBandMethod):
    """Per band, take the new value where its last band is higher and it is unmasked."""

    name: ClassVar[str] = "lastbandhigh"

    def _pick(self, data, mask, new, new_mask):
        return ((new[-1] > data[-1]) & ~new_mask) | mask


@dataclass(repr=False, eq=False)
class LastBandLowMethod(_LastBandMethod):
    """Per band, take the new value where its last band is lower and it is unmasked."""

    name: ClassVar[str] = "lastbandlow"

    def _pick(self, data, mask, new, new_mask):
        return ((new[-1] < data[-1]) & ~new_mask) | mask


# --------------------------------------------------------------------------- reducers
@dataclass(repr=False, eq=False)
class _Reducer(_Method):
    _dtype: Any = field(default=None, init=False)
    _n: int = field(default=0, init=False)
    _cache: Any = field(default=None, init=False)
    _any_dtype: ClassVar[bool] = False

    def _add(self, data: numpy.ndarray, mask: numpy.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def _compute(self) -> numpy.ma.MaskedArray:  # pragma: no cover
        raise NotImplementedError

    def feed(self, array: numpy.ma.MaskedArray) -> None:
        """Add ``array`` to the running state."""
        data, mask = _split(array)
        if self._dtype is None:
            self._dtype = data.dtype
        elif data.dtype != self._dtype and not self._any_dtype:
            raise TypeError(f"{type(self).__name__}: got {data.dtype} after {self._dtype}")
        self._n += 1
        self._cache = None
        self._add(data, mask)

    @property
    def data(self) -> numpy.ma.MaskedArray | None:
        """Reduced mosaic (computed once, cached until the next feed)."""
        if self._n == 0:
            return None
        if self._cache is None:
            self._cache = self._compute()
        return self._cache

    def _cast(self, values: numpy.ndarray, masked: numpy.ndarray, enforce: bool = True):
        """``MaskedArray.astype(input dtype)`` as rio-tiler does (float -> int truncates)."""
        if enforce and values.dtype != self._dtype:
            with numpy.errstate(invalid="ignore", over="ignore"):
                if self._dtype.kind in "biu":
                    values = numpy.where(masked, 0, values)
                values = values.astype(self._dtype)
        return numpy.ma.MaskedArray(values, mask=masked)


@dataclass(repr=False, eq=False)
class MeanMethod(_Reducer):
    """``numpy.ma.mean`` of the stack from a running sum (same accumulator dtype and order).

    Non-finite means (unmasked NaN/inf, float32 overflow) and sums in numpy.ma's
    safe-divide domain (``|sum| * tiny >= count``) are masked, as numpy.ma does.
    """

    name: ClassVar[str] = "mean"
    enforce_data_type: bool = True
    _sum: Any = field(default=None, init=False)

    def _add(self, data, mask):
        self._sum = self._sum or _k.RunningSum(data.dtype)
        self._sum.add(data, mask)

    def _compute(self):
        mean, masked, _ = _k.ma_mean(self._sum)
        return self._cast(mean, masked, self.enforce_data_type)


@dataclass(repr=False, eq=False)
class StdevMethod(_Reducer):
    """``numpy.ma.std`` of the stack: float64, two passes, numpy.ma's quirks included.

    Where the mean is masked (non-finite) every deviation is masked and the result is an
    unmasked 0; a non-finite variance is masked; a variance in the safe-divide domain keeps
    the undivided sum of squares (numpy.ma puts the numerator back, then drops that mask).
    """

    name: ClassVar[str] = "stdev"
    _sum: Any = field(default=None, init=False)
    _layers: list = field(default_factory=list, init=False)

    def _add(self, data, mask):
        self._sum = self._sum or _k.RunningSum(data.dtype)
        self._sum.add(data, mask)
        self._layers.append((data, mask))

    def _compute(self):
        if self._dtype == numpy.float16:  # numpy.ma works in float16 there: defer to it
            datas, masks = zip(*self._layers, strict=True)
            return numpy.ma.std(numpy.ma.MaskedArray(numpy.stack(datas), numpy.stack(masks)), 0)
        mean, skip, cnt = _k.ma_mean(self._sum)
        var, _ = _k.ma_divide(_k.sum_sq_dev(self._layers, mean, skip), cnt)
        with numpy.errstate(invalid="ignore"):
            std = numpy.sqrt(var)
            masked = (cnt == 0) | ~numpy.isfinite(std) | (var < 0)
        return numpy.ma.MaskedArray(std, mask=masked)


@dataclass(repr=False, eq=False)
class CountMethod(_Reducer):
    """Unmasked observations of the first band: uint8 below 256 feeds, else intp; no mask."""

    name: ClassVar[str] = "count"
    _any_dtype: ClassVar[bool] = True
    _counts: Any = field(default=None, init=False)

    def _add(self, data, mask):
        first = mask[0] if mask.ndim > 2 else mask
        if self._counts is None:
            self._counts = numpy.zeros(first.shape, numpy.int64)
        numpy.subtract(self._counts, first, out=self._counts)
        self._counts += 1

    def _compute(self):
        data = self._counts.astype(numpy.uint8 if self._n < 256 else numpy.intp)
        return numpy.ma.MaskedArray(data, mask=numpy.zeros(data.shape, bool))


@dataclass(repr=False, eq=False)
class _OrderStatMethod(_Reducer):
    """Keep the fed (data, mask) layers; sort them per pixel, chunk by chunk, in ``data``."""

    _mode: ClassVar[str] = "alternate"
    _nan_is_value: ClassVar[bool] = False
    _layers: list = field(default_factory=list, init=False)

    def _add(self, data, mask):
        if data.dtype.kind not in "iuf":
            raise TypeError(f"{type(self).__name__}: unsupported dtype {data.dtype}")
        self._layers.append((data, mask))

    def _run(self, ranks: list[tuple[int, int]], combine, out_dtype, enforce: bool):
        """Reduce with ``combine(a, b, n_valid)`` of the values at ``ranks[n - 1]``."""
        out, masked = _k.reduce_order_stats(
            self._layers,
            self._mode,
            ranks,
            combine,
            out_dtype,
            self._nan_is_value,
        )
        # numpy.ma.median leaves 0 under a pixel with no valid value; a band masked there can
        # still show in an output whose mask is per pixel, so match it
        out[masked] = 0
        return self._cast(out, masked, enforce)


@dataclass(repr=False, eq=False)
class MedianMethod(_OrderStatMethod):
    """``numpy.ma.median`` of the stack.

    Floats: ``((0.0 + lo) + hi) / 2`` in the input float dtype (an odd count of values
    above max/2 overflows to inf, as in numpy.ma), NaN wherever an unmasked NaN is present
    (it propagates through the network's min/max).
    Integers: the float64 mean of the two middle values cast back by truncation, computed
    in exact integer arithmetic up to 32 bits. Masked values get alternating low/high
    sentinels so the two middle ranks sit at fixed sorted positions (no gather).
    """

    name: ClassVar[str] = "median"
    _nan_is_value: ClassVar[bool] = True
    enforce_data_type: bool = True

    def _compute(self):
        ranks = [((n - 1) // 2, n // 2) for n in range(1, len(self._layers) + 1)]
        combine, out_dtype = _k.median_combiner(self._dtype, self.enforce_data_type)
        return self._run(ranks, combine, out_dtype, self.enforce_data_type)


@dataclass(repr=False, eq=False)
class PercentileMethod(_OrderStatMethod):
    """``percentile``-th percentile (1..99) over unmasked, non-NaN observations.

    Equals ``numpy.nanpercentile(stack_as_float64_with_masked_as_nan, percentile, axis=0,
    method="linear")``: virtual index ``(n - 1) * q`` with ``q = percentile / 100`` and
    linear interpolation between its floor and floor + 1 neighbours with numpy's ``_lerp``
    (``a + (b - a) * t``, or ``b - (b - a) * (1 - t)`` when ``t >= 0.5``) in float64, so
    ``inf`` neighbours give numpy's NaN (left unmasked). Cast back to the input dtype with
    ``astype`` (integers truncate) unless ``enforce_data_type`` is False. Masked where a
    pixel has no valid observation.
    """

    percentile: int = 50
    enforce_data_type: bool = True

    def __post_init__(self):
        if isinstance(self.percentile, bool) or self.percentile not in range(1, 100):
            raise ValueError(f"percentile must be an integer in 1..99, got {self.percentile!r}")
        pct = self.percentile
        self._mode = "high" if pct < 30 else "low" if pct > 70 else "alternate"

    def __repr__(self) -> str:
        return f"<Mosaic: PercentileMethod p{self.percentile}>"

    def _compute(self):
        ranks, gamma = _k.linear_ranks(len(self._layers), self.percentile)
        return self._run(
            ranks,
            lambda a, b, n: _k.lerp(a.astype("f8"), b.astype("f8"), gamma[n]),
            "f8",
            self.enforce_data_type,
        )


@dataclass(repr=False, eq=False)
class GeomedianMethod(_Reducer):
    """Multi-band geometric median per pixel, in float64.

    An observation counts where all its bands are unmasked and finite. Vardi-Zhang
    modified Weiszfeld iterations from the mean of the valid observations, with Newton
    steps (kept only where they lower the objective) and an exact optimality test of the
    nearest observation to finish medians that sit on or next to an observation. A pixel
    stops when a step is shorter than ``rtol`` x (largest distance of an observation from
    that mean), or after ``max_iter`` iterations. Floats are cast with ``astype``;
    integers are rounded to nearest (half to even) and clipped to the dtype range. Masked
    (all bands) where no observation is valid.
    """

    name: ClassVar[str] = "geomedian"
    rtol: float = 1e-7
    max_iter: int = 1000
    _layers: list = field(default_factory=list, init=False)

    def _add(self, data, mask):
        if data.ndim != 3:
            raise ValueError(f"geomedian needs (bands, height, width) arrays, got {data.shape}")
        valid = ~mask.any(axis=0)
        if data.dtype.kind == "f":
            valid &= numpy.isfinite(data).all(axis=0)
        self._layers.append((data, valid))

    def _compute(self):
        shape = self._layers[0][0].shape
        out, n_valid = _k.geomedian(self._layers, self.rtol, self.max_iter)
        if self._dtype.kind in "iu":
            info = numpy.iinfo(self._dtype)
            out = numpy.clip(numpy.rint(out), info.min, info.max)
        masked = numpy.broadcast_to(n_valid.reshape(shape[1:]) == 0, shape).copy()
        return self._cast(out.reshape(shape), masked)


_CLASSES: tuple[type[_Method], ...] = (
    FirstMethod,
    HighestMethod,
    LowestMethod,
    MeanMethod,
    MedianMethod,
    StdevMethod,
    CountMethod,
    LastBandHighMethod,
    LastBandLowMethod,
    GeomedianMethod,
)
#: Method name -> class: rio-tiler's ``PixelSelectionMethod`` names plus ``geomedian``.
METHODS: dict[str, type[MosaicMethodBase]] = {cls.name: cls for cls in _CLASSES}


def make_method(name: str) -> MosaicMethodBase:
    """Instantiate a method by name: a ``METHODS`` key or ``p1`` ... ``p99`` (percentile).

    Raises:
        ValueError: unknown name (the message lists the valid ones).

    """
    key = name.strip().lower()
    if key in METHODS:
        return METHODS[key]()
    if match := re.fullmatch(r"p([1-9][0-9]?)", key):
        return PercentileMethod(percentile=int(match.group(1)))
    raise ValueError(f"unknown pixel selection {name!r}; valid: {', '.join(METHODS)}, p1..p99")


# --------------------------------------------------------------------------- QA decoding
#: Landsat Collection 2 ``QA_PIXEL`` flag bits usable for exclusion (clear, bit 6, is not).
LANDSAT_QA_BITS: dict[str, int] = {
    "fill": 0,
    "dilated_cloud": 1,
    "cirrus": 2,
    "cloud": 3,
    "cloud_shadow": 4,
    "snow": 5,
    "water": 7,
}
LANDSAT_C2_DEFAULT = ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow")
#: Sentinel-2 L2A scene classification (SCL) classes (``topographic_shadow`` = ``dark_area``).
S2_SCL_CLASSES: dict[str, int] = {
    "no_data": 0,
    "saturated": 1,
    "dark_area": 2,
    "topographic_shadow": 2,
    "cloud_shadow": 3,
    "vegetation": 4,
    "not_vegetated": 5,
    "water": 6,
    "unclassified": 7,
    "cloud_medium": 8,
    "cloud_high": 9,
    "cirrus": 10,
    "snow": 11,
}
S2_SCL_DEFAULT = (
    "no_data",
    "saturated",
    "cloud_shadow",
    "cloud_medium",
    "cloud_high",
    "cirrus",
    "snow",
)


def landsat_qa_mask(qa: numpy.ndarray, names: Iterable[str] = LANDSAT_C2_DEFAULT) -> numpy.ndarray:
    """Decode a Landsat C2 ``QA_PIXEL`` band: True where the observation must be excluded.

    Args:
        qa: integer QA_PIXEL values.
        names: flags that exclude an observation (keys of ``LANDSAT_QA_BITS``).

    Raises:
        ValueError: unknown flag name (the message lists the valid ones).
        TypeError: non-integer ``qa``.

    """
    bits = sum({1 << b for b in _k.lookup(names, LANDSAT_QA_BITS, "Landsat QA_PIXEL flag")})
    return (_k.int_array(qa, "qa") & bits) != 0


def s2_scl_mask(scl: numpy.ndarray, names: Iterable[str] = S2_SCL_DEFAULT) -> numpy.ndarray:
    """Decode a Sentinel-2 L2A ``SCL`` band: True where the class is one of ``names``.

    Raises:
        ValueError: unknown class name (the message lists the valid ones).
        TypeError: non-integer ``scl``.

    """
    codes = sorted(set(_k.lookup(names, S2_SCL_CLASSES, "Sentinel-2 SCL class")))
    return numpy.isin(_k.int_array(scl, "scl"), codes)


def expression_mask(arrays: Mapping[str, numpy.ndarray], expression: str) -> numpy.ndarray:
    """Evaluate a restricted boolean expression (True = exclude) over named arrays.

    Python syntax and precedence (``&`` binds tighter than comparisons, so
    ``qa & 0b11000 > 0`` means ``(qa & 24) > 0``). Allowed: names from ``arrays``,
    int/float literals (``0b``/``0x`` included, unary ``-``), ``& | ~ << >>``, comparisons
    (chained too) and ``and``/``or``/``not`` as element-wise logical operators. Integer
    arrays are widened to int64 first; a non-boolean result means "non-zero". Evaluated
    with numpy on the parsed AST (numexpr lacks ``0b`` literals and integer ``&``).

    Raises:
        ValueError: syntax error, unknown name or any other construct.

    """
    env = {}
    for key, value in arrays.items():
        arr = numpy.asarray(numpy.ma.getdata(value))
        env[key] = arr.astype(numpy.int64) if arr.dtype.kind in "iu" and arr.itemsize < 8 else arr
    result = numpy.asarray(_k.eval_restricted(expression, env))
    shape = numpy.broadcast_shapes(result.shape, *(a.shape for a in env.values()))
    return numpy.broadcast_to(result if result.dtype == bool else result != 0, shape).copy()
