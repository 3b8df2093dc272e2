"""Fast pixel-selection methods for rio-tiler mosaics, plus percentiles, geomedian and QA masks.

The rio-tiler-named classes (``FirstMethod`` ... ``CountMethod``) are drop-in replacements
for ``rio_tiler.mosaic.methods.defaults``: same ``data`` (dtype, shape, mask and every
unmasked value, bit for bit) for the same feed sequence, but without ``numpy.ma`` stacks:
``first/highest/lowest/lastband*`` update one buffer in place, ``mean``/``count`` keep a
running sum, ``median`` keeps one filled plain layer per feed and sorts it with a sorting
network, ``stdev`` keeps the fed layers (as rio-tiler does) plus a running sum.
Stacking methods require every fed array to have the same dtype (rio-tiler would promote).
``data`` is computed once and cached until the next ``feed``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy
from rio_tiler.mosaic.methods.base import MosaicMethodBase

from mosaic_assembler import _selection_kernels as _k

__all__ = [
    "LANDSAT_C2_DEFAULT", "LANDSAT_QA_BITS", "METHODS", "S2_SCL_CLASSES", "S2_SCL_DEFAULT",
    "CountMethod", "FirstMethod", "GeomedianMethod", "HighestMethod", "LastBandHighMethod",
    "LastBandLowMethod", "LowestMethod", "MeanMethod", "MedianMethod", "PercentileMethod",
    "StdevMethod", "expression_mask", "landsat_qa_mask", "make_method", "s2_scl_mask",
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
    """Keep one (data, mask) buffer and overwrite it where ``_pick`` says so.

    The first array is kept by reference (as rio-tiler does); it is copied, with the
    dtype ``numpy.where`` would promote to, only when a second array arrives.
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
        numpy.copyto(data, new, where=pidex)
        numpy.copyto(mask, new_mask, where=pidex)


@dataclass(repr=False, eq=False)
class FirstMethod(_PickMethod):
    """First unmasked value; ``is_done`` once nothing is masked (early exit)."""

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
    """Per band, take the new value where its last band is higher (and it is unmasked)."""

    name: ClassVar[str] = "lastbandhigh"

    def _pick(self, data, mask, new, new_mask):
        return ((new[-1] > data[-1]) & ~new_mask) | mask


@dataclass(repr=False, eq=False)
class LastBandLowMethod(_LastBandMethod):
    """Per band, take the new value where its last band is lower (and it is unmasked)."""

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

    def _cast(self, values: numpy.ndarray, masked: numpy.ndarray, enforce: bool):
        """``MaskedArray.astype(first dtype)`` as rio-tiler does (float->int truncates)."""
        if enforce:
            with numpy.errstate(invalid="ignore", over="ignore"):
                if self._dtype.kind in "biu":
                    values = numpy.where(masked, 0, values)
                values = values.astype(self._dtype)
        return numpy.ma.MaskedArray(values, mask=masked)


@dataclass(repr=False, eq=False)
class MeanMethod(_Reducer):
    """``numpy.ma.mean`` of the stack: running sum in its accumulator dtype, same order.

    Non-finite means (unmasked NaN/inf, float32 overflow) are masked, as numpy.ma does.
    """

    name: ClassVar[str] = "mean"
    enforce_data_type: bool = True
    _sum: Any = field(default=None, init=False)

    def _add(self, data, mask):
        if self._sum is None:
            self._sum = _k.RunningSum(data.dtype)
        self._sum.add(data, ~mask)

    def _compute(self):
        mean, masked, _ = _k.ma_mean(self._sum)
        return self._cast(mean, masked, self.enforce_data_type)


@dataclass(repr=False, eq=False)
class StdevMethod(_Reducer):
    """``numpy.ma.std`` of the stack (float64 output, two-pass, numpy.ma's quirks).

    Where the mean is masked (non-finite) the deviations are all masked and the result is
    an unmasked 0; a non-finite variance is masked; a variance hit by numpy.ma's safe-divide
    domain keeps the undivided sum of squares.
    """

    name: ClassVar[str] = "stdev"
    _sum: Any = field(default=None, init=False)
    _layers: list = field(default_factory=list, init=False)

    def _add(self, data, mask):
        if self._sum is None:
            self._sum = _k.RunningSum(data.dtype)
        self._sum.add(data, ~mask)
        self._layers.append((data, mask))

    def _compute(self):
        mean, skip, cnt = _k.ma_mean(self._sum)
        datas, masks = zip(*self._layers)
        var, _ = _k.ma_divide(_k.sum_sq_dev(list(datas), list(masks), mean, skip), cnt)
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
        valid = ~(mask[0] if mask.ndim > 2 else mask)
        self._counts = valid.astype(numpy.int64) if self._counts is None else self._counts + valid

    def _compute(self):
        data = self._counts.astype(numpy.uint8 if self._n < 256 else numpy.intp)
        return numpy.ma.MaskedArray(data, mask=numpy.zeros(data.shape, bool))


