"""assemble-mosaic --tiler vs the reference notebook's method, on the same local TiTiler.

The baseline is the notebook (seeds/002) as written: ThreadPoolExecutor(50), `requests.get`,
every response kept, a MemoryFile raster, then `cog_translate` (deflate,
GDAL_NUM_THREADS=ALL_CPUS). Fixed only so it runs: its retry recursion dropped arguments, and
204 (no data) is skipped instead of retried; the raster takes the tiles' dtype and band count
(the notebook hard-coded uint8 RGB after its color_ops).

Both run alternately, each in a fresh process, against one TiTiler; the script prints median
wall time, peak RSS and client CPU per tile, their ratios, and checks the outputs agree pixel
for pixel.

    python scripts/bench_vs_notebook.py [--sizes 156 400] [--repeats 3] [--method median]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mercantile
import numpy
import rasterio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

ZOOM = 12


def baseline(template: str, bbox: list[float], out: str) -> None:
    """The reference notebook's workflow (seeds/002), minimally fixed to run."""
    from concurrent import futures
    from io import BytesIO

    import requests
    from affine import Affine
    from rasterio.io import MemoryFile
    from rasterio.windows import Window
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles
    from supermercado.burntiles import tile_extrema

    tilesize = 512
    zoom = ZOOM
    extrema = tile_extrema(bbox, zoom)
    tiles = [
        mercantile.Tile(z=zoom, x=x, y=y)
        for x in range(extrema["x"]["min"], extrema["x"]["max"])
        for y in range(extrema["y"]["min"], extrema["y"]["max"])
    ]
    tiles_url = template

    def _worker(tile, tile_url, extrema, tilesize=256, retry=0):
        url = tile_url.format(z=tile.z, x=tile.x, y=tile.y)
        img = requests.get(url)
        if img.status_code == 204:  # fix: no data is not a failure
            return None
        if not img.status_code == 200:
            time.sleep(3)
            if retry == 3:
                raise Exception("Empty")
            return _worker(tile, tile_url, extrema, tilesize, retry=retry + 1)  # fix: args
        row = (tile.y - extrema["y"]["min"]) * tilesize
        col = (tile.x - extrema["x"]["min"]) * tilesize
        window = Window(col_off=col, row_off=row, width=tilesize, height=tilesize)
        return window, img

    with futures.ThreadPoolExecutor(max_workers=50) as executor:
        future_work = [
            executor.submit(_worker, tile, tiles_url, extrema, tilesize) for tile in tiles
        ]
        for _ in futures.as_completed(future_work):
            pass
    results = [f.result() for f in future_work if f.result() is not None]
    with rasterio.open(BytesIO(results[0][1].content)) as first:
        count, dtype = first.count - 1, first.dtypes[0]  # last band is TiTiler's mask
    width = (extrema["x"]["max"] - extrema["x"]["min"]) * tilesize
    height = (extrema["y"]["max"] - extrema["y"]["min"]) * tilesize
    w, n = mercantile.xy(*mercantile.ul(extrema["x"]["min"], extrema["y"]["min"], zoom))
    res = (2 * 20037508.342789244 / 2**zoom) / tilesize
    params = dict(
        driver="GTiff",
        dtype=dtype,
        count=count,
        width=width,
        height=height,
        crs="epsg:3857",
        transform=Affine(res, 0, w, 0, -res, n),
        nodata=0,
        tiled=True,
        blockxsize=tilesize,
        blockysize=tilesize,
    )
    output_profile = cog_profiles.get("deflate")
    with rasterio.Env():
        with MemoryFile() as memfile:
            with memfile.open(**params) as mem:
                for window, img in results:
                    with rasterio.open(BytesIO(img.content)) as src_dst:
                        mem.write(src_dst.read(indexes=tuple(range(1, count + 1))), window=window)
                cog_translate(
                    mem,
                    out,
                    output_profile,
                    quiet=True,
                    config=dict(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_OVR_BLOCKSIZE="128"),
                )


def run_child(cmd: list[str]) -> tuple[float, float, float, str]:
    """Run a child process; (wall s, peak RSS MB, user+sys CPU s, stdout)."""
    from _measure import measure

    wall, rss, cpu, stdout, _ = measure(cmd)
    return wall, rss, cpu, stdout


