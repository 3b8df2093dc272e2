"""assemble-mosaic --tiler vs the reference notebook's method, on the same local TiTiler.

The baseline is the notebook (seeds/002) as written: ThreadPoolExecutor(50), `requests.get`,
every response kept, a MemoryFile raster, then `cog_translate` (deflate,
GDAL_NUM_THREADS=ALL_CPUS). Fixed only so it runs: its retry recursion dropped arguments,
204 (no data) is skipped instead of retried, and a connection the server drops (seen with 50
requests in flight on a loaded machine) is retried like an error status; the raster takes
the tiles' dtype and band count (the notebook hard-coded uint8 RGB after its color_ops).

Both run alternately, each in a fresh process, against one TiTiler; the script prints median
wall time, peak RSS and client CPU per tile, their ratios, and checks the outputs agree pixel
for pixel.

With `--mode inprocess` (issue 16's run) the same baseline is compared with the in-process
median and with odc-stac + Dask on one set of items: 64 Landsat-like 3-band uint16 scenes of
2048 px at 30 m (tilted nodata collars, DEFLATE COGs, 512-px blocks) in EPSG:32631 and
EPSG:32632 around 6°E 45.46°N, generated in a child process and cached in --workdir, with a
mosaicJSON and STAC items (one 3-band asset per item) over them; median, zoom 11 @ 512 px,
156 and 16 tiles. Per size and approach, each run a fresh process:

* notebook: the baseline above through the local TiTiler's mosaicJSON endpoint (its CPU is
  the client's; the TiTiler server's CPU during the run is printed beside it);
* ours: `python -m mosaic_assembler.cli --mosaicjson (or --items) ... --pixel-selection
  median` (one warm-up run first, which also gives odc its grid);
* odc: bench_vs_odc.py's child (odc-stac load of the items on ours' grid, groupby "id",
  median over items, threaded Dask scheduler by default).

The approaches alternate (order reversed every other repeat); the script prints the medians
of wall time, peak RSS (`wait4`'s, which covers waited-for children) and CPU, the ratios
against the issue's targets, the number of pixel values in which ours differs from the
notebook's output, and ours' agreement with odc's.

    python scripts/bench_vs_notebook.py [--sizes 156 400] [--repeats 3] [--method median]
    python scripts/bench_vs_notebook.py --mode inprocess [--sizes 156 16] [--workdir DIR]
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
from typing import Any

import mercantile
import numpy
import rasterio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

ZOOM = 12


def baseline(template: str, bbox: list[float], out: str, zoom: int = ZOOM) -> None:
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
    extrema = tile_extrema(bbox, zoom)
    tiles = [
        mercantile.Tile(z=zoom, x=x, y=y)
        for x in range(extrema["x"]["min"], extrema["x"]["max"])
        for y in range(extrema["y"]["min"], extrema["y"]["max"])
    ]
    tiles_url = template

    def _worker(tile, tile_url, extrema, tilesize=256, retry=0):
        url = tile_url.format(z=tile.z, x=tile.x, y=tile.y)
        try:
            img = requests.get(url)
        except requests.ConnectionError:  # fix: a dropped connection is retried like a 5xx
            img = None
        if img is not None and img.status_code == 204:  # fix: no data is not a failure
            return None
        if img is None or not img.status_code == 200:
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


# --------------------------------------------------------------------------------------------
# In-process mode: Landsat-like scenes in two UTM zones
# --------------------------------------------------------------------------------------------

SCENES_INFO = "scenes.json"  # written last: a scene set with it is complete and reused
CENTER = (6.0, 45.46)  # lon/lat: the UTM zone 31 | 32 boundary
TILT = math.radians(12.2)  # Landsat descending track
FOOTPRINT = 0.80  # valid side of the tilted footprint, as a fraction of the raster's


def tile_block(n: int, zoom: int) -> tuple[int, int, int, int]:
    """(x0, y0, cols, rows): n tiles (cols x rows, cols * rows >= n) centred on CENTER."""
    cols, rows = shape_for(n)
    cx, cy = mercantile.tile(*CENTER, zoom)[:2]
    return cx - cols // 2, cy - rows // 2, cols, rows


def block_bbox(x0: int, y0: int, cols: int, rows: int, zoom: int) -> list[float]:
    """A lon/lat bbox strictly inside the block of cols x rows tiles at (x0, y0)."""
    a = mercantile.bounds(x0, y0, zoom)
    b = mercantile.bounds(x0 + cols - 1, y0 + rows - 1, zoom)
    ex, ey = (a.east - a.west) * 0.01, (a.north - a.south) * 0.01
    return [a.west + ex, b.south + ey, b.east - ex, a.north - ey]


def _scene_job(job: dict[str, Any]) -> None:
    """Write one scene: a 3-band uint16 DEFLATE COG with a tilted nodata collar."""
    from affine import Affine

    size, res, i = job["size"], job["resolution"], job["index"]
    x0, y0 = job["origin"]
    rng = numpy.random.default_rng(i)
    rows, cols = numpy.mgrid[0:size, 0:size].astype("float32")
    gx, gy = x0 + cols * res, y0 - rows * res  # UTM metres
    c = (size - 1) / 2
    u = (cols - c) * math.cos(TILT) - (rows - c) * math.sin(TILT)
    v = (cols - c) * math.sin(TILT) + (rows - c) * math.cos(TILT)
    valid = (numpy.abs(u) <= FOOTPRINT * c) & (numpy.abs(v) <= FOOTPRINT * c)
    data = numpy.zeros((3, size, size), "uint16")
    for b in range(3):
        base = 5000 + 700 * b + 150 * job["date"]
        field = base + 2500 * numpy.sin(gx / 4100.0 + b) * numpy.cos(gy / 5300.0)
        noise = rng.integers(0, 1200, (size, size), dtype="uint16")
        data[b] = numpy.where(valid, field.astype("uint16") + noise, 0)
    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint16", nodata=0,
        crs=f"EPSG:{job['epsg']}", transform=Affine(res, 0, x0, 0, -res, y0),
        tiled=True, blockxsize=512, blockysize=512,
    )  # fmt: skip
    tmp = Path(job["path"]).with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data)
    rasterio.shutil.copy(
        tmp, job["path"], driver="COG", COMPRESS="DEFLATE", PREDICTOR="2", BLOCKSIZE="512"
    )
    tmp.unlink()


def generate_scenes(workdir: Path, n_scenes: int, size: int, resolution: float,
                    bbox: list[float]) -> dict[str, Any]:  # fmt: skip
    """Scenes over bbox (4 x 4 positions x n/16 dates), a mosaicJSON and STAC items.

    Each scene is in the UTM zone of its centre (EPSG:32631 west of 6°E, 32632 east), on
    its zone's 30-m grid; positions are spread so that the scenes' union covers bbox with a
    margin, and each date's scenes are shifted a little so that footprints differ.
    """
    from concurrent.futures import ProcessPoolExecutor

    from cogeo_mosaic.mosaic import MosaicJSON
    from pyproj import Transformer

    sdir = workdir / "scenes"
    sdir.mkdir(parents=True, exist_ok=True)
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    (w, s), (e, n) = to_merc.transform(bbox[0], bbox[1]), to_merc.transform(bbox[2], bbox[3])
    k = 1 / math.cos(math.radians(CENTER[1]))  # Mercator metres per ground metre
    side = size * resolution * k
    margin = 0.12 * side
    grid = 4
    dates = math.ceil(n_scenes / grid**2)
    rng = numpy.random.default_rng(16)
    jobs: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for d in range(dates):
        for p in range(grid**2):
            i = len(jobs)
            if i == n_scenes:
                break
            px, py = p % grid, p // grid
            jx, jy = rng.uniform(-0.06, 0.06, 2) * side
            mx = w - margin + side / 2 + px * (e - w + 2 * margin - side) / (grid - 1) + jx
            my = n + margin - side / 2 - py * (n - s + 2 * margin - side) / (grid - 1) + jy
            lon, lat = to_merc.transform(mx, my, direction="INVERSE")
            epsg = 32631 if lon < 6.0 else 32632
            to_utm = Transformer.from_crs("EPSG:4326", f"EPSG:{epsg}", always_xy=True)
            ux, uy = to_utm.transform(lon, lat)
            half = size * resolution / 2
            x0 = round((ux - half) / resolution) * resolution
            y0 = round((uy + half) / resolution) * resolution
            sid = f"S{i:02d}_D{d:02d}_{epsg}"
            jobs.append(dict(index=i, date=d, size=size, resolution=resolution, epsg=epsg,
                             origin=(x0, y0), path=str(sdir / f"{sid}.tif")))  # fmt: skip
            c = size * resolution / 2
            corners = []
            for cu, cv in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1)):
                du = cu * FOOTPRINT * c
                dv = cv * FOOTPRINT * c
                dx = du * math.cos(TILT) + dv * math.sin(TILT)
                dy = -(-du * math.sin(TILT) + dv * math.cos(TILT))
                corners.append(
                    list(to_utm.transform(x0 + c + dx, y0 - c + dy, direction="INVERSE"))
                )
            when = f"2023-{4 + d // 28:02d}-{1 + d % 28:02d}T10:30:00Z"
            t = [resolution, 0.0, x0, 0.0, -resolution, y0]
            items.append({
                "type": "Feature", "stac_version": "1.0.0",
                "stac_extensions": [
                    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                ],
                "id": sid,
                "bbox": [min(x for x, _ in corners), min(y for _, y in corners),
                         max(x for x, _ in corners), max(y for _, y in corners)],
                "geometry": {"type": "Polygon", "coordinates": [corners]},
                "properties": {"datetime": when, "gsd": resolution,
                               "proj:code": f"EPSG:{epsg}", "proj:epsg": epsg,
                               "proj:shape": [size, size], "proj:transform": t},
                "links": [],
                "assets": {"image": {
                    "href": f"./scenes/{sid}.tif",
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": ["data"],
                    "raster:bands": [{"data_type": "uint16", "nodata": 0,
                                      "spatial_resolution": resolution}] * 3,
                }},
            })  # fmt: skip
    todo = [j for j in jobs if not Path(j["path"]).exists()]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_scene_job, todo))
    paths = [j["path"] for j in jobs]
    mj = workdir / "mosaic.json"
    mosaic = MosaicJSON.from_urls(paths, minzoom=8, maxzoom=11, quiet=True)
    mj.write_text(mosaic.model_dump_json(exclude_none=True))
    it = workdir / "items.json"
    it.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    info = {"mosaicjson": str(mj), "items": str(it), "scenes": len(jobs),
            "epsg": sorted({j["epsg"] for j in jobs})}  # fmt: skip
    (workdir / SCENES_INFO).write_text(json.dumps(info))
    return info


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (the TiTiler server)."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def inprocess(args: argparse.Namespace) -> None:
    """The issue-16 run: notebook via TiTiler, ours in-process and odc-stac on the same items."""
    from bench_vs_odc import compare as compare_bands
    from bench_vs_odc import grid_of, run_odc
    from servers import TiTiler

    zoom = args.zoom
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-inprocess-"))
    workdir.mkdir(parents=True, exist_ok=True)
    biggest = tile_block(max(args.sizes), zoom)
    cover = block_bbox(*biggest, zoom)
    sdir = (
        workdir
        / f"scenes_{args.scenes}x{args.scene_size}_{args.resolution:g}m_z{zoom}_{max(args.sizes)}"
    )
    if not (sdir / SCENES_INFO).exists():
        # generated in a child process so that this one stays small (see _measure.py)
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--generate-child",
             json.dumps([str(sdir), args.scenes, args.scene_size, args.resolution, cover])],
            check=True,
        )  # fmt: skip
        print(f"scenes generated in {time.perf_counter() - t0:.0f} s", flush=True)
    info = json.loads((sdir / SCENES_INFO).read_text())
    approaches = [a for a in ("notebook", "ours", "odc") if a in args.approaches]
    server = None
    if "notebook" in approaches:
        server = TiTiler(workers=args.server_workers, log=workdir / "titiler.log")
    print(
        f"{info['scenes']} scenes of {args.scene_size} px at {args.resolution:g} m, 3-band "
        f"uint16, DEFLATE COGs in EPSG:{' and '.join(map(str, info['epsg']))}; "
        f"median, zoom {zoom} @ 512 px; {args.repeats} runs each, alternating; ours reads "
        f"the {args.ours_source}"
        + (f"; TiTiler on {server.url} ({args.server_workers} workers)" if server else ""),
        flush=True,
    )
    try:
        for n in args.sizes:
            block = tile_block(n, zoom)
            bbox = block_bbox(*block, zoom)
            ntiles = len(list(mercantile.tiles(*bbox, zooms=zoom)))
            out = {a: workdir / f"{a}_{n}.tif" for a in ("notebook", "ours", "odc")}
            src = (
                ["--mosaicjson", info["mosaicjson"]]
                if args.ours_source == "mosaicjson"
                else ["--items", info["items"], "--assets", "image"]
            )
            ours_cmd = [
                sys.executable, "-m", "mosaic_assembler.cli", "--bbox", *map(str, bbox),
                "--zoom", str(zoom), *src, "--pixel-selection", "median", "--overwrite",
                "--json", "-q", str(out["ours"]),
            ]  # fmt: skip
            spec: dict[str, Any] = {}
            if "odc" in approaches:
                # the grid odc-stac gets is ours' output grid: one warm-up run of ours
                from _measure import measure

                measure(ours_cmd)
                shape, transform = grid_of(out["ours"])
                spec = {
                    "items": info["items"], "crs": "EPSG:3857", "shape": shape,
                    "transform": transform, "out": str(out["odc"]), "chunk": args.odc_chunk,
                    "scheduler": args.odc_scheduler, "gdal_cachemax": None,
                    "timeout": 1800, "groupby": "id", "bands": ["image.1", "image.2", "image.3"],
                }  # fmt: skip
            template = ""
            if server is not None:
                template = (
                    server.mosaic_template(info["mosaicjson"])
                    + "&tilesize=512&pixel_selection=median"
                )
            stats: dict[str, list[tuple[float, float, float, float]]] = {a: [] for a in approaches}
            failed: set[str] = set()
            for i in range(args.repeats):
                order = approaches if i % 2 == 0 else approaches[::-1]
                for who in order:
                    if who in failed:
                        continue
                    out[who].unlink(missing_ok=True)
                    server_cpu = 0.0
                    if who == "notebook":
                        assert server is not None
                        cmd = [sys.executable, __file__, "--baseline-child", template,
                               json.dumps(bbox), str(out[who]), str(zoom)]  # fmt: skip
                        c0 = _tree_cpu(server.proc.pid)
                        wall, rss, cpu, _ = run_child(cmd)
                        server_cpu = _tree_cpu(server.proc.pid) - c0
                    elif who == "ours":
                        wall, rss, cpu, _ = run_child(ours_cmd)
                    else:
                        try:
                            r = run_odc(spec)
                        except SystemExit as e:  # _measure's report (an OOM kill: -9)
                            print(f"  {ntiles} tiles, odc run {i + 1}: FAILED, not rerun: "
                                  f"{str(e)[-300:]}", flush=True)  # fmt: skip
                            failed.add(who)
                            continue
                        wall, rss, cpu = r["wall"], r["rss"], r["cpu"]
                    stats[who].append((wall, rss, cpu, server_cpu))
                    extra = f" + {server_cpu:6.1f} server CPU-s" if who == "notebook" else ""
                    print(
                        f"  {ntiles} tiles, {who:8s} run {i + 1}: {wall:6.1f} s, "
                        f"{rss:6.0f} MB peak RSS, {cpu:6.1f} CPU-s{extra}",
                        flush=True,
                    )
            med = {
                k: [statistics.median(v[j] for v in vals) for j in range(4)]
                for k, vals in stats.items()
                if vals
            }
            print(f"{ntiles} tiles of 512 px ({block[2]}x{block[3]}, "
                  f"{ntiles * 512 * 512 / 1e6:.1f} Mpx), medians of {args.repeats}:")  # fmt: skip
            print(f"  {'':10s} {'wall s':>8} {'peak RSS MB':>12} {'CPU s':>8} {'server CPU s':>13}")
            for k, (w, rs, c, sc) in med.items():
                srv = f"{sc:.1f}" if k == "notebook" else ""
                print(f"  {k:10s} {w:8.1f} {rs:12.0f} {c:8.1f} {srv:>13}")
            o = med.get("ours")
            if o and "notebook" in med:
                nb = med["notebook"]
                rss_target = "target <= 0.2" if ntiles >= 150 else "target at >= 150 tiles"
                print(
                    f"  notebook / ours wall: {nb[0] / o[0]:.2f}x faster (target >= 5); "
                    f"ours / notebook peak RSS: {o[1] / nb[1]:.2f} ({rss_target})"
                )
            if o and "odc" in med:
                print(f"  odc / ours wall: {med['odc'][0] / o[0]:.2f}x faster (target >= 3); "
                      f"ours / odc peak RSS: {o[1] / med['odc'][1]:.2f}")  # fmt: skip
            if o and ntiles <= 16:
                print(f"  ours peak RSS at {ntiles} tiles: {o[1]:.0f} MB (target <= 300)")
            if o and "notebook" in med:
                compared, differ = compare(out["ours"], out["notebook"])
                print(
                    f"  ours vs notebook: {compared} pixels compared, {differ} pixel values "
                    f"differ ({'identical' if differ == 0 else 'DIFFERENT'})"
                )
            if o and "odc" in med:
                st = compare_bands(out["ours"], out["odc"])
                both = sum(s["both"] for s in st)
                equal = sum(s["equal"] for s in st)
                only = sum(s["only_ours"] + s["only_odc"] for s in st)
                print(
                    f"  ours vs odc: {both} band pixels valid in both, {both - equal} differ "
                    f"(max |diff| {max(s['max_diff'] for s in st)}), {only} valid in one only",
                    flush=True,
                )
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", choices=["tiler", "inprocess"], default="tiler",
        help="tiler: assemble-mosaic --tiler vs the notebook on one TiTiler; inprocess: the "
        "notebook vs ours in-process vs odc-stac on generated Landsat-like scenes",
    )  # fmt: skip
    parser.add_argument("--sizes", type=int, nargs="+", help="tiles (156 400; inprocess 156 16)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", default="median", help="tiler mode only")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--server-workers", type=int, default=2)
    parser.add_argument("--zoom", type=int, default=11, help="inprocess: zoom (11)")
    parser.add_argument("--scenes", type=int, default=64, help="inprocess: scenes (64)")
    parser.add_argument("--scene-size", type=int, default=2048, help="inprocess: px (2048)")
    parser.add_argument("--resolution", type=float, default=30.0, help="inprocess: m (30)")
    parser.add_argument(
        "--approaches", nargs="+", default=["notebook", "ours", "odc"],
        choices=["notebook", "ours", "odc"], help="inprocess: which approaches to run",
    )  # fmt: skip
    parser.add_argument(
        "--ours-source", choices=["mosaicjson", "items"], default="mosaicjson",
        help="inprocess: what ours reads (the notebook reads the mosaicJSON, odc the items)",
    )  # fmt: skip
    parser.add_argument("--odc-scheduler", choices=["threads", "cluster"], default="threads")
    parser.add_argument(
        "--odc-chunk", type=int, default=2048,
        help="odc spatial chunk, px (at 156 tiles odc-stac's threaded median was OOM-killed on "
        "24 GB with 2048 and with 512: 19 and 22.6 GB anon RSS)",
    )  # fmt: skip
    parser.add_argument("--baseline-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--generate-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        template, bbox, out, zoom = args.baseline_child
        baseline(template, json.loads(bbox), out, int(zoom))
        return
    if args.generate_child:
        d, n, size, res, cover = json.loads(args.generate_child)
        generate_scenes(Path(d), n, size, res, cover)
        return
    if args.mode == "inprocess":
        args.sizes = args.sizes or [156, 16]
        inprocess(args)
        return
    args.sizes = args.sizes or [156, 400]

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
                            str(ZOOM),
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
