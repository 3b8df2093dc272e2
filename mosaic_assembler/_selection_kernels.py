"""Vectorised numpy kernels behind :mod:`mosaic_assembler.selection`'s methods.

Everything here works on plain ndarrays (no ``numpy.ma``), processes pixels in cache-sized
chunks and reproduces the exact floating-point operation order of ``numpy.ma`` where the
public methods promise bit-identical results. The geomedian's are in
:mod:`._selection_geomedian`, the QA decoding's in :mod:`._selection_qa`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import numpy

#: Pixels per chunk for the stacked kernels (keeps ``depth x CHUNK`` rows in L2 cache).
CHUNK = 16384
_TINY = numpy.finfo(float).tiny  # numpy.ma's _DomainSafeDivide tolerance (a float64 scalar)


def uview(a: numpy.ndarray) -> numpy.ndarray:
    """View ``a`` as unsigned integers of the same width (for branch-free bit selects)."""
    return a.view(f"u{a.dtype.itemsize}")


def select(cond: numpy.ndarray, a: Any, b: numpy.ndarray, out: numpy.ndarray | None = None):
    """Bit-exact ``numpy.where(cond, a, b)`` for one numeric dtype (``a`` may be a scalar).

    Computes ``b ^ (cond * (a ^ b))`` on unsigned-integer views: SIMD friendly, several
    times faster than ``numpy.where`` or ``copyto(where=)`` on random masks. ``out`` may be
    ``a`` or ``b`` (then updated in place).
    """
    ub = uview(b)
    ua = uview(numpy.asarray(a, b.dtype))
    if out is not None and numpy.may_share_memory(out, b):
        diff = numpy.bitwise_xor(ua, ub)
        numpy.multiply(diff, cond, out=diff)
        numpy.bitwise_xor(ub, diff, out=uview(out))
        return out
    shape = numpy.broadcast_shapes(cond.shape, b.shape)
    res = uview(out) if out is not None else numpy.empty(shape, ub.dtype)
    numpy.bitwise_xor(ua, ub, out=res)
    numpy.multiply(res, cond, out=res)
    numpy.bitwise_xor(res, ub, out=res)
    return res.view(b.dtype)


def acc_dtype(dtype: numpy.dtype) -> numpy.dtype:
    """Return the accumulator dtype ``numpy.ma.mean`` uses (``dtype=None``) for ``dtype``."""
    if dtype.kind in "biu":
        return numpy.dtype("f8")
    if dtype == numpy.float16:
        return numpy.dtype("f4")
    return dtype


def ma_divide(num: numpy.ndarray, cnt: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Replicate ``numpy.ma.divide(num, cnt)`` on plain arrays.

    Returns:
        ``(data, masked)``: masked where the quotient is not finite or where
        ``|num| * tiny >= |cnt|`` (numpy.ma's safe-divide domain); there ``data`` holds
        ``num`` (numpy.ma puts the numerator back), which ``numpy.ma.var`` exposes.

    """
    with numpy.errstate(all="ignore"):
        res = numpy.true_divide(num, cnt)
        bad = ~numpy.isfinite(res)
        bad |= numpy.absolute(num) * _TINY >= numpy.absolute(cnt)
    numpy.copyto(res, num, where=bad)
    return res, bad


