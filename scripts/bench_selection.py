"""Benchmark mosaic_assembler.selection against rio-tiler's numpy.ma pixel-selection methods.

One 512x512 tile, 4 uint16 bands, 30 % of the observations masked (per band and per pixel),
stacks of 5/10/20/40 observations. Times ``feed`` of every observation plus one ``data``
call (the median of ``--runs`` runs, default 5), checks the outputs are identical and
prints a table, then times p10/p90/geomedian (ours only) at depth 10. Exit status 1 if an
output differs or median@10 is less than 10x faster.

    .venv/bin/python scripts/bench_selection.py [--runs 5] [--depths 5 10 20 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

import numpy
from rio_tiler.mosaic.methods import defaults as rt

from mosaic_assembler import selection

PAIRS = {
    "median": (rt.MedianMethod, selection.MedianMethod),
    "mean": (rt.MeanMethod, selection.MeanMethod),
    "stdev": (rt.StdevMethod, selection.StdevMethod),
}


def make_stack(depth: int, seed: int = 0) -> list[numpy.ma.MaskedArray]:
    rng = numpy.random.default_rng(seed)
    out = []
    for _ in range(depth):
        data = rng.integers(0, 10000, (4, 512, 512), dtype=numpy.uint16)
        mask = rng.random((4, 512, 512)) < 0.3
        out.append(numpy.ma.MaskedArray(data, mask=mask))
    return out


def run(cls, stack) -> tuple[float, numpy.ma.MaskedArray]:
    t0 = time.perf_counter()
    method = cls()
    for arr in stack:
        method.feed(arr)
    result = method.data
    return time.perf_counter() - t0, result


def same(a: numpy.ma.MaskedArray, b: numpy.ma.MaskedArray) -> bool:
    ma, mb = numpy.ma.getmaskarray(a), numpy.ma.getmaskarray(b)
    if a.dtype != b.dtype or a.shape != b.shape or not numpy.array_equal(ma, mb):
        return False
    return numpy.array_equal(numpy.ma.getdata(a)[~ma], numpy.ma.getdata(b)[~mb], equal_nan=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--depths", type=int, nargs="+", default=[5, 10, 20, 40])
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"512x512 tile, 4 bands uint16, 30 % masked, median of {args.runs} runs (ms)")
    print(f"{'method':<8}{'depth':>6}{'rio-tiler':>12}{'ours':>10}{'speed-up':>10}  identical")
    failed, median10 = False, None
    for depth in args.depths:
        stack = make_stack(depth)
        for name, (theirs, ours) in PAIRS.items():
            t_theirs, t_ours, ok = [], [], True
            for _ in range(args.runs):
                dt, ref = run(theirs, stack)
                t_theirs.append(dt)
                dt, res = run(ours, stack)
                t_ours.append(dt)
                ok &= same(ref, res)
            a, b = statistics.median(t_theirs), statistics.median(t_ours)
            print(f"{name:<8}{depth:>6}{a * 1e3:>12.1f}{b * 1e3:>10.1f}{a / b:>9.1f}x  {ok}")
            failed |= not ok
            if name == "median" and depth == 10:
                median10 = a / b
    if 10 in args.depths:
        stack = make_stack(10)
        print("ours only, depth 10 (no rio-tiler equivalent):")
        for name in ("p10", "p90", "geomedian"):
            method = lambda n=name: selection.make_method(n)  # noqa: E731
            runs = [run(method, stack)[0] for _ in range(args.runs)]
            print(f"  {name:<10}{statistics.median(runs) * 1e3:>10.1f} ms")
    if median10 is not None:
        print(f"median speed-up at depth 10: {median10:.1f}x (target >= 10x)")
        failed |= median10 < 10
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