def compare(tool_out: Path, base_out: Path) -> tuple[int, int]:
    """(pixels compared, pixels differing): data under the tool's mask; 0 elsewhere."""
    with rasterio.open(tool_out) as a, rasterio.open(base_out) as b:
        assert a.shape == b.shape and a.transform.almost_equals(b.transform)
        differ = compared = 0
        for _, win in a.block_windows(1):
            da, db = a.read(window=win), b.read(window=win)
            valid = a.dataset_mask(window=win) > 0
            differ += int((da[:, valid] != db[:, valid]).sum())
            differ += int((db[:, ~valid] != 0).sum())
            compared += int(valid.sum())
        return compared, differ


def shape_for(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[156, 400])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", default="median")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--baseline-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        template, bbox, out = args.baseline_child
        baseline(template, json.loads(bbox), out)
        return

    from bench_memory import bbox_for
    from servers import TiTiler

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-notebook-"))
    workdir.mkdir(parents=True, exist_ok=True)
    x0, y0 = mercantile.tile(2.0, 48.0, ZOOM)[:2]
    shapes = {n: shape_for(n) for n in args.sizes}
    cols, rows = max(c for c, _ in shapes.values()), max(r for _, r in shapes.values())
    # generated in a child process so that this one stays small (see _measure.py)
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import bench_memory as b; from pathlib import Path; "
            "b.make_sources(Path(sys.argv[2]), *map(int, sys.argv[3:]))",
            str(HERE),
            str(workdir),
            str(cols),
            str(rows),
            str(x0),
            str(y0),
        ],
        check=True,
    )
    mj = workdir / "mosaic.json"
    server = TiTiler(workers=args.server_workers, log=workdir / "titiler.log")
    print(
        f"TiTiler on {server.url} ({args.server_workers} workers), method {args.method}, "
        f"{args.repeats} runs each, alternating",
        flush=True,
    )
    try:
        template = server.mosaic_template(mj) + f"&tilesize=512&pixel_selection={args.method}"
        for n in args.sizes:
            cols, rows = shapes[n]
            bbox = bbox_for(cols, rows, x0, y0)
            ntiles = len(list(mercantile.tiles(*bbox, zooms=ZOOM)))
            stats: dict[str, list[tuple[float, float, float]]] = {"baseline": [], "tool": []}
            for i in range(args.repeats):
                for who in ("baseline", "tool") if i % 2 == 0 else ("tool", "baseline"):
                    out = workdir / f"{who}_{n}.tif"
                    out.unlink(missing_ok=True)
                    if who == "baseline":
                        cmd = [
                            sys.executable,
                            __file__,
                            "--baseline-child",
                            template,
                            json.dumps(bbox),
                            str(out),
                        ]
                    else:
                        cmd = [
                            sys.executable,
                            "-m",
                            "mosaic_assembler.cli",
                            "--bbox",
                            *map(str, bbox),
                            "--zoom",
                            str(ZOOM),
                            "--tiler",
                            server.mosaic_template(mj),
                            "--pixel-selection",
                            args.method,
                            "--cog-profile",
                            "deflate",
                            "--co",
                            "PREDICTOR=NO",
                            "--overwrite",
                            "-q",
                            str(out),
                        ]
                    wall, rss, cpu, _ = run_child(cmd)
                    stats[who].append((wall, rss, cpu))
                    print(
                        f"  {n} tiles, {who:8s} run {i + 1}: {wall:6.1f} s, "
                        f"{rss:6.0f} MB peak RSS, {cpu:6.1f} CPU-s",
                        flush=True,
                    )
            compared, differ = compare(workdir / f"tool_{n}.tif", workdir / f"baseline_{n}.tif")
            med = {
                k: [statistics.median(v[i] for v in vals) for i in range(3)]
                for k, vals in stats.items()
            }
            b, t = med["baseline"], med["tool"]
            print(f"{ntiles} tiles of 512 px ({cols}x{rows}):")
            print(f"  {'':10s} {'wall s':>8} {'peak RSS MB':>12} {'CPU-s/tile':>11}")
            for k, (w, r, c) in med.items():
                print(f"  {k:10s} {w:8.1f} {r:12.0f} {c / ntiles:11.3f}")
            print(
                f"  ratio tool/baseline: wall {t[0] / b[0]:.2f} (target <= 1.0), "
                f"peak RSS {t[1] / b[1]:.2f} (target <= 0.5), "
                f"CPU/tile {t[2] / b[2]:.2f} (target <= 1.0)"
            )
            print(
                f"  pixels: {compared} compared, {differ} differ "
                f"({'identical' if differ == 0 else 'DIFFERENT'})",
                flush=True,
            )
    finally:
        server.stop()


if __name__ == "__main__":
    numpy.seterr(all="ignore")
    main()