class RunningSum:
    """``filled(0).sum(axis=0, dtype=acc)`` of a stack, accumulated one layer at a time.

    numpy reduces axis 0 of a C-contiguous ``(N, ...)`` stack by adding layer after layer
    (same order as here), except when a layer has a single element: then the reduction
    runs along a contiguous axis with pairwise summation, so that case keeps the tiny
    column and lets numpy reduce it. Integers up to 32 bits are summed exactly in int64
    (int32 for 8/16-bit data): every float64 partial sum numpy forms is then an exact
    integer, so the totals are equal.
    """

    def __init__(self, dtype: numpy.dtype):
        self.dtype = acc_dtype(dtype)
        self.exact_int = dtype.kind in "biu" and dtype.itemsize <= 4
        self.total: Any = None
        self.count: Any = None
        self.column: list[numpy.ndarray] | None = None
        self.layers = 0

    def add(self, data: numpy.ndarray, mask: numpy.ndarray) -> None:
        """Add one layer (``mask`` True = masked), reusing scratch buffers."""
        if self.count is None:
            self.count = numpy.zeros(data.shape, numpy.int32)
            self.valid, self.filled = numpy.empty(data.shape, bool), numpy.empty_like(data)
            if data.size == 1:
                self.column = []
            else:
                small = self.exact_int and data.dtype.itemsize <= 2  # int32 holds 32767 feeds
                total = ("i4" if small else "i8") if self.exact_int else self.dtype
                self.total = numpy.zeros(data.shape, total)
        elif self.layers == 32767 and self.total is not None:  # int32 no longer safe
            self.total = self.total.astype("i8" if self.exact_int else self.dtype)
        self.layers += 1
        numpy.logical_not(mask, out=self.valid)
        self.count += self.valid
        if data.dtype.kind in "biu":
            numpy.multiply(data, self.valid, out=self.filled)
        else:  # filled(0) bit for bit, whatever hides under the mask
            numpy.multiply(uview(data), self.valid, out=uview(self.filled))
        if self.column is not None:
            self.column.append(self.filled.copy())
        else:  # starting from +0.0 like numpy's reduction (a sum of -0.0s is +0.0)
            numpy.add(self.total, self.filled, out=self.total)

    def result(self) -> tuple[numpy.ndarray, numpy.ndarray]:
        """Return ``(sum, count)``; count is ``intp`` like ``MaskedArray.count``."""
        if self.column is not None:
            total = numpy.stack(self.column).sum(axis=0, dtype=self.dtype)
        else:
            total = self.total.astype(self.dtype, copy=False)
        return total, self.count.astype(numpy.intp)


def ma_mean(running: RunningSum) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Replicate ``MaskedArray.mean(axis=0)`` of the stack (before any ``astype``).

    Returns:
        ``(mean, masked, count)``; ``mean`` is float64 for every input dtype because
        ``dsum * 1.`` keeps the accumulator dtype and ``/ count`` (intp) promotes.

    """
    total, cnt = running.result()
    if running.exact_int:  # finite, far from the safe-divide domain: only count == 0
        with numpy.errstate(all="ignore"):
            return total / cnt, cnt == 0, cnt
    mean, bad = ma_divide(total * 1.0, cnt)
    bad |= cnt == 0
    return mean, bad, cnt


def sum_sq_dev(
    layers: list[tuple[numpy.ndarray, numpy.ndarray]],
    mean: numpy.ndarray,
    skip: numpy.ndarray,
) -> numpy.ndarray:
    """``sum_i (float64(x_i) - mean)**2`` over unmasked ``x_i``, in numpy.ma.var's order.

    Pixels in ``skip`` (a masked mean) contribute nothing, as in numpy.ma's ``self - mean``.
    """
    if mean.size == 1:
        return numpy.stack(
            [numpy.where(m | skip, 0.0, (d.astype("f8") - mean) ** 2) for d, m in layers]
        ).sum(axis=0)
    shape, mean, keep = mean.shape, mean.reshape(-1), ~skip.reshape(-1)
    flat = [(d.reshape(-1), m.reshape(-1)) for d, m in layers]
    out = numpy.zeros(mean.size)
    tmp, valid = numpy.empty(CHUNK), numpy.empty(CHUNK, bool)
    for s in range(0, mean.size, CHUNK):
        sl, k = slice(s, s + CHUNK), min(CHUNK, mean.size - s)
        acc, mu, kp, t, v = out[sl], mean[sl], keep[sl], tmp[:k], valid[:k]
        bits = uview(t)
        for d, m in flat:
            numpy.subtract(d[sl], mu, out=t)
            numpy.multiply(t, t, out=t)
            numpy.greater(kp, m[sl], out=v)  # keep & ~masked
            numpy.multiply(bits, v, out=bits)  # zero masked terms, even inf/NaN ones
            numpy.add(acc, t, out=acc)
    return out.reshape(shape)


# --------------------------------------------------------------------------- order stats
@functools.lru_cache(maxsize=64)
def _batcher(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher odd-even merge sorting network for ``n`` wires (min goes to the low wire)."""
    p2 = 1
    while p2 < n:
        p2 *= 2
    comps = []
    p = 1
    while p < p2:
        k = p
        while k >= 1:
            for j in range(k % p, p2 - k, 2 * k):
                for i in range(min(k, p2 - j - k)):
                    a, b = i + j, i + j + k
                    # wires >= n hold +inf padding: comparators touching them never swap
                    if a // (2 * p) == b // (2 * p) and b < n:
                        comps.append((a, b))
            k //= 2
        p *= 2
    return tuple(comps)


