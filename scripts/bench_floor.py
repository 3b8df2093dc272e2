"""How far a run is from the floor: the CPU of its irreducible parts, beside the full run's.

For one run (a mosaicJSON or a STAC items file, an AOI, a zoom, a method; by default the
synthetic Landsat-like demo sample of `mosaic_assembler.demo_data`, in two UTM zones), a
child process plans the run with the package's own `resolve`/`plan` and measures, in that
one process and one thread:

* decode: every source block that some output tile needs (the blocks of each scene that
  intersect the bounds, in the scene's CRS, of a tile listing that scene), read once with a
  rasterio windowed read of exactly that block (GDAL_CACHEMAX small: nothing is reused);
* warp: the nearest-neighbour warp of each (tile, scene) pair from the decoded pixels held in
  memory (a MEM dataset of the scene's needed blocks, read through a `WarpedVRT` on the tile's
  grid as the run's reads do, all of a scene's bands at once; `rasterio.warp.reproject` of an
  ndarray measured 1.6x slower for the same pixels);
* select: the run's pixel-selection method over each tile's stack (`feed` + `data` only);
* encode: the COG of the composite (the run's default COG creation options, overviews
  included), from an uncompressed GeoTIFF.

It prints each part's CPU seconds (user + sys of the process), their sum, and the CPU of the
full run (the CLI in a fresh child process, `_measure.measure`: user + sys from wait4, the
median of `--repeats` runs) with the ratio full / floor (target <= 2). The floor's composite
is compared with the run's output as a check that both computed the same pixels.

    python scripts/bench_floor.py [--scenes 16 --size 2048 --resolution 30]
    python scripts/bench_floor.py --mosaicjson M.json --bbox W S E N --zoom Z [--method median]
    python scripts/bench_floor.py --items items.json --assets red,green,blue --bbox ... --zoom Z
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SAMPLE_INFO = "floor_sample.json"  # written last: a sample with it is complete and reused


# --------------------------------------------------------------------------------------------
# Child: generate the demo sample
# --------------------------------------------------------------------------------------------


def generate_child(out_dir: str, n_scenes: int, size: int, resolution: float) -> None:
    """Write the demo sample and record its bbox, zoom and paths in SAMPLE_INFO."""
    from mosaic_assembler.demo_data import make_demo_sample

    s = make_demo_sample(out_dir, n_scenes=n_scenes, size=size, resolution=resolution)
    info = {
        "bbox": list(s.bbox),
        "zoom": s.zoom,
        "items": str(s.items_path),
        "mosaicjson": str(s.mosaicjson_path),
    }
    (Path(out_dir) / SAMPLE_INFO).write_text(json.dumps(info))


# --------------------------------------------------------------------------------------------
# Child: the floor
# --------------------------------------------------------------------------------------------


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


class _Clock:
    """CPU (user + sys of the process) and wall seconds accumulated over `with` blocks."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0

    def __enter__(self) -> _Clock:
        self._c, self._w = _cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu += _cpu() - self._c
        self.wall += time.perf_counter() - self._w


def _scenes_of(asset: Any) -> list[str]:
    """The files of one asset: a mosaicJSON path, or a STAC item's selected assets."""
    if isinstance(asset, str):
        return [asset]
    item = asset.item
    return [item["assets"][name]["href"] for name in asset.assets]