@dataclass(repr=False, eq=False)
class _OrderStatMethod(_Reducer):
    """Keep each feed as one plain layer with masked values replaced by a sentinel.

    The sentinel (dtype max / +inf when ``_high``, else min / -inf) sorts after (before)
    every valid value, so after sorting the valid values of a pixel occupy the first
    (last) ``count`` positions.
    """

    _high: ClassVar[bool] = True
    _nan_is_value: ClassVar[bool] = False
    _stack: list = field(default_factory=list, init=False)
    _cnt: Any = field(default=None, init=False)
    _nan: Any = field(default=None, init=False)

    def _add(self, data, mask):
        kind = data.dtype.kind
        if kind not in "iuf":
            raise TypeError(f"{type(self).__name__}: unsupported dtype {data.dtype}")
        if kind == "f":
            fill, nan = (numpy.inf if self._high else -numpy.inf), numpy.isnan(data)
            bad = mask | nan
            if self._nan_is_value and (nan := nan & ~mask).any():
                self._nan = nan if self._nan is None else self._nan | nan
        else:
            info = numpy.iinfo(data.dtype)
            fill, bad = (info.max if self._high else info.min), mask
        self._stack.append(numpy.where(bad, fill, data))
        if self._cnt is None:
            self._cnt = numpy.zeros(data.shape, numpy.uint16)
        elif self._n > 65535 and self._cnt.dtype == numpy.uint16:
            self._cnt = self._cnt.astype(numpy.int32)
        self._cnt += ~bad


@dataclass(repr=False, eq=False)
class MedianMethod(_OrderStatMethod):
    """``numpy.ma.median`` of the stack.

    Floats: ``(lo + hi) / 2`` in the input float dtype (so an odd count can overflow to inf,
    exactly like numpy.ma), NaN if any unmasked NaN. Integers: float64 mean of the two
    middle values, cast back by truncation.
    """

    name: ClassVar[str] = "median"
    _nan_is_value: ClassVar[bool] = True
    enforce_data_type: bool = True

    def _compute(self):
        n = numpy.arange(len(self._stack) + 1)
        lo, hi = numpy.maximum(n - 1, 0) // 2, n // 2
        a, b = _k.order_stats(self._stack, self._cnt, lo, hi)
        masked = self._cnt == 0
        if self._dtype.kind == "f":
            res = (a + b) / 2.0
            if self._nan is not None:
                res[self._nan] = numpy.nan
                masked &= ~self._nan
        else:
            res = (a.astype("f8") + b.astype("f8")) / 2.0
        return self._cast(res, masked, self.enforce_data_type)


@dataclass(repr=False, eq=False)
class PercentileMethod(_OrderStatMethod):
    """``percentile``-th percentile over unmasked, non-NaN observations.

    Equal to ``numpy.nanpercentile(stack_as_float64_with_masked_as_nan, percentile, axis=0,
    method="linear")``: virtual index ``(n - 1) * q`` with ``q = percentile / 100``, linear
    interpolation between its floor and floor + 1 neighbours with numpy's ``_lerp``
    (``a + (b - a) * t``, or ``b - (b - a) * (1 - t)`` when ``t >= 0.5``), in float64, so
    ``inf`` neighbours give numpy's NaN. The result is cast back to the input dtype with
    ``astype`` (integers truncate) unless ``enforce_data_type`` is False. Masked where a
    pixel has no valid observation.
    """

    percentile: int = 50
    enforce_data_type: bool = True

    def __post_init__(self):
        if isinstance(self.percentile, bool) or self.percentile not in range(1, 100):
            raise ValueError(f"percentile must be an integer in 1..99, got {self.percentile!r}")
        self._high = self.percentile <= 50  # valid values at the low end of the sort

    def __repr__(self) -> str:
        return f"<Mosaic: PercentileMethod p{self.percentile}>"

    def _compute(self):
        big = len(self._stack)
        q = numpy.float64(self.percentile) / 100  # == numpy.true_divide(percentile, 100)
        pos = numpy.zeros((2, big + 1), numpy.intp)
        gamma = numpy.zeros(big + 1)
        for n in range(1, big + 1):
            virtual = (n - 1) * q
            if virtual >= n - 1:  # numpy uses index -1 for both and gamma = virtual + 1
                prev = nxt = n - 1
                gamma[n] = virtual - (-1)
            else:
                prev = int(numpy.floor(virtual))
                nxt, gamma[n] = prev + 1, virtual - prev
            pos[:, n] = (prev, nxt) if self._high else (big - n + prev, big - n + nxt)
        pos[:, 0] = pos[:, 1]
        a, b = _k.order_stats(self._stack, self._cnt, pos[0], pos[1])
        res = _k.lerp(a.astype("f8"), b.astype("f8"), gamma[self._cnt])
        return self._cast(res, self._cnt == 0, self.enforce_data_type)