@functools.lru_cache(maxsize=256)
def _pruned(n: int, needed: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Drop comparators that cannot influence the ``needed`` output positions."""
    need, keep = set(needed), []
    for a, b in reversed(_batcher(n)):
        if a in need or b in need:
            keep.append((a, b))
            need.update((a, b))
    return tuple(reversed(keep))


def sentinels(dtype: numpy.dtype) -> tuple[Any, Any]:
    """Values sorting at or below / at or above every value of ``dtype`` (NaN excluded)."""
    if dtype.kind == "f":
        return tuple(numpy.array([-numpy.inf, numpy.inf], dtype))
    info = numpy.iinfo(dtype)
    return tuple(numpy.array([info.min, info.max], dtype))


def sorted_chunks(
    layers: list[tuple[numpy.ndarray, numpy.ndarray]],
    mode: str,
    needed: tuple[int, ...],
    exclude_nan: bool,
) -> Iterator[tuple[slice, list[numpy.ndarray], numpy.ndarray]]:
    """Sort a masked stack per pixel, chunk by chunk, with a pruned sorting network.

    Masked values (and NaN when ``exclude_nan``) are replaced by sentinels: ``mode``
    "high" puts them above the valid values (valid ones then sit at sorted positions
    ``0..n-1``), "low" below (``N-n..N-1``), "alternate" gives them low, high, low, ... in
    feed order per pixel, which centres the valid values at ``ceil((N-n)/2)..``. A NaN that
    is kept counts as valid and, as ``numpy.minimum``/``maximum`` propagate it through
    every comparator on its way, turns every needed position of its pixel into NaN.

    Yields:
        ``(slice, rows, n_valid)``: ``rows[p]`` holds sorted position ``p`` for every ``p``
        in ``needed`` (other rows are garbage). Buffers are reused by the next chunk.

    """
    n, dtype = len(layers), layers[0][0].dtype
    lo, hi = sentinels(dtype)
    ulo, uxor = uview(numpy.asarray(lo)), uview(numpy.asarray(lo)) ^ uview(numpy.asarray(hi))
    flat = [(d.reshape(-1), m.reshape(-1)) for d, m in layers]
    comps, size = _pruned(n, needed), flat[0][0].size
    width = min(CHUNK, size)
    pool = numpy.empty((n + 1, width), dtype)
    n_bad, parity = numpy.empty(width, numpy.int32), numpy.empty(width, bool)
    bad = numpy.empty(width, bool)
    exclude_nan &= dtype.kind == "f"
    for s in range(0, size, CHUNK):
        k = min(CHUNK, size - s)
        sl, rows = slice(s, s + k), [row[:k] for row in pool]
        nb, par, bd = n_bad[:k], parity[:k], bad[:k]
        nb[...], par[...] = 0, False
        for row, (d, m) in zip(rows, flat, strict=False):
            dc, b = d[sl], m[sl]
            if exclude_nan:
                numpy.isnan(dc, out=bd)
                b = numpy.logical_or(b, bd, out=bd)
            nb += b
            if mode == "alternate":
                numpy.multiply(par, uxor, out=uview(row))
                if ulo:
                    numpy.bitwise_xor(uview(row), ulo, out=uview(row))
                par ^= b
                select(b, row, dc, out=row)
            else:
                select(b, hi if mode == "high" else lo, dc, out=row)
        spare = rows.pop()
        for low, high in comps:  # compare-exchange by buffer rotation: 2 ufunc calls
            ra, rb = rows[low], rows[high]
            numpy.minimum(ra, rb, out=spare)
            numpy.maximum(ra, rb, out=rb)
            rows[low], spare = spare, ra
        yield sl, rows, n - nb


def pick(rows: list[numpy.ndarray], lut: numpy.ndarray, n_valid: numpy.ndarray) -> numpy.ndarray:
    """Per pixel, ``rows[lut[n_valid]]`` (``lut`` indexed by valid count; entry 0 unused)."""
    at_odd, at_even = lut[1], lut[2] if lut.size > 2 else lut[1]
    if all(v == (at_odd if i % 2 else at_even) for i, v in enumerate(lut.tolist()[1:], 1)):
        if at_odd == at_even:  # constant or parity-only positions (the median): no gather
            return rows[at_odd]
        return select((n_valid & 1).astype(bool), rows[at_odd], rows[at_even])
    positions = sorted(set(lut.tolist()[1:]))
    rank = numpy.array([positions.index(v) if v in positions else 0 for v in lut.tolist()])
    stacked = numpy.stack([rows[p] for p in positions])
    return numpy.take_along_axis(stacked, rank[n_valid][None], 0)[0]


def reduce_order_stats(
    layers: list[tuple[numpy.ndarray, numpy.ndarray]],
    mode: str,
    ranks: list[tuple[int, int]],
    combine: Any,
    out_dtype: Any,
    nan_is_value: bool,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Per pixel, ``combine(a, b, n_valid)`` of the valid values ranked ``ranks[n - 1]``.

    Returns:
        ``(values, masked)``: masked where no value is valid (unmasked NaNs are values when
        ``nan_is_value``, as in ``numpy.ma.median``, else they are left out).

    """
    depth, shape = len(layers), layers[0][0].shape
    offset = {
        "high": lambda n: 0,
        "low": lambda n: depth - n,
        "alternate": lambda n: (depth - n + 1) // 2,
    }[mode]
    luts = numpy.array(
        [(0, 0)] + [(offset(n) + a, offset(n) + b) for n, (a, b) in enumerate(ranks, 1)]
    ).T
    out, masked = numpy.empty(shape, out_dtype), numpy.empty(shape, bool)
    flat_out, flat_mask = out.reshape(-1), masked.reshape(-1)
    needed = tuple(sorted(set(luts[:, 1:].ravel().tolist())))
    for sl, rows, n_valid in sorted_chunks(layers, mode, needed, not nan_is_value):
        a, b = pick(rows, luts[0], n_valid), pick(rows, luts[1], n_valid)
        with numpy.errstate(invalid="ignore", over="ignore"):
            flat_out[sl] = combine(a, b, n_valid)
        numpy.equal(n_valid, 0, out=flat_mask[sl])
    return out, masked


def median_combiner(dtype: numpy.dtype, enforce: bool):
    """``(combine(lo, hi, n_valid), out dtype)`` reproducing ``numpy.ma.median``.

    Floats: ``(lo + hi) / 2`` in the input dtype (NaN arrives through the network).
    Integers: float64 ``(lo + hi) / 2`` then ``astype`` (truncation toward zero), done in
    exact integer arithmetic when the cast back is wanted and values fit 32 bits.
    """
    if dtype.kind == "f":  # numpy.ma.sum of (lo, hi) starts from +0.0
        return (lambda a, b, _: ((0.0 + a) + b) / 2.0), dtype
    if not enforce or dtype.itemsize > 4:
        return (lambda a, b, _: (a.astype("f8") + b) / 2.0), numpy.dtype("f8")
    if dtype.kind == "u":  # a <= b: floor((a + b) / 2) without overflow
        return (lambda a, b, _: a + ((b - a) >> 1)), dtype

    def truncated(a, b, _):
        total = a.astype(numpy.int64) + b
        return (total + (total < 0)) // 2

    return truncated, dtype


def lerp(a: numpy.ndarray, b: numpy.ndarray, t: numpy.ndarray) -> numpy.ndarray:
    """Replicate numpy's ``_lerp`` (quantile interpolation): same operations, same order."""
    diff = b - a
    res = a + diff * t
    numpy.subtract(b, diff * (1 - t), out=res, where=t >= 0.5)
    return res


def linear_ranks(depth: int, percentile: int) -> tuple[list[tuple[int, int]], numpy.ndarray]:
    """Return numpy's "linear" quantile neighbours and weights for valid counts ``1..depth``.

    Returns:
        ``(ranks, gamma)``: ``ranks[n - 1] = (prev, next)`` ranks among the ``n`` sorted
        valid values, ``gamma[n]`` the interpolation weight (``gamma[0]`` unused). Mirrors
        ``_quantile``: ``virtual = (n - 1) * q``; at or past the last rank numpy indexes
        ``-1`` twice, so gamma becomes ``virtual - (-1)``.

    """
    q = numpy.float64(percentile) / 100  # == numpy.true_divide(percentile, 100)
    ranks, gamma = [], [0.0]
    for n in range(1, depth + 1):
        virtual = (n - 1) * q
        if virtual >= n - 1:
            ranks.append((n - 1, n - 1))
            gamma.append(virtual - (-1))
        else:
            prev = int(numpy.floor(virtual))
            ranks.append((prev, prev + 1))
            gamma.append(virtual - prev)
    return ranks, numpy.array(gamma)
