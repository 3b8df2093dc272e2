"""`assemble-mosaic batch` of N regions against N sequential `assemble-mosaic` runs.

The regions are an a × b grid of cells over the demo sample (generated here); both sides use
the same options (STAC items, red/green/blue, median, --clip) and write the same COGs, which
the script checks pixel for pixel. Each measurement is a fresh process tree; the two sides
alternate, and the script prints the medians and their ratio (target: >= 1.5x on 2 cores,
from the start-up paid once and features computed in parallel). `--workers` also times the
batch with other --feature-workers values (the default's justification).

    python scripts/bench_batch.py [--regions 20] [--repeats 3] [--workers 1 2 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy
import rasterio
from shapely.geometry import box, mapping

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _measure import measure  # noqa: E402

from mosaic_assembler.demo_data import make_demo_sample  # noqa: E402

CLI = [sys.executable, "-m", "mosaic_assembler.cli"]


def regions(bbox: tuple[float, float, float, float], n: int) -> list[tuple[str, dict]]:
    """n cells of a near-square grid over the bbox, as (name, lon/lat polygon)."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    w, s, e, north = bbox
    dx, dy = (e - w) / cols, (north - s) / rows
    cells = [
        (f"r{r}c{c}", mapping(box(w + c * dx, s + r * dy, w + (c + 1) * dx, s + (r + 1) * dy)))
        for r in range(rows)
        for c in range(cols)
    ]
    return cells[:n]


def options(demo, zoom: int) -> list[str]:
    return [
        "--zoom", str(zoom), "--tilesize", "256", "--items", str(demo.items_path),
        "--assets", "red,green,blue", "--pixel-selection", "median", "--clip", "-q",
    ]  # fmt: skip


def run_sequential(cells, aoi_dir: Path, out: Path, opts: list[str]) -> float:
    """N `assemble-mosaic` runs, one after the other, timed as one script would."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    total = 0.0
    for name, _ in cells:
        wall, *_ = measure([*CLI, "--aoi", str(aoi_dir / f"{name}.geojson"), *opts,
                            str(out / f"{name}.tif")])  # fmt: skip
        total += wall
    return total


def run_batch(features: Path, out: Path, opts: list[str], workers: int | None) -> float:
    shutil.rmtree(out, ignore_errors=True)
    extra = ["--feature-workers", str(workers)] if workers else []
    wall, *_ = measure([*CLI, "batch", str(features), str(out), "--id-field", "name", *extra,
                        *opts])  # fmt: skip
    return wall


def check_same(cells, a: Path, b: Path) -> None:
    for name, _ in cells:
        with rasterio.open(a / f"{name}.tif") as x, rasterio.open(b / f"{name}.tif") as y:
            same = (x.transform, x.shape) == (y.transform, y.shape)
            if not (same and numpy.array_equal(x.read(), y.read())
                    and numpy.array_equal(x.read_masks(), y.read_masks())):  # fmt: skip
                raise SystemExit(f"{name}: batch and assemble outputs differ")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--regions", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--zoom-offset", type=int, default=1, help="zoom = demo zoom + this")
    ap.add_argument("--workers", type=int, nargs="*", default=[], help="also time these")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        demo = make_demo_sample(tmp / "demo")
        zoom = demo.zoom + args.zoom_offset
        cells = regions(demo.bbox, args.regions)
        aoi_dir = tmp / "aoi"
        aoi_dir.mkdir()
        for name, geom in cells:
            (aoi_dir / f"{name}.geojson").write_text(json.dumps(geom))
        features = tmp / "regions.geojson"
        collection = [
            {"type": "Feature", "properties": {"name": n}, "geometry": g} for n, g in cells
        ]
        features.write_text(json.dumps({"type": "FeatureCollection", "features": collection}))
        opts = options(demo, zoom)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        print(f"{len(cells)} regions over the demo sample at zoom {zoom} (256 px tiles, median "
              f"of 3 bands, --clip); {cpus} CPUs; {args.repeats} alternating repeats")  # fmt: skip

        seq, bat = [], []
        for r in range(args.repeats):
            seq.append(run_sequential(cells, aoi_dir, tmp / "seq", opts))
            bat.append(run_batch(features, tmp / "batch", opts, None))
            print(f"  repeat {r + 1}: sequential {seq[-1]:.2f} s, batch {bat[-1]:.2f} s",
                  flush=True)  # fmt: skip
        check_same(cells, tmp / "seq", tmp / "batch")
        ms, mb = statistics.median(seq), statistics.median(bat)
        print(f"sequential assemble x{len(cells)}: {ms:.2f} s ({ms / len(cells):.2f} s/region)")
        print(f"batch (default --feature-workers): {mb:.2f} s ({mb / len(cells):.2f} s/region)")
        print(f"speed-up: {ms / mb:.2f}x (target >= 1.5x); outputs identical")
        for w in args.workers:
            times = [run_batch(features, tmp / f"w{w}", opts, w) for _ in range(args.repeats)]
            print(f"batch --feature-workers {w}: {statistics.median(times):.2f} s "
                  f"(runs {', '.join(f'{t:.2f}' for t in times)})")  # fmt: skip
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
