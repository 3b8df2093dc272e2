"""Vectorised numpy kernels behind :mod:`mosaic_assembler.selection`.

Everything here works on plain ndarrays (no ``numpy.ma``), processes pixels in cache-sized
chunks and reproduces the exact floating-point operation order of ``numpy.ma`` where the
public methods promise bit-identical results.
"""

from __future__ import annotations

from functools import lru_cache

import numpy

#: Pixels per chunk for the stacked kernels (keeps ``depth x CHUNK`` rows in L2 cache).
CHUNK = 16384
_TINY = numpy.finfo(float).tiny  # numpy.ma's _DomainSafeDivide tolerance (a float64 scalar)


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
        ``|num| * tiny >= |cnt|`` (the "safe divide" domain); there ``data`` holds ``num``
        (numpy.ma puts the numerator back), as ``numpy.ma.var`` relies on.
    """
    with numpy.errstate(all="ignore"):
        res = numpy.true_divide(num, cnt)
        bad = ~numpy.isfinite(res)
        bad |= numpy.absolute(num) * _TINY >= numpy.absolute(cnt)
    numpy.copyto(res, num, where=bad)
    return res, bad


class RunningSum:
    """``filled(0).sum(axis=0, dtype=acc)`` of a stack, accumulated one layer at a time.

    numpy reduces axis 0 of a C-contiguous ``(N, ...)`` stack by adding layer after layer,
    except when a layer has a single element: then the reduction runs over a contiguous
    axis and numpy uses pairwise summation. That case keeps the (tiny) column and lets
    numpy reduce it.
    """

    def __init__(self, dtype: numpy.dtype):
        self.dtype = acc_dtype(dtype)
        self.total: numpy.ndarray | None = None
        self.count: numpy.ndarray | None = None
        self.column: list[numpy.ndarray] | None = None

    def add(self, data: numpy.ndarray, valid: numpy.ndarray) -> None:
        """Add one layer; ``valid`` is the unmasked (True) map."""
        if self.count is None:
            self.count = numpy.zeros(data.shape, numpy.int32)
            if data.size == 1:
                self.column = []
            else:
                self.total = numpy.zeros(data.shape, self.dtype)
        self.count += valid
        if self.column is not None:
            self.column.append(numpy.where(valid, data, 0))
        else:
            numpy.add(self.total, data, out=self.total, where=valid)

    def result(self) -> tuple[numpy.ndarray, numpy.ndarray]:
        """Return ``(sum, count)``; count is ``intp`` like ``MaskedArray.count``."""
        total = self.total
        if self.column is not None:
            total = numpy.stack(self.column).sum(axis=0, dtype=self.dtype)
        return total, self.count.astype(numpy.intp)


def ma_mean(running: RunningSum) -> tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Replicate ``MaskedArray.mean(axis=0)`` of the stack (before any ``astype``).

    Returns:
        ``(mean, masked, count)``; ``mean`` is float64 for every input dtype because
        ``dsum * 1.`` keeps the accumulator dtype and ``/ count`` (intp) promotes.
    """
    total, cnt = running.result()
    mean, bad = ma_divide(total * 1.0, cnt)
    bad |= cnt == 0
    return mean, bad, cnt


def sum_sq_dev(
    datas: list[numpy.ndarray], masks: list[numpy.ndarray], mean: numpy.ndarray,
    skip: numpy.ndarray,
) -> numpy.ndarray:
    """``sum_i (float64(x_i) - mean)**2`` over unmasked ``x_i``, numpy.ma.var's order.

    Pixels in ``skip`` (a masked mean) contribute nothing, as in ``self - mean``.
    """
    shape = mean.shape
    if mean.size == 1:
        col = [numpy.where(m | skip, 0.0, (d.astype("f8") - mean) ** 2) for d, m in zip(datas, masks)]
        return numpy.stack(col).sum(axis=0)
    mean, skip = mean.reshape(-1), skip.reshape(-1)
    flat = [(d.reshape(-1), m.reshape(-1)) for d, m in zip(datas, masks)]
    out = numpy.zeros(mean.size)
    tmp = numpy.empty(CHUNK)
    for s in range(0, mean.size, CHUNK):
        sl = slice(s, s + CHUNK)
        acc, mu, sk, t = out[sl], mean[sl], skip[sl], tmp[: min(CHUNK, mean.size - s)]
        for d, m in flat:
            numpy.subtract(d[sl], mu, out=t)
            numpy.multiply(t, t, out=t)
            numpy.add(acc, t, out=acc, where=~(m[sl] | sk))
    return out.reshape(shape)


# --------------------------------------------------------------------------- order stats
@lru_cache(maxsize=64)
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


