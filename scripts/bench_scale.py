"""Scaling of chunked runs: time linear in tiles, driver memory flat, Dask workers add up.

A fast synthetic in-process source (one uint8 COG in EPSG:3857, 8x coarser than the output)
is assembled at 256, 2,048 and 16,384 tiles of 256 px with the local thread pool and with a
2-worker Dask LocalCluster (`first`: one asset read per tile); each run is a fresh CLI process
(driver peak RSS from wait4, Dask worker peak RSS from the workers). Then a CPU-bound
comparison: 1 vs 2 warmed-up Dask workers computing the median of three sources, one tile at
a time per chunk.

Targets: tiles/s at 16,384 within 20 % of 2,048; driver peak RSS at 16,384 <= 1.3x at 256;
2 Dask workers >= 1.6x the throughput of 1.

    python scripts/bench_scale.py [--sizes 256 2048 16384] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import sys
import tempfile
from pathlib import Path

import mercantile
import numpy
import rasterio
from rasterio.transform import from_origin

ZOOM, TILESIZE = 13, 256
X0, Y0 = mercantile.tile(2.0, 48.0, ZOOM)[:2]


def make_source(workdir: Path, cols: int, rows: int) -> Path:
    """Three overlapping uint8 COGs over cols x rows tiles, 8x coarser than the output.

    `first` reads one of them per tile (fast, I/O-like); `median` reads all three (CPU-bound).
    """
    from cogeo_mosaic.mosaic import MosaicJSON

    ul = mercantile.xy_bounds(X0, Y0, ZOOM)
    res = (ul.right - ul.left) / TILESIZE * 8
    w, h = cols * TILESIZE // 8 + 8, rows * TILESIZE // 8 + 8
    paths = []
    for n in range(3):
        path = workdir / f"source{n}_{cols}x{rows}.tif"
        paths.append(str(path))
        if path.exists():
            continue
        yy, xx = numpy.mgrid[0:h, 0:w]
        data = (127 + 100 * numpy.sin(xx / 37.0 + n) * numpy.cos(yy / 53.0)).astype("uint8")
        tmp = workdir / "source.tmp.tif"
        with rasterio.open(
            tmp,
            "w",
            driver="GTiff",
            width=w,
            height=h,
            count=1,
            dtype="uint8",
            crs="EPSG:3857",
            transform=from_origin(ul.left, ul.top, res, res),
            tiled=True,
        ) as dst:
            dst.write(data[None])
        rasterio.shutil.copy(tmp, path, driver="COG", COMPRESS="DEFLATE")
        tmp.unlink()
    mj = workdir / "mosaic.json"
    mj.write_text(
        MosaicJSON.from_urls(paths, minzoom=8, maxzoom=ZOOM, quiet=True).model_dump_json(
            exclude_none=True
        )
    )
    return mj


def bbox_for(cols: int, rows: int) -> list[float]:
    a = mercantile.bounds(X0, Y0, ZOOM)
    b = mercantile.bounds(X0 + cols - 1, Y0 + rows - 1, ZOOM)
    ex, ey = (a.east - a.west) * 0.01, (a.north - a.south) * 0.01
    return [a.west + ex, b.south + ey, b.east - ex, a.north - ey]


def shape_for(n: int) -> tuple[int, int]:
    cols = 2 ** math.ceil(math.log2(n) / 2)
    return cols, n // cols


def run_cli(mj: Path, n: int, out: Path, extra: list[str]) -> tuple[float, float, dict]:
    """One CLI run in a fresh process; (wall s, driver peak RSS MB, JSON summary)."""
    from _measure import measure

    cols, rows = shape_for(n)
    cmd = [
        sys.executable,
        "-m",
        "mosaic_assembler.cli",
        "--bbox",
        *map(str, bbox_for(cols, rows)),
        "--zoom",
        str(ZOOM),
        "--tilesize",
        str(TILESIZE),
        "--mosaicjson",
        str(mj),
        "--chunk-tiles",
        "8",
        "--overwrite",
        "--json",
        "-q",
        *extra,
        str(out),
    ]
    wall, rss, _, stdout, _ = measure(cmd)
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["tiles_total"] == n, summary
    assert summary["tiles_done"] >= 0.8 * n, f"most tiles empty: {summary}"
    out.unlink()
    return wall, rss, summary


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM): unlike ru_maxrss, it is not inherited across the
    fork + exec that starts a worker from a nanny in the (possibly large) driver process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _warm_up() -> None:
    import mosaic_assembler.chunks  # noqa: F401
    import mosaic_assembler.tilers.local  # noqa: F401


def with_dask(workers: int, fn):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        silence_logs=logging.CRITICAL,
    )  # no heartbeat noise at close
    client = Client(cluster)
    # warm the workers up (imports of rio-tiler, rasterio, GDAL drivers: ~1-2 s per process),
    # so that the timed runs measure throughput, not process start-up
    client.run(_warm_up)
    try:
        result = fn(cluster.scheduler_address)
        rss = client.run(_peak_rss_mb)
        return result, max(rss.values())
    finally:
        client.close()
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 2048, 16384])
    parser.add_argument(
        "--compare-size",
        type=int,
        default=4096,
        help="tiles of the CPU-bound 1 vs 2 workers run (default 4096)",
    )
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cols = max(shape_for(n)[0] for n in (*args.sizes, args.compare_size))
    rows = max(shape_for(n)[1] for n in (*args.sizes, args.compare_size))
    mj = make_source(workdir, cols, rows)
    out = workdir / "out.tif"
    print(
        f"{'executor':12s} {'tiles':>6} {'wall s':>8} {'tiles/s':>8} {'driver MB':>10} "
        f"{'worker MB':>10}",
        flush=True,
    )
    table: dict[tuple[str, int], tuple[float, float, float]] = {}
    for n in args.sizes:
        wall, rss, _ = run_cli(mj, n, out, [])
        table[("threads", n)] = (wall, rss, rss)
        print(
            f"{'threads':12s} {n:6d} {wall:8.1f} {n / wall:8.1f} {rss:10.0f} {'(same)':>10}",
            flush=True,
        )
        (wall, rss, _), wrss = with_dask(
            2, lambda addr, n=n: run_cli(mj, n, out, ["--dask-scheduler", addr])
        )
        table[("dask-2", n)] = (wall, rss, wrss)
        print(
            f"{'dask-local 2':12s} {n:6d} {wall:8.1f} {n / wall:8.1f} {rss:10.0f} {wrss:10.0f}",
            flush=True,
        )
    small, mid, large = min(args.sizes), sorted(args.sizes)[len(args.sizes) // 2], max(args.sizes)
    for ex in ("threads", "dask-2"):
        rate_mid = mid / table[(ex, mid)][0]
        rate_large = large / table[(ex, large)][0]
        drss = table[(ex, large)][1] / table[(ex, small)][1]
        print(
            f"{ex}: tiles/s at {large} vs {mid}: {rate_large / rate_mid:.2f} (target >= 0.8); "
            f"driver RSS {large}/{small}: {drss:.2f} (target <= 1.3)"
        )
    n = args.compare_size
    cpu = ["--concurrency", "1", "--pixel-selection", "median"]
    (_, _, s1), _ = with_dask(1, lambda a: run_cli(mj, n, out, ["--dask-scheduler", a, *cpu]))
    (_, _, s2), _ = with_dask(2, lambda a: run_cli(mj, n, out, ["--dask-scheduler", a, *cpu]))
    r1, r2 = s1["seconds"]["read"], s2["seconds"]["read"]
    print(
        f"CPU-bound {n} tiles, one tile at a time per chunk (chunk phase, finalize "
        f"excluded): 1 worker {r1:.1f} s, 2 workers {r2:.1f} s: throughput x{r1 / r2:.2f} "
        "(target >= 1.6)"
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