@dataclass(repr=False, eq=False)
class GeomedianMethod(_Reducer):
    """Multi-band geometric median per pixel (Vardi-Zhang modified Weiszfeld, float64).

    An observation counts only where all its bands are unmasked and finite. Starts from the
    mean of the valid observations and stops a pixel once a step is shorter than
    ``rtol`` x (largest distance of an observation from that mean), or after ``max_iter``
    iterations. Floats are cast with ``astype``; integers are rounded to nearest (half to
    even) and clipped to the dtype range. Masked (all bands) where no observation is valid.
    """

    name: ClassVar[str] = "geomedian"
    rtol: float = 1e-7
    max_iter: int = 500
    _layers: list = field(default_factory=list, init=False)

    def _add(self, data, mask):
        if data.ndim != 3:
            raise ValueError(f"geomedian needs (bands, height, width) arrays, got {data.shape}")
        valid = ~mask.any(axis=0)
        if data.dtype.kind == "f":
            valid &= numpy.isfinite(data).all(axis=0)
        self._layers.append((data, valid))

    def _compute(self):
        bands, shape = self._layers[0][0].shape[0], self._layers[0][1].shape
        datas = [d.reshape(bands, -1) for d, _ in self._layers]
        valids = numpy.stack([v.reshape(-1) for _, v in self._layers])
        n_valid = valids.sum(0)
        out = numpy.zeros((bands, n_valid.size))
        step = max(1, _k.CHUNK // (2 * len(datas)))
        for s in range(0, n_valid.size, step):
            idx = s + numpy.flatnonzero(n_valid[s : s + step])
            if idx.size:
                x = numpy.stack([d[:, idx] for d in datas]).astype("f8")
                out[:, idx] = _k.weiszfeld(x, valids[:, idx], self.rtol, self.max_iter)
        if self._dtype.kind in "iu":
            info = numpy.iinfo(self._dtype)
            out = numpy.clip(numpy.rint(out), info.min, info.max)
        masked = numpy.broadcast_to(n_valid.reshape(shape) == 0, (bands, *shape)).copy()
        return self._cast(out.reshape(bands, *shape), masked, True)


_CLASSES: tuple[type[_Method], ...] = (
    FirstMethod, HighestMethod, LowestMethod, MeanMethod, MedianMethod, StdevMethod,
    CountMethod, LastBandHighMethod, LastBandLowMethod, GeomedianMethod,
)
#: Method name -> class (rio-tiler's ``PixelSelectionMethod`` names plus ``geomedian``).
METHODS: dict[str, type[MosaicMethodBase]] = {cls.name: cls for cls in _CLASSES}


def make_method(name: str) -> MosaicMethodBase:
    """Instantiate a method by name: a ``METHODS`` key or ``p1`` ... ``p99``.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    key = name.strip().lower()
    if key in METHODS:
        return METHODS[key]()
    if match := re.fullmatch(r"p([1-9][0-9]?)", key):
        return PercentileMethod(int(match.group(1)))
    raise ValueError(f"unknown pixel selection {name!r}; valid: {', '.join(METHODS)}, p1..p99")


# --------------------------------------------------------------------------- QA decoding
#: Landsat Collection 2 ``QA_PIXEL`` flag bits usable for exclusion (clear=6 is never one).
LANDSAT_QA_BITS: dict[str, int] = {
    "fill": 0, "dilated_cloud": 1, "cirrus": 2, "cloud": 3, "cloud_shadow": 4, "snow": 5,
    "water": 7,
}
LANDSAT_C2_DEFAULT = ("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow")
#: Sentinel-2 L2A scene classification (SCL) classes.
S2_SCL_CLASSES: dict[str, int] = {
    "no_data": 0, "saturated": 1, "dark_area": 2, "topographic_shadow": 2, "cloud_shadow": 3,
    "vegetation": 4, "not_vegetated": 5, "water": 6, "unclassified": 7, "cloud_medium": 8,
    "cloud_high": 9, "cirrus": 10, "snow": 11,
}
S2_SCL_DEFAULT = (
    "no_data", "saturated", "cloud_shadow", "cloud_medium", "cloud_high", "cirrus", "snow",
)


def _lookup(names: Iterable[str], table: Mapping[str, int], what: str) -> list[int]:
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown {what} name(s) {unknown}; valid: {', '.join(table)}")
    return [table[n] for n in names]


def _int_array(values: Any, what: str) -> numpy.ndarray:
    arr = numpy.asarray(numpy.ma.getdata(values))
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{what} must be an integer array, got {arr.dtype}")
    return arr


def landsat_qa_mask(qa: numpy.ndarray, names: Iterable[str] = LANDSAT_C2_DEFAULT) -> numpy.ndarray:
    """Decode a Landsat C2 ``QA_PIXEL`` band: True where the observation must be excluded.

    Args:
        qa: integer QA_PIXEL values.
        names: flags to exclude, keys of ``LANDSAT_QA_BITS``.

    Raises:
        ValueError: unknown flag name.
    """
    bits = sum({1 << b for b in _lookup(names, LANDSAT_QA_BITS, "Landsat QA_PIXEL flag")})
    return (_int_array(qa, "qa") & bits) != 0


def s2_scl_mask(scl: numpy.ndarray, names: Iterable[str] = S2_SCL_DEFAULT) -> numpy.ndarray:
    """Decode a Sentinel-2 L2A ``SCL`` band: True where the class is one of ``names``.

    Raises:
        ValueError: unknown class name.
    """
    codes = sorted(set(_lookup(names, S2_SCL_CLASSES, "Sentinel-2 SCL class")))
    return numpy.isin(_int_array(scl, "scl"), codes)


_BINOPS = {
    ast.BitAnd: numpy.bitwise_and, ast.BitOr: numpy.bitwise_or,
    ast.LShift: numpy.left_shift, ast.RShift: numpy.right_shift,
}
_CMPS = {
    ast.Lt: numpy.less, ast.LtE: numpy.less_equal, ast.Gt: numpy.greater,
    ast.GtE: numpy.greater_equal, ast.Eq: numpy.equal, ast.NotEq: numpy.not_equal,
}


def expression_mask(arrays: Mapping[str, numpy.ndarray], expression: str) -> numpy.ndarray:
    """Evaluate a restricted boolean expression (True = exclude) over named arrays.

    Python syntax and precedence (``&`` binds tighter than comparisons); allowed: names of
    ``arrays``, int/float literals (``0b``/``0x`` included, unary ``-``), ``& | ~ << >>``,
    comparisons (chained ones too), ``and``/``or``/``not`` as element-wise logical ops.
    Integer arrays are widened to int64 first; a non-boolean result means "non-zero".

    Raises:
        ValueError: syntax error, unknown name or any other construct.
    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"invalid expression {expression!r}: {exc.msg}") from None
    env = {}
    for key, value in arrays.items():
        arr = numpy.asarray(numpy.ma.getdata(value))
        env[key] = arr.astype(numpy.int64) if arr.dtype.kind in "iu" and arr.itemsize < 8 else arr

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Name) and node.id in env:
            return env[node.id]
        if isinstance(node, ast.Name):
            raise ValueError(f"unknown name {node.id!r}; available: {', '.join(env)}")
        if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            return node.value
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
                return -ev(node.operand)
            ops = {ast.Invert: numpy.invert, ast.Not: numpy.logical_not}
            if type(node.op) in ops:
                return ops[type(node.op)](ev(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.BoolOp):
            func = numpy.logical_and if isinstance(node.op, ast.And) else numpy.logical_or
            return func.reduce([ev(v) for v in node.values])
        if isinstance(node, ast.Compare) and all(type(o) in _CMPS for o in node.ops):
            left, out = ev(node.left), True
            for op, comp in zip(node.ops, node.comparators):
                right = ev(comp)
                out = numpy.logical_and(out, _CMPS[type(op)](left, right))
                left = right
            return out
        raise ValueError(f"unsupported syntax in expression: {ast.dump(node)[:60]}")

    try:
        result = numpy.asarray(ev(tree.body))
    except TypeError as exc:
        raise ValueError(f"cannot evaluate {expression!r}: {exc}") from None
    shape = numpy.broadcast_shapes(*(a.shape for a in env.values()))
    return numpy.broadcast_to(result if result.dtype == bool else result != 0, shape).copy()
