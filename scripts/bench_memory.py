"""Peak memory of `assemble-mosaic` at three output sizes: it must not grow with the output.

Runs the same job (median of 3 overlapping synthetic uint16 scenes, 3 bands, 512-px tiles)
over 16, 256 and 2,048 tiles, each in a fresh process, and reports wall time and peak RSS.
Target: peak RSS at the largest size within 1.3x of the smallest.

    python scripts/bench_memory.py [--sizes 16 256 2048] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import mercantile
import numpy
import rasterio
from rasterio.transform import from_origin

ZOOM = 12


def make_sources(workdir: Path, cols: int, rows: int, x0: int, y0: int) -> Path:
    """Three overlapping EPSG:3857 scenes covering the largest AOI, and a mosaicJSON."""
    from cogeo_mosaic.mosaic import MosaicJSON

    ul = mercantile.xy_bounds(x0, y0, ZOOM)
    lr = mercantile.xy_bounds(x0 + cols - 1, y0 + rows - 1, ZOOM)
    width_m, height_m = lr.right - ul.left, ul.top - lr.bottom
    res = (ul.right - ul.left) / 512 * 4  # sources 4x coarser than the output
    w, h = math.ceil(width_m / res), math.ceil(height_m / res)
    paths = []
    rng = numpy.random.default_rng(0)
    for n in range(3):
        shift = (n - 1) * 0.02 * width_m
        path = workdir / f"scene{n}_{cols}x{rows}.tif"
        if not path.exists():
            yy, xx = numpy.mgrid[0:h, 0:w]
            base = 8000 + 6000 * numpy.sin(xx / 97.0 + n) * numpy.cos(yy / 131.0)
            data = numpy.stack(
                [base + 1000 * b + rng.integers(0, 500, (h, w)) for b in range(3)]
            ).astype("uint16")
            data[:, :, : 40 * n] = 0  # a collar
            tmp = path.with_suffix(".tmp.tif")
            with rasterio.open(
                tmp,
                "w",
                driver="GTiff",
                width=w,
                height=h,
                count=3,
                dtype="uint16",
                crs="EPSG:3857",
                nodata=0,
                transform=from_origin(ul.left + shift, ul.top, res, res),
                tiled=True,
            ) as dst:
                dst.write(data)
            rasterio.shutil.copy(tmp, path, driver="COG", COMPRESS="DEFLATE")
            tmp.unlink()
        paths.append(str(path))
    mj = workdir / "mosaic.json"
    mosaic = MosaicJSON.from_urls(paths, minzoom=8, maxzoom=ZOOM, quiet=True)
    mj.write_text(mosaic.model_dump_json(exclude_none=True))
    return mj


def bbox_for(cols: int, rows: int, x0: int, y0: int) -> list[float]:
    """A lon/lat bbox strictly inside the block of cols x rows tiles at (x0, y0)."""
    a = mercantile.bounds(x0, y0, ZOOM)
    b = mercantile.bounds(x0 + cols - 1, y0 + rows - 1, ZOOM)
    ex, ey = (a.east - a.west) * 0.01, (a.north - a.south) * 0.01
    return [a.west + ex, b.south + ey, b.east - ex, a.north - ey]


def run_once(mj: Path, bbox: list[float], out: Path) -> tuple[float, float, dict]:
    """Run the CLI in a child process; (seconds, peak RSS MB, JSON summary)."""
    from _measure import measure

    cmd = [
        sys.executable,
        "-m",
        "mosaic_assembler.cli",
        "--bbox",
        *map(str, bbox),
        "--zoom",
        str(ZOOM),
        "--mosaicjson",
        str(mj),
        "--pixel-selection",
        "median",
        "--overwrite",
        "--json",
        "-q",
        str(out),
    ]
    seconds, rss, _, stdout, _ = measure(cmd)
    return seconds, rss, json.loads(stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 256, 2048])
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-memory-"))
    workdir.mkdir(parents=True, exist_ok=True)
    shapes = {
        n: (2 ** math.ceil(math.log2(n) / 2), n // 2 ** math.ceil(math.log2(n) / 2))
        for n in args.sizes
    }
    cols = max(c for c, _ in shapes.values())
    rows = max(r for _, r in shapes.values())
    x0, y0 = mercantile.tile(2.0, 48.0, ZOOM)[:2]
    # generated in a child process: this one stays small (see _measure.py)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import bench_memory as b; from pathlib import Path; "
            "b.make_sources(Path(sys.argv[2]), *map(int, sys.argv[3:]))",
            str(Path(__file__).parent),
            str(workdir),
            str(cols),
            str(rows),
            str(x0),
            str(y0),
        ],
        check=True,
    )
    mj = workdir / "mosaic.json"
    print(f"{'tiles':>6} {'output':>14} {'raw MB':>8} {'seconds':>8} {'peak RSS MB':>12}")
    rss = {}
    for n in args.sizes:
        c, r = shapes[n]
        seconds, peak, summary = run_once(mj, bbox_for(c, r, x0, y0), workdir / f"out{n}.tif")
        assert summary["tiles_total"] == n, summary
        assert summary["tiles_done"] >= 0.8 * n, f"most tiles empty: {summary}"
        raw = summary["width"] * summary["height"] * summary["count"] * 2 / 1e6
        rss[n] = peak
        print(
            f"{n:>6} {summary['width']:>6} x {summary['height']:<6} {raw:>8.0f} "
            f"{seconds:>8.1f} {peak:>12.0f}",
            flush=True,
        )
        (workdir / f"out{n}.tif").unlink()
    small, large = min(args.sizes), max(args.sizes)
    ratio = rss[large] / rss[small]
    print(
        f"peak RSS ratio {large} / {small} tiles: {ratio:.2f} (target <= 1.30): "
        f"{'OK' if ratio <= 1.3 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
