"""Geometric-median kernels behind :mod:`mosaic_assembler.selection`'s ``geomedian``."""

from __future__ import annotations

import numpy


def _at_data_point(x: numpy.ndarray, w: numpy.ndarray, k: numpy.ndarray):
    """Observation ``k`` per pixel and whether it is a geometric median (||R_k|| <= mult_k)."""
    xk = numpy.take_along_axis(x, k[None, None], 0)[0]
    diff = x - xk
    dist = numpy.sqrt(numpy.einsum("nbk,nbk->nk", diff, diff))
    same = (dist == 0) & (w > 0)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        unit = numpy.where((w > 0) & ~same, w / dist, 0.0)[:, None] * diff
    pull = numpy.sqrt((unit.sum(0) ** 2).sum(0))
    return xk, pull <= same.sum(0)


def _newton(xa, wa, ya, diff, dist, dinv, s):
    """Newton candidate ``y - H^-1 grad`` for sum_i w_i ||x_i - y|| (H lightly regularised)."""
    grad = -numpy.einsum("nk,nbk->kb", dinv, diff)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        c = numpy.where(dinv > 0, dinv / (dist * dist), 0.0)
    hess = -numpy.einsum("nk,nbk,nck->kbc", c, diff, diff)
    eye = numpy.eye(diff.shape[1])
    hess += (s * (1 + 1e-12))[:, None, None] * eye
    return ya - numpy.linalg.solve(hess, grad[..., None])[..., 0].T


def _objective(x, w, y):
    diff = x - y
    return (numpy.sqrt(numpy.einsum("nbk,nbk->nk", diff, diff)) * w).sum(0)


def _step(xa, wa, ya, newton: bool) -> tuple[numpy.ndarray, numpy.ndarray]:
    """One Vardi-Zhang step from ``ya`` (or Newton's, where it lowers the objective).

    Returns:
        ``(next iterate, distances of the observations from ya)``.
    """
    diff = xa - ya
    dist = numpy.sqrt(numpy.einsum("nbk,nbk->nk", diff, diff))
    hit = (dist == 0) & (wa > 0)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        dinv = numpy.where(hit, 0.0, wa / dist)
        s = dinv.sum(0)
        t = numpy.einsum("nk,nbk->bk", dinv, xa) / s
        eta = hit.sum(0)
        r = numpy.sqrt((((t - ya) * s) ** 2).sum(0))
        g = numpy.minimum(1.0, eta / r)  # 0 when not on an observation
    g = numpy.where((s > 0) & ~numpy.isnan(g), g, 1.0)
    y1 = (1.0 - g) * numpy.where(s > 0, t, ya) + g * ya
    if newton:
        yn = _newton(xa, wa, ya, diff, dist, dinv, s)
        better = (eta == 0) & (s > 0) & (_objective(xa, wa, yn) < (dist * wa).sum(0))
        y1 = numpy.where(better, yn, y1)
    return y1, dist


def weiszfeld(
    x: numpy.ndarray,
    valid: numpy.ndarray,
    rtol: float,
    max_iter: int,
) -> numpy.ndarray:
    """Geometric median per pixel: Vardi-Zhang modified Weiszfeld in float64.

    Args:
        x: ``(N, B, K)`` observations (anything where invalid).
        valid: ``(N, K)`` observation validity, at least one valid per pixel.
        rtol: a pixel stops once a step is shorter than ``rtol`` x its spread (largest
            distance of an observation from the initial mean).
        max_iter: iteration cap per pixel.

    Weiszfeld crawls when the median sits on or next to an observation, so from the 8th
    iteration on a (safeguarded) Newton step replaces it wherever that lowers the objective,
    and every 4th iteration the observation nearest to the iterate is tested for optimality
    (``||sum_i (x_i - x_k) / ||x_i - x_k|| || <= multiplicity of x_k``) and taken exactly
    when it passes.

    Returns:
        ``(B, K)`` float64 geometric medians.

    """
    w = valid.astype("f8")
    x = numpy.where(valid[:, None], x, 0.0)
    y = x.sum(0) / w.sum(0)
    spread = numpy.sqrt((numpy.einsum("nbk,nbk->nk", x - y, x - y) * w).max(0))
    idx = numpy.flatnonzero(spread > 0)
    xa, wa, ya, tol = x.take(idx, 2), w.take(idx, 1), y.take(idx, 1), rtol * spread[idx]
    live = numpy.ones(idx.size, bool)
    for it in range(max_iter):
        if not live.any():
            break
        if 2 * live.sum() < live.size:  # compact the working set
            y[:, idx] = ya
            keep = numpy.flatnonzero(live)  # take() keeps C order (boolean indexing would not)
            idx, tol = idx[keep], tol[keep]
            xa, wa, ya = xa.take(keep, 2), wa.take(keep, 1), ya.take(keep, 1)
            live = live[keep]
        y1, dist = _step(xa, wa, ya, newton=it >= 8 and xa.shape[1] > 1)
        step = numpy.sqrt(((y1 - ya) ** 2).sum(0))
        ya = numpy.where(live, y1, ya)
        live &= step > tol
        if it % 4 == 3:
            near = numpy.where(wa > 0, dist, numpy.inf).argmin(0)
            xk, optimal = _at_data_point(xa, wa, near)
            snap = live & optimal
            ya[:, snap] = xk[:, snap]
            live &= ~snap
    y[:, idx] = ya
    return y


def geomedian(
    layers: list[tuple[numpy.ndarray, numpy.ndarray]],
    rtol: float,
    max_iter: int,
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Geometric median of ``(bands, h, w)`` layers with ``(h, w)`` validity, chunked.

    Returns:
        ``(median (bands, h*w) float64, valid count (h*w,))``.

    """
    bands = layers[0][0].shape[0]
    datas = [d.reshape(bands, -1) for d, _ in layers]
    valids = numpy.stack([v.reshape(-1) for _, v in layers])
    n_valid = valids.sum(0)
    out = numpy.zeros((bands, n_valid.size))
    step = max(256, 2**17 // (bands * len(datas)))
    for s in range(0, n_valid.size, step):
        idx = s + numpy.flatnonzero(n_valid[s : s + step])
        if idx.size:
            x = numpy.stack([d[:, idx] for d in datas]).astype("f8")
            out[:, idx] = weiszfeld(x, valids[:, idx], rtol, max_iter)
    return out, n_valid