@lru_cache(maxsize=256)
def _pruned(n: int, needed: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Drop comparators that cannot influence the ``needed`` output positions."""
    need, keep = set(needed), []
    for a, b in reversed(_batcher(n)):
        if a in need or b in need:
            keep.append((a, b))
            need.update((a, b))
    return tuple(reversed(keep))


def order_stats(
    stack: list[numpy.ndarray], count: numpy.ndarray, lut_a: numpy.ndarray, lut_b: numpy.ndarray,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Per-pixel order statistics of a filled stack.

    Args:
        stack: N equally shaped layers; missing values already replaced by a sentinel that
            sorts after (or before) every valid value.
        count: number of valid values per pixel.
        lut_a: for each count ``n`` (index), the sorted position wanted for output ``a``.
        lut_b: same for output ``b``.

    Returns:
        ``(a, b)`` arrays holding the values at those sorted positions, per pixel.
    """
    n, shape = len(stack), count.shape
    needed = tuple(sorted(set(lut_a.tolist()) | set(lut_b.tolist())))
    comps = _pruned(n, needed)
    col = numpy.full(n, -1, numpy.intp)
    col[list(needed)] = numpy.arange(len(needed))
    la, lb = col[lut_a], col[lut_b]
    flat = [s.reshape(-1) for s in stack]
    cnt = count.reshape(-1)
    size = cnt.size
    dtype = stack[0].dtype
    out_a, out_b = numpy.empty(size, dtype), numpy.empty(size, dtype)
    work = numpy.empty((n + 1, min(CHUNK, size)), dtype)
    sel = numpy.empty((len(needed), work.shape[1]), dtype)
    for s in range(0, size, CHUNK):
        k = min(CHUNK, size - s)
        rows = [work[i, :k] for i in range(n + 1)]
        for i in range(n):
            numpy.copyto(rows[i], flat[i][s : s + k])
        spare = rows.pop()
        for a, b in comps:  # compare-exchange via buffer rotation: 2 ufunc calls each
            ra, rb = rows[a], rows[b]
            numpy.minimum(ra, rb, out=spare)
            numpy.maximum(ra, rb, out=rb)
            rows[a], spare = spare, ra
        sl = sel[:, :k]
        for j, pos in enumerate(needed):
            sl[j] = rows[pos]
        c = cnt[s : s + k]
        out_a[s : s + k] = numpy.take_along_axis(sl, la[c][None], 0)[0]
        out_b[s : s + k] = numpy.take_along_axis(sl, lb[c][None], 0)[0]
    return out_a.reshape(shape), out_b.reshape(shape)


def lerp(a: numpy.ndarray, b: numpy.ndarray, t: numpy.ndarray) -> numpy.ndarray:
    """numpy's ``_lerp`` (quantile interpolation), same operations and order."""
    diff = b - a
    res = a + diff * t
    numpy.subtract(b, diff * (1 - t), out=res, where=t >= 0.5)
    return res


# --------------------------------------------------------------------------- geomedian
def weiszfeld(
    x: numpy.ndarray, valid: numpy.ndarray, rtol: float, max_iter: int,
) -> numpy.ndarray:
    """Geometric median per pixel (Vardi-Zhang modified Weiszfeld, float64).

    Args:
        x: ``(N, B, K)`` float64 observations (garbage where invalid).
        valid: ``(N, K)`` observation validity (at least one valid per pixel).
        rtol: stop a pixel once a step is shorter than ``rtol`` times the data spread
            (largest distance from an observation to the initial mean).
        max_iter: hard cap on iterations per pixel.

    Returns:
        ``(B, K)`` float64 geometric medians.
    """
    x = numpy.where(valid[:, None], x, 0.0)
    w = valid.astype("f8")
    y = x.sum(0) / w.sum(0)
    spread = numpy.sqrt((((x - y) ** 2).sum(1) * w).max(0))
    active = numpy.flatnonzero(spread > 0)
    tol = rtol * spread
    for _ in range(max_iter):
        if active.size == 0:
            break
        xa, ya, wa = x[:, :, active], y[:, active], w[:, active]
        dist = numpy.sqrt(((xa - ya) ** 2).sum(1))
        hit = (dist == 0) & (wa > 0)
        with numpy.errstate(divide="ignore", invalid="ignore"):
            dinv = numpy.where(hit, 0.0, wa / dist)
            s = dinv.sum(0)
            t = (dinv[:, None] * xa).sum(0) / s
            eta = hit.sum(0)
            r = numpy.sqrt((((t - ya) * s) ** 2).sum(0))
            g = numpy.where(eta > 0, numpy.minimum(1.0, eta / r), 0.0)
        g = numpy.where((s > 0) & numpy.isfinite(g), g, 1.0)
        t = numpy.where(s > 0, t, ya)
        y1 = (1.0 - g) * t + g * ya
        step = numpy.sqrt(((y1 - ya) ** 2).sum(0))
        y[:, active] = y1
        active = active[step > tol[active]]
    return y
