"""The reducing pixel-selection methods (mean … geomedian) behind :mod:`._selection_methods`.

Each keeps a running state fed layer by layer and reduces it once per read of ``data``
(cached until the next ``feed``; ``mosaic_reader`` reads it twice). They need every fed
array to have the same dtype (rio-tiler would promote; we raise ``TypeError``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy
from rio_tiler.mosaic.methods.base import MosaicMethodBase

from mosaic_assembler import _selection_kernels as _k
from mosaic_assembler._selection_geomedian import geomedian as _geomedian


def split_masked(array: Any) -> tuple[numpy.ndarray, numpy.ndarray]:
    """``(data, full boolean mask)`` of a (masked) array."""
    return numpy.ma.getdata(array), numpy.ma.getmaskarray(array)


@dataclass(repr=False, eq=False)
class _Reducer(MosaicMethodBase):
    """Running state fed layer by layer (``_add``), reduced once per read of ``data``."""

    name: ClassVar[str]
    _dtype: Any = field(default=None, init=False)
    _n: int = field(default=0, init=False)
    _cache: Any = field(default=None, init=False)
    _any_dtype: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"<Mosaic: {type(self).__name__}>"

    @abc.abstractmethod
    def _add(self, data: numpy.ndarray, mask: numpy.ndarray) -> None:
        """Add one layer to the state."""

    @abc.abstractmethod
    def _compute(self) -> numpy.ma.MaskedArray:
        """Reduce the state."""

    def feed(self, array: numpy.ma.MaskedArray) -> None:
        """Add ``array`` to the running state."""
        data, mask = split_masked(array)
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


# order statistics (median, percentiles) keep the fed (data, mask) layers and sort them per
# pixel, chunk by chunk, when ``data`` is read
def _keep_layer(layers: list, data: numpy.ndarray, mask: numpy.ndarray, owner: object) -> None:
    """Keep a layer, unless it is masked everywhere and another one is kept already.

    A layer without a valid value changes no pixel's valid values, hence no order statistic
    (the sort handles any number of masked values per pixel); with one layer kept the shape
    and dtype are known. A scene whose footprint's bounding box reaches a tile but whose
    data does not (a tilted nodata collar) gives such a layer: 73 of the 196 layers fed at
    16 tiles of bench_vs_notebook's run. Dropping them saves their memory and their sort.
    """
    if data.dtype.kind not in "iuf":
        raise TypeError(f"{type(owner).__name__}: unsupported dtype {data.dtype}")
    if layers and mask.all():
        return
    layers.append((data, mask))


def _order_stats(
    layers: list, mode: str, ranks: list[tuple[int, int]], combine, out_dtype, nan_is_value: bool
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Reduce with ``combine(a, b, n_valid)`` of the values at ``ranks[n - 1]``."""
    out, masked = _k.reduce_order_stats(layers, mode, ranks, combine, out_dtype, nan_is_value)
    # numpy.ma.median leaves 0 under a pixel with no valid value; a band masked there can
    # still show in an output whose mask is per pixel, so match it
    out[masked] = 0
    return out, masked


@dataclass(repr=False, eq=False)
class MedianMethod(_Reducer):
    """``numpy.ma.median`` of the stack.

    Floats: ``((0.0 + lo) + hi) / 2`` in the input float dtype (an odd count of values
    above max/2 overflows to inf, as in numpy.ma), NaN wherever an unmasked NaN is present
    (it propagates through the network's min/max).
    Integers: the float64 mean of the two middle values cast back by truncation, computed
    in exact integer arithmetic up to 32 bits. Masked values get alternating low/high
    sentinels so the two middle ranks sit at fixed sorted positions (no gather).
    """

    name: ClassVar[str] = "median"
    enforce_data_type: bool = True
    _layers: list = field(default_factory=list, init=False)

    def _add(self, data, mask):
        _keep_layer(self._layers, data, mask, self)

    def _compute(self):
        ranks = [((n - 1) // 2, n // 2) for n in range(1, len(self._layers) + 1)]
        combine, out_dtype = _k.median_combiner(self._dtype, self.enforce_data_type)
        out, masked = _order_stats(self._layers, "alternate", ranks, combine, out_dtype, True)
        return self._cast(out, masked, self.enforce_data_type)


@dataclass(repr=False, eq=False)
class PercentileMethod(_Reducer):
    """``percentile``-th percentile (1..99) over unmasked, non-NaN observations.

    Equals ``numpy.nanpercentile(stack_as_float64_with_masked_as_nan, percentile, axis=0,
    method="linear")``: virtual index ``(n - 1) * q`` with ``q = percentile / 100`` and
    linear interpolation between its floor and floor + 1 neighbours with numpy's ``_lerp``
    (``a + (b - a) * t``, or ``b - (b - a) * (1 - t)`` when ``t >= 0.5``) in float64, so
    ``inf`` neighbours give numpy's NaN (left unmasked). Cast back to the input dtype with
    ``astype`` (integers truncate) unless ``enforce_data_type`` is False. Masked where a
    pixel has no valid observation.
    """

    name: ClassVar[str] = "p1..p99"  # the family's entry; an instance is p<percentile>
    percentile: int = 50
    enforce_data_type: bool = True
    _layers: list = field(default_factory=list, init=False)

    def __post_init__(self):
        if isinstance(self.percentile, bool) or self.percentile not in range(1, 100):
            raise ValueError(f"percentile must be an integer in 1..99, got {self.percentile!r}")
        pct = self.percentile
        self._mode = "high" if pct < 30 else "low" if pct > 70 else "alternate"

    def __repr__(self) -> str:
        return f"<Mosaic: PercentileMethod p{self.percentile}>"

    def _add(self, data, mask):
        _keep_layer(self._layers, data, mask, self)

    def _compute(self):
        ranks, gamma = _k.linear_ranks(len(self._layers), self.percentile)
        out, masked = _order_stats(
            self._layers,
            self._mode,
            ranks,
            lambda a, b, n: _k.lerp(a.astype("f8"), b.astype("f8"), gamma[n]),
            "f8",
            False,
        )
        return self._cast(out, masked, self.enforce_data_type)


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
        out, n_valid = _geomedian(self._layers, self.rtol, self.max_iter)
        if self._dtype.kind in "iu":
            info = numpy.iinfo(self._dtype)
            out = numpy.clip(numpy.rint(out), info.min, info.max)
        masked = numpy.broadcast_to(n_valid.reshape(shape[1:]) == 0, shape).copy()
        return self._cast(out.reshape(shape), masked)
