"""Would one warp per (scene, chunk) give rio-tiler's pixels? It does not; and what it would save.

Issue 16's lever "one read per asset per chunk where it gives the same pixels as per-tile
warps (prove it, or do not do it)", checked on bench_vs_notebook's generated scenes (or any
GeoTIFFs in another CRS than EPSG:3857 with a nodata value): for each scene, a chunk of
N x N Web Mercator tiles of 512 px at --zoom around the scene's centre is warped (nearest)
three ways, and the values are compared:

* each tile through rio-tiler's `Reader.tile` (the oracle; what the tool must equal);
* each tile through a WarpedVRT with rio-tiler's parameters (checks the set-up: 0 differ);
* the whole chunk through one WarpedVRT, with GDAL's default approximate transformer
  (error threshold 0.125 px, as rio-tiler's) and with an exact one (threshold 1e-9).

GDAL's approximate transformer interpolates source coordinates linearly along each output
row between points it transforms exactly, and where it places those points depends on the
row's extent: a 2048-px row of a chunk and a 512-px row of a tile get slightly different
source coordinates, and a nearest-neighbour pick near a pixel edge flips. With an exact
transformer the chunk equals the tiles, but then neither equals rio-tiler's output. The
CPU of both warps of the same output pixels is printed too (process time).

    python scripts/check_chunk_warp.py [--scenes DIR] [--count 6] [--zoom 11] [--chunk 4]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mercantile
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

TS = 512


def warp(src, bounds, size, tolerance=0.125):
    """A nearest warp of `bounds` to size x size px in EPSG:3857, rio-tiler's VRT options."""
    with WarpedVRT(
        src,
        crs="EPSG:3857",
        transform=from_bounds(*bounds, size, size),
        width=size,
        height=size,
        nodata=src.nodata,
        src_nodata=src.nodata,
        add_alpha=False,
        resampling=Resampling.nearest,
        dtype=src.dtypes[0],
        tolerance=tolerance,
    ) as vrt:
        return vrt.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenes", type=Path, default=Path("/tmp/fl3/big/scenes_64x2048_30m_z11_156/scenes")
    )
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--zoom", type=int, default=11)
    parser.add_argument("--chunk", type=int, default=4, help="chunk side in tiles")
    args = parser.parse_args()
    paths = sorted(args.scenes.glob("*.tif"))[: args.count]
    if not paths:
        parser.error(f"no *.tif in {args.scenes} (run bench_vs_notebook.py --mode inprocess)")
    keys = ("tile VRT vs rio-tiler", "chunk vs rio-tiler", "exact chunk vs rio-tiler",
            "exact chunk vs exact tiles")  # fmt: skip
    counts = {k: [0, 0] for k in keys}
    cpu = {"tiles": 0.0, "chunk": 0.0}
    n = args.chunk
    for path in paths:
        with rasterio.open(path) as src, Reader(str(path)) as reader:
            w, s, e, nn = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
            t0 = mercantile.tile((w + e) / 2, (s + nn) / 2, args.zoom)
            grid = [(i, j) for j in range(n) for i in range(n)]
            tiles = [mercantile.Tile(t0.x + i, t0.y + j, args.zoom) for i, j in grid]
            ul, lr = mercantile.xy_bounds(tiles[0]), mercantile.xy_bounds(tiles[-1])
            box = (ul.left, lr.bottom, lr.right, ul.top)
            c0 = time.process_time()
            chunk = warp(src, box, n * TS)
            cpu["chunk"] += time.process_time() - c0
            exact_chunk = warp(src, box, n * TS, tolerance=1e-9)
            for k, t in enumerate(tiles):
                j, i = divmod(k, n)
                b = mercantile.xy_bounds(t)
                tb = (b.left, b.bottom, b.right, b.top)
                c0 = time.process_time()
                tile = warp(src, tb, TS)  # every tile of the chunk: the same output pixels
                cpu["tiles"] += time.process_time() - c0
                try:
                    oracle = reader.tile(t.x, t.y, t.z, tilesize=TS).array.data
                except TileOutsideBounds:
                    continue
                exact_tile = warp(src, tb, TS, tolerance=1e-9)
                rows, cols = slice(j * TS, (j + 1) * TS), slice(i * TS, (i + 1) * TS)
                pairs = (
                    (tile, oracle),
                    (chunk[:, rows, cols], oracle),
                    (exact_chunk[:, rows, cols], oracle),
                    (exact_chunk[:, rows, cols], exact_tile),
                )
                for key, (a, b_) in zip(keys, pairs, strict=True):
                    counts[key][0] += a.size
                    counts[key][1] += int((a != b_).sum())
    print(f"{len(paths)} scenes, chunks of {n}x{n} tiles of {TS} px at zoom {args.zoom}:")
    for key, (total, differ) in counts.items():
        print(f"  {key:27s} {differ:10d} of {total} values differ ({100 * differ / total:.3f} %)")
    ratio = cpu["tiles"] / max(cpu["chunk"], 1e-9)
    print(f"  CPU of the warps (the same chunks' pixels): {cpu['tiles']:.2f} s per tile, "
          f"{cpu['chunk']:.2f} s per chunk ({ratio:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