def _needed_blocks(ds: Any, tile_bounds: list[tuple[float, ...]]) -> set[tuple[int, int]]:
    """(block row, block col) of the blocks of `ds` under any of these EPSG:3857 bounds."""
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    bh, bw = ds.block_shapes[0]
    blocks: set[tuple[int, int]] = set()
    for b in tile_bounds:
        w, s, e, n = transform_bounds("EPSG:3857", ds.crs, *b, densify_pts=21)
        win = from_bounds(w, s, e, n, ds.transform)
        c0 = max(0, int(win.col_off) - 1)
        r0 = max(0, int(win.row_off) - 1)
        c1 = min(ds.width, int(win.col_off + win.width) + 2)
        r1 = min(ds.height, int(win.row_off + win.height) + 2)
        if c1 <= c0 or r1 <= r0:
            continue
        for br in range(r0 // bh, (r1 - 1) // bh + 1):
            for bc in range(c0 // bw, (c1 - 1) // bw + 1):
                blocks.add((br, bc))
    return blocks


def floor_child(spec: dict[str, Any]) -> None:
    """Measure the floor of a run; print one JSON line (see the module docstring)."""
    import mercantile
    import numpy
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT
    from rasterio.windows import Window

    from mosaic_assembler.options import build_options
    from mosaic_assembler.pipeline import plan
    from mosaic_assembler.resolve import resolve
    from mosaic_assembler.selection import make_method
    from mosaic_assembler.writer import COGOptions

    out = Path(spec["out"])
    opts = build_options(**spec["kwargs"])
    planned = plan(resolve(out, opts), time.perf_counter())
    grid = planned.plan
    size = grid.tilesize
    tiles = [t for t, _ in planned.jobs]
    bounds = {t: tuple(mercantile.xy_bounds(*t)) for t in tiles}  # WebMercatorQuad

    # which tiles need which scene (a scene: the files of one asset, read as one stack)
    users: dict[tuple[str, ...], list[tuple[int, int, int]]] = {}
    for t, assets in planned.jobs:
        for a in assets:
            users.setdefault(tuple(_scenes_of(a)), []).append(t)

    decode, warp, select, encode = _Clock(), _Clock(), _Clock(), _Clock()
    nblocks = npx = 0
    warped: dict[tuple[int, int, int], list[Any]] = {t: [] for t in tiles}
    order = {t: [tuple(_scenes_of(a)) for a in assets] for t, assets in planned.jobs}
    dtype = nodata = None
    with rasterio.Env(GDAL_CACHEMAX=8 * 2**20):
        for files, tlist in users.items():
            datasets = [rasterio.open(f) for f in files]
            first = datasets[0]
            dtype, nodata = first.dtypes[0], first.nodata
            blocks = _needed_blocks(first, [bounds[t] for t in tlist])
            if not blocks:
                continue
            bh, bw = first.block_shapes[0]
            r0 = min(r for r, _ in blocks) * bh
            c0 = min(c for _, c in blocks) * bw
            r1 = min(first.height, (max(r for r, _ in blocks) + 1) * bh)
            c1 = min(first.width, (max(c for _, c in blocks) + 1) * bw)
            count = sum(d.count for d in datasets)
            arr = numpy.full((count, r1 - r0, c1 - c0), nodata or 0, dtype=dtype)
            for br, bc in sorted(blocks):
                win = Window(bc * bw, br * bh, bw, bh).intersection(
                    Window(0, 0, first.width, first.height)
                )
                ys, xs = win.row_off - r0, win.col_off - c0
                band = 0
                for d in datasets:
                    with decode:
                        block = d.read(window=win)
                    arr[band : band + d.count, ys : ys + win.height, xs : xs + win.width] = block
                    band += d.count
                nblocks += 1
                npx += int(win.width * win.height) * count
            # the decoded pixels as an in-memory dataset, warped as the run's reads warp
            mem = rasterio.open(
                f"/vsimem/floor-{nblocks}", "w", driver="MEM", width=c1 - c0,
                height=r1 - r0, count=count, dtype=dtype, crs=first.crs, nodata=nodata,
                transform=first.window_transform(Window(c0, r0, c1 - c0, r1 - r0)),
            )  # fmt: skip
            mem.write(arr)
            del arr
            for d in datasets:
                d.close()
            for t in tlist:
                w, s, e, n = bounds[t]
                with warp:
                    with WarpedVRT(
                        mem, crs="EPSG:3857", width=size, height=size, nodata=nodata,
                        transform=rasterio.transform.from_bounds(w, s, e, n, size, size),
                        src_nodata=nodata, resampling=Resampling.nearest,
                    ) as vrt:  # fmt: skip
                        dst = vrt.read()
                warped[t].append((files, dst))
            mem.close()

    composite: dict[tuple[int, int, int], tuple[Any, Any]] = {}
    for t in tiles:
        by_files = dict(warped.pop(t))
        stack = [by_files[f] for f in order[t] if f in by_files]
        masked = [numpy.ma.MaskedArray(a, mask=a == nodata) for a in stack]
        with select:
            method = make_method(opts.read.pixel_selection)
            method.width, method.height, method.count = size, size, masked[0].shape[0]
            for m in masked:
                method.feed(m)
            data = method.data
        valid = ~numpy.ma.getmaskarray(data).all(axis=0)
        composite[t] = (numpy.ma.getdata(data), valid)

    # the composite as an uncompressed tiled GeoTIFF, then its COG (only the COG is timed)
    first_arr = next(iter(composite.values()))[0]
    raw = out.with_name("floor-raw.tif")
    cog = out.with_name("floor-cog.tif")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES", GDAL_CACHEMAX=64 * 2**20):
        with rasterio.open(
            raw, "w", driver="GTiff", width=grid.width, height=grid.height,
            count=first_arr.shape[0], dtype=first_arr.dtype, crs="EPSG:3857",
            transform=grid.transform, tiled=True, blockxsize=size, blockysize=size,
        ) as dst:  # fmt: skip
            for t, (data, valid) in composite.items():
                row, col = grid.offset(t)
                win = Window(col, row, size, size)
                dst.write(data, window=win)
                dst.write_mask(numpy.where(valid, 255, 0).astype("uint8"), window=win)
    composite.clear()
    cog_opts = COGOptions()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_TIFF_INTERNAL_MASK="YES",
                      GDAL_CACHEMAX=64 * 2**20):  # fmt: skip
        with encode:
            rasterio.shutil.copy(
                raw, cog, driver="COG", **cog_opts.creation_kwargs(grid.width, grid.height)
            )
    raw.unlink()
    report = {
        "tiles": len(tiles),
        "scenes": len(users),
        "pairs": sum(len(v) for v in users.values()),
        "blocks": nblocks,
        "decoded_mpx": npx / 1e6,
        "output_mpx": len(tiles) * size * size / 1e6,
        "cog": str(cog),
        **{
            f"{name}_{k}": getattr(clock, k)
            for name, clock in (
                ("decode", decode), ("warp", warp), ("select", select), ("encode", encode)
            )
            for k in ("cpu", "wall")
        },
    }  # fmt: skip
    print(json.dumps(report))


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


def _cli_args(kwargs: dict[str, Any]) -> list[str]:
    args = ["--bbox", *map(str, kwargs["bbox"]), "--zoom", str(kwargs["zoom"])]
    if "mosaicjson" in kwargs:
        args += ["--mosaicjson", kwargs["mosaicjson"]]
    else:
        args += ["--items", kwargs["items"], "--assets", ",".join(kwargs["assets"])]
    return [*args, "--pixel-selection", kwargs["pixel_selection"]]


def run_full(kwargs: dict[str, Any], out: Path, extra: list[str]) -> dict[str, Any]:
    """The CLI once, in a fresh child process: wall, peak RSS, CPU and its JSON summary."""
    from _measure import measure

    cmd = [sys.executable, "-m", "mosaic_assembler.cli", *_cli_args(kwargs), *extra]
    cmd += ["--overwrite", "--json", "-q", str(out)]
    wall, rss, cpu, stdout, _ = measure(cmd)
    return {"wall": wall, "rss": rss, "cpu": cpu, "summary": json.loads(stdout.splitlines()[-1])}


def compare(ours: Path, floor: Path) -> tuple[int, int]:
    """(pixels valid in the run's output, of those, pixels whose bands differ in the floor's)."""
    import rasterio

    with rasterio.open(ours) as a, rasterio.open(floor) as b:
        assert a.shape == b.shape and a.transform.almost_equals(b.transform), "grids differ"
        valid = differ = 0
        for _, win in a.block_windows(1):
            va = a.dataset_mask(window=win) > 0
            diff = (a.read(window=win) != b.read(window=win)).any(axis=0) & va
            valid += int(va.sum())
            differ += int(diff.sum())
        return valid, differ


def main() -> None:
    """Parse arguments, measure the floor and the full run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--mosaicjson", help="a mosaicJSON (default: the demo sample's)")
    src.add_argument("--items", help="a STAC items file (with --assets)")
    parser.add_argument("--assets", help="comma-separated asset keys of --items")
    parser.add_argument("--bbox", type=float, nargs=4, metavar=("W", "S", "E", "N"))
    parser.add_argument("--zoom", type=int)
    parser.add_argument("--method", default="median")
    parser.add_argument("--scenes", type=int, default=16, help="demo sample scenes (16)")
    parser.add_argument("--size", type=int, default=2048, help="demo scene side, px (2048)")
    parser.add_argument("--resolution", type=float, default=30.0, help="demo pixel, m (30)")
    parser.add_argument(
        "--demo-source", choices=["mosaicjson", "items"], default="mosaicjson",
        help="which of the demo sample's sources to read (items: blue,green,red)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="full runs (median CPU)")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument("--extra", default="", help="extra CLI arguments of the full run")
    parser.add_argument("--floor-child", help=argparse.SUPPRESS)
    parser.add_argument("--generate-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(json.loads(args.floor_child))
        return
    if args.generate_child:
        d, n, size, res = args.generate_child
        generate_child(d, int(n), int(size), float(res))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-floor-"))
    workdir.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"pixel_selection": args.method}
    if args.mosaicjson or args.items:
        if args.bbox is None or args.zoom is None:
            parser.error("--bbox and --zoom are required with --mosaicjson/--items")
        if args.items and not args.assets:
            parser.error("--items needs --assets")
        label = args.mosaicjson or args.items
    else:
        sample_dir = workdir / f"sample_{args.scenes}x{args.size}_{args.resolution:g}m"
        if not (sample_dir / SAMPLE_INFO).exists():
            # generated in a child process so that this one stays small (see _measure.py)
            subprocess.run(
                [sys.executable, __file__, "--generate-child", str(sample_dir),
                 str(args.scenes), str(args.size), str(args.resolution)],
                check=True,
            )  # fmt: skip
        sample = json.loads((sample_dir / SAMPLE_INFO).read_text())
        args.bbox = args.bbox or sample["bbox"]
        args.zoom = args.zoom or sample["zoom"]
        if args.demo_source == "items":
            args.items, args.assets = sample["items"], "blue,green,red"
        else:
            args.mosaicjson = sample["mosaicjson"]
        label = (
            f"demo sample, {args.scenes} scenes of {args.size} px at {args.resolution:g} m "
            f"({args.demo_source})"
        )
    kwargs.update(bbox=list(args.bbox), zoom=args.zoom)
    if args.mosaicjson:
        kwargs["mosaicjson"] = args.mosaicjson
    else:
        kwargs.update(items=args.items, assets=args.assets.split(","))

    out = workdir / "full.tif"
    spec = {"kwargs": kwargs, "out": str(workdir / "floor.tif")}
    print(f"{label}; bbox {args.bbox}, zoom {args.zoom}, {args.method}", flush=True)
    r = subprocess.run(
        [sys.executable, __file__, "--floor-child", json.dumps(spec)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if r.returncode:
        raise SystemExit(f"floor child failed: {r.stderr[-2000:]}")
    f = json.loads(r.stdout.splitlines()[-1])
    extra = args.extra.split() if args.extra else []
    runs = []
    for i in range(args.repeats):
        runs.append(run_full(kwargs, out, extra))
        print(
            f"  full run {i + 1}: {runs[-1]['cpu']:6.1f} CPU-s, {runs[-1]['wall']:6.1f} s, "
            f"{runs[-1]['rss']:5.0f} MB peak RSS",
            flush=True,
        )
    full = {k: statistics.median(x[k] for x in runs) for k in ("cpu", "wall", "rss")}
    parts = [(n, f[f"{n}_cpu"], f[f"{n}_wall"]) for n in ("decode", "warp", "select", "encode")]
    floor_cpu = sum(c for _, c, _ in parts)
    print(
        f"{f['tiles']} tiles ({f['output_mpx']:.1f} Mpx), {f['scenes']} scenes, "
        f"{f['pairs']} (tile, scene) pairs; {f['blocks']} source blocks, "
        f"{f['decoded_mpx']:.0f} Mpx x bands decoded"
    )
    print(f"  {'part':24s} {'CPU s':>8} {'wall s':>8}")
    for name, cpu, wall in parts:
        print(f"  {name:24s} {cpu:8.2f} {wall:8.2f}")
    print(f"  {'floor (sum)':24s} {floor_cpu:8.2f} {sum(w for *_, w in parts):8.2f}")
    print(
        f"  {'full run (median of ' + str(args.repeats) + ')':24s} {full['cpu']:8.2f} "
        f"{full['wall']:8.2f}   peak RSS {full['rss']:.0f} MB"
    )
    ratio = full["cpu"] / floor_cpu
    print(
        f"  ratio full / floor CPU: {ratio:.2f} (target <= 2.0): "
        f"{'OK' if ratio <= 2.0 else 'MISSED'}"
    )
    valid, differ = compare(out, Path(f["cog"]))
    print(f"  check: {valid} valid output pixels, {differ} differ from the floor's composite")


if __name__ == "__main__":
    main()
