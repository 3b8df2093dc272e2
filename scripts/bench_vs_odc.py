"""assemble-mosaic (in-process median) vs odc-stac + Dask, end to end, on the demo scenes.

Both sides build the per-pixel median over the STAC items of a synthetic demo sample
(`mosaic_assembler.demo_data.make_demo_sample`, bands blue, green, red, nir08, uint16,
nodata 0) on the same EPSG:3857 grid, and write a DEFLATE (predictor 2, level 6) COG with
512-px blocks and nearest overviews:

* ours: `python -m mosaic_assembler.cli --items ... --pixel-selection median` in a child
  process; its output grid (512-px WebMercatorQuad tiles at the sample's zoom) is read back
  and given to odc-stac as an explicit `GeoBox`;
* odc: `odc.stac.load(items, geobox=..., resampling="nearest", groupby="id",
  chunks={"x": C, "y": C})`, zeros turned into NaN, `.median("time", skipna=True)`, cast
  back to uint16 by truncation (0 = nodata) and written with
  `odc.geo.cog.save_cog_with_dask` (`stats=False`: ours writes no band statistics).
  `groupby="id"` keeps one time slice per item, so both medians are over the same
  observations (`"solar_day"` would first fuse a date's scenes). With `--group-by solar_day`
  both sides take the median over solar days instead: ours with `--group-by solar_day`,
  odc-stac with `groupby="solar_day"`.

`--grid utm --group-by solar_day` (issue 12's benchmark): the items of the sample's most
common UTM zone only, sorted by time, on that zone's CRS at the scenes' resolution, snapped
to their pixel grid (ours: `--crs EPSG:326xx --resolution R --group-by solar_day`, `--snap
native` being the default when all sources share CRS and pixel size); odc:
`odc.stac.load(..., crs=..., geobox=<ours' grid>, groupby="solar_day")` + `.median("time")`.
With nearest resampling on a grid congruent with the sources both read the same source
pixels, so the outputs should agree on >= 99.9 % of the pixels (targets: wall <= 0.33x,
peak RSS <= 0.3x odc's).

odc runs under the Dask threaded scheduler or a `distributed.LocalCluster(n_workers=2,
threads_per_worker=1, processes=True)`; with `--scheduler auto` both are tried once (as
warm-ups) and the faster one is the baseline. Every run is a fresh child process
(`_measure.measure`), the two sides alternate, and the script prints the median wall time
and peak RSS per side, the ratios ours/odc (targets <= 0.5 each) and the pixel agreement
over pixels valid in both outputs.

Peak RSS: ours is the CLI process's own peak. odc with a LocalCluster is the sum of the
driver's peak (the scheduler runs in it) and each worker's peak (`client.run(getrusage)`);
the LocalCluster's nannies run inside the driver process.

    python scripts/bench_vs_odc.py [--size 2048] [--scenes 8] [--repeats 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BANDS = ("blue", "green", "red", "nir08")
BLOCKSIZE = 512
SAMPLE_INFO = "bench_sample.json"  # written last: a sample with it is complete and reused
DEFLATE_LEVEL = 6  # GDAL's default ZLEVEL, which our DEFLATE profile uses


# --------------------------------------------------------------------------------------------
# Child: generate the sample
# --------------------------------------------------------------------------------------------


def generate_child(out_dir: str, n_scenes: int, size: int, resolution: float) -> None:
    """Write the demo sample; print its bbox, zoom and items path as JSON, and save them.

    Args:
        out_dir: Directory of the sample.
        n_scenes: Number of scenes.
        size: Scene width and height in pixels.
        resolution: Scene pixel size in metres.
    """
    from mosaic_assembler.demo_data import make_demo_sample

    t0 = time.perf_counter()
    s = make_demo_sample(out_dir, n_scenes=n_scenes, size=size, resolution=resolution)
    info = json.dumps(
        {
            "bbox": list(s.bbox),
            "zoom": s.zoom,
            "items": str(s.items_path),
            "seconds": time.perf_counter() - t0,
        }
    )
    (Path(out_dir) / SAMPLE_INFO).write_text(info)
    print(info)


# --------------------------------------------------------------------------------------------
# Child: the odc-stac + Dask baseline
# --------------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux: ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def odc_child(spec: dict[str, Any]) -> None:
    """Median composite with odc-stac + Dask, written with odc-geo's COG writer.

    Prints a JSON line with the phase times and the peak RSS of every process involved.

    Args:
        spec: ``items`` (ItemCollection path, relative hrefs), ``shape`` (rows, cols),
            ``transform`` (6 affine coefficients, EPSG:3857), ``out`` (COG path),
            ``scheduler`` (``"threads"`` or ``"cluster"``), ``chunk`` (spatial chunk, px),
            ``gdal_cachemax`` (GDAL block cache, MB; None: GDAL's default, 5 % of RAM),
            ``crs`` (the grid's CRS, default EPSG:3857), ``groupby`` (default ``"id"``),
            ``timeout`` (s; the run fails with TimeoutError after it), ``bands`` (odc-stac
            band names, default BANDS; ``"image.1"`` is band 1 of a multi-band asset).
    """
    t0 = time.perf_counter()
    if spec.get("gdal_cachemax"):  # before GDAL loads; spawned workers inherit it
        os.environ["GDAL_CACHEMAX"] = str(spec["gdal_cachemax"])
    client = cluster = None
    if spec["scheduler"] == "cluster":
        # Started first, so that the worker processes are spawned from a small driver
        # (ru_maxrss survives exec: a worker would inherit a big driver's peak).
        from distributed import Client, LocalCluster

        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    t_cluster = time.perf_counter() - t0

    import warnings

    import dask
    import odc.stac
    import pystac
    import rasterio.errors
    from affine import Affine
    from odc.geo.cog import save_cog_with_dask
    from odc.geo.geobox import GeoBox

    # rasterio's MemoryDataset reads the transform before it sets it; harmless
    warnings.filterwarnings("ignore", category=rasterio.errors.NotGeoreferencedWarning)

    items = pystac.ItemCollection.from_file(spec["items"])
    root = Path(spec["items"]).resolve().parent
    for item in items:  # odc-stac needs absolute hrefs; the demo's are relative
        for asset in item.assets.values():
            asset.href = str((root / asset.href).resolve())

    geobox = GeoBox(tuple(spec["shape"]), Affine(*spec["transform"]), spec.get("crs", "EPSG:3857"))
    chunk = spec["chunk"]
    ds = odc.stac.load(
        items,
        bands=list(spec.get("bands", BANDS)),
        geobox=geobox,
        resampling="nearest",
        chunks={"x": chunk, "y": chunk},
        groupby=spec.get("groupby", "id"),
    )
    # nodata 0 -> NaN (float32, exact for uint16), NaN-skipping median over the items,
    # then truncation back to uint16 as numpy.ma.median + astype (rio-tiler) do; 0 = nodata
    med = ds.where(ds != 0).median("time", skipna=True)
    out = (
        med.to_array("band")
        .fillna(0)
        .astype("uint16")
        .transpose("y", "x", "band")
        .chunk({"y": chunk, "x": chunk, "band": -1})
    )
    out.attrs["nodata"] = 0
    Path(spec["out"]).unlink(missing_ok=True)
    # stats=False: ours writes no band statistics either, and odc-geo's statistics are
    # uint16 masked arrays, which distributed 2026.8 cannot deserialize under numpy 2.4
    # ("Cannot convert fill_value 999999 to dtype uint16"): transfers of them between
    # workers fail and the run hangs
    job = save_cog_with_dask(
        out,
        spec["out"],
        compression="deflate",
        level=DEFLATE_LEVEL,
        predictor=2,
        blocksize=BLOCKSIZE,
        overview_resampling="nearest",
        stats=False,
        client=client,
    )

    def _timeout(*_: Any) -> None:
        raise TimeoutError(f"odc-stac run exceeded {spec['timeout']} s")

    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(spec["timeout"])
    report: dict[str, Any] = {"scheduler": spec["scheduler"], "cluster_s": t_cluster}
    try:
        if client is None:
            with dask.config.set(scheduler="threads"):
                job.compute()
        else:
            job.compute()
        signal.alarm(0)
        report["total_s"] = time.perf_counter() - t0
        if client is not None:
            # the LocalCluster's nannies live in this (driver) process, as does the scheduler
            report["workers_mb"] = sorted(client.run(_peak_rss_mb).values())
    finally:
        if client is not None:
            client.close()
            cluster.close()
    report["driver_mb"] = _peak_rss_mb()
    report["rss_mb"] = report["driver_mb"] + sum(report.get("workers_mb", []))
    print(json.dumps(report))


# --------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------


def run_ours(
    items: str, bbox: list[float], grid: list[str], out: Path, group_by: str = "item"
) -> dict[str, Any]:
    """Run the CLI once in a child process.

    Args:
        items: STAC ItemCollection path.
        bbox: AOI (W, S, E, N) in lon/lat.
        grid: The grid options (``["--zoom", "11"]`` or ``["--crs", ..., "--resolution", ...]``).
        out: Output COG path.
        group_by: ``--group-by`` (``solar_day``: the median over dates).

    Returns:
        ``wall`` (s), ``rss`` (peak RSS, MB), ``cpu`` (s) and the CLI's JSON ``summary``.
    """
    from _measure import measure

    cmd = [
        sys.executable,
        "-m",
        "mosaic_assembler.cli",
        "--bbox",
        *map(str, bbox),
        *grid,
        "--items",
        items,
        "--assets",
        ",".join(BANDS),
        "--pixel-selection",
        "median",
        "--group-by",
        group_by,
        "--overwrite",
        "--json",
        "-q",
        str(out),
    ]
    wall, rss, cpu, stdout, _ = measure(cmd)
    return {
        "wall": wall,
        "rss": rss,
        "cpu": cpu,
        "summary": json.loads(stdout.strip().splitlines()[-1]),
    }


def run_odc(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the odc-stac baseline once in a child process (see :func:`odc_child`).

    Args:
        spec: The child's specification.

    Returns:
        ``wall`` (s), ``rss`` (MB: the child's own peak with threads, driver + workers
        with a LocalCluster), ``cpu`` (s, the driver's only) and the child's ``report``.
    """
    from _measure import measure

    cmd = [sys.executable, __file__, "--odc-child", json.dumps(spec)]
    wall, rss, cpu, stdout, _ = measure(cmd)
    report = json.loads(stdout.strip().splitlines()[-1])
    if spec["scheduler"] == "threads":
        report["rss_mb"] = rss  # the whole job ran in that one process
    return {"wall": wall, "rss": report["rss_mb"], "cpu": cpu, "report": report}


def utm_subset(items_path: str) -> tuple[str, str, float, list[float], int]:
    """The items of the sample's most common CRS, sorted by time, as an items file beside it.

    Returns:
        (items path, CRS, pixel size, lon/lat bbox of the kept items, number kept).
    """
    from collections import Counter

    src = Path(items_path)
    fc = json.loads(src.read_text())
    crs_of = [
        f["properties"].get("proj:code") or f"EPSG:{f['properties']['proj:epsg']}"
        for f in fc["features"]
    ]
    crs = Counter(crs_of).most_common(1)[0][0]
    kept = sorted(
        (f for f, c in zip(fc["features"], crs_of, strict=True) if c == crs),
        key=lambda f: f["properties"]["datetime"],
    )
    res = abs(float(kept[0]["properties"]["proj:transform"][0]))
    bboxes = [f["bbox"] for f in kept]
    bbox = [
        min(b[0] for b in bboxes),
        min(b[1] for b in bboxes),
        max(b[2] for b in bboxes),
        max(b[3] for b in bboxes),
    ]
    out = src.with_name(f"items_{crs.replace(':', '')}.json")
    out.write_text(json.dumps({**fc, "features": kept}))
    return str(out), crs, res, bbox, len(kept)


def grid_of(path: Path) -> tuple[list[int], list[float]]:
    """((rows, cols), 6 affine coefficients) of a raster."""
    import rasterio

    with rasterio.open(path) as src:
        return [src.height, src.width], list(src.transform)[:6]


def profile_line(path: Path) -> str:
    """A one-line description of a COG's layout (compression, predictor, blocks, overviews)."""
    import rasterio

    with rasterio.open(path) as src:
        ims = src.tags(ns="IMAGE_STRUCTURE")
        return (
            f"{src.width}x{src.height}x{src.count} {src.dtypes[0]}, "
            f"{ims.get('COMPRESSION', src.compression)}, predictor "
            f"{ims.get('PREDICTOR', '?')}, {ims.get('INTERLEAVE', '?').lower()} interleave, "
            f"blocks {src.block_shapes[0]}, overviews {src.overviews(1)}, "
            f"nodata {src.nodata}, mask {src.mask_flag_enums[0][0].name}, "
            f"{path.stat().st_size / 1e6:.1f} MB"
        )


def compare(ours: Path, odc: Path) -> list[dict[str, Any]]:
    """Per-band agreement over pixels valid in both outputs, block by block.

    Valid: ours under its dataset mask; odc where the band is not 0 (its nodata).

    Returns:
        Per band: ``both`` (pixels valid in both), ``equal`` (of those, equal values),
        ``max_diff`` (max absolute difference), ``only_ours`` / ``only_odc`` (valid in one).
    """
    import numpy
    import rasterio

    with rasterio.open(ours) as a, rasterio.open(odc) as b:
        stats = [dict(both=0, equal=0, max_diff=0, only_ours=0, only_odc=0) for _ in a.indexes]
        # odc-geo's Dask COG writer pads the raster to a multiple of its overview factors
        # (1398 x 1794 -> 1400 x 1796 with overviews 2, 4): same origin, ours' window compared
        fits = b.height >= a.height and b.width >= a.width
        assert fits and a.transform.almost_equals(b.transform), "grids differ"
        for _, win in a.block_windows(1):
            da, db = a.read(window=win), b.read(window=win)
            va = a.dataset_mask(window=win) > 0
            for i, st in enumerate(stats):
                vb = db[i] != 0
                both = va & vb
                diff = numpy.abs(da[i][both].astype(numpy.int32) - db[i][both])
                st["both"] += int(both.sum())
                st["equal"] += int((diff == 0).sum())
                st["max_diff"] = max(st["max_diff"], int(diff.max(initial=0)))
                st["only_ours"] += int((va & ~vb).sum())
                st["only_odc"] += int((vb & ~va).sum())
    return stats


def _fmt(r: dict[str, Any]) -> str:
    extra = ""
    if "report" in r and "workers_mb" in r["report"]:
        rep = r["report"]
        extra = (
            f" (cluster start {rep['cluster_s']:.1f} s; driver {rep['driver_mb']:.0f}"
            f" + workers {' + '.join(f'{w:.0f}' for w in rep['workers_mb'])})"
        )
    return f"{r['wall']:7.1f} s, {r['rss']:7.0f} MB peak RSS{extra}"


def main() -> None:
    """Parse arguments, generate the sample, run both sides alternately, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="scene side, px (default 2048)")
    parser.add_argument("--scenes", type=int, default=8, help="number of scenes (default 8)")
    parser.add_argument(
        "--resolution", type=float, default=30.0, help="scene pixel size, m (default 30)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="measured runs per side")
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    parser.add_argument(
        "--chunk", type=int, default=2048, help="odc-stac spatial chunk, px (default 2048)"
    )
    parser.add_argument(
        "--scheduler",
        choices=["auto", "threads", "cluster"],
        default="auto",
        help="odc's Dask scheduler; auto: try both, keep the faster",
    )
    parser.add_argument(
        "--odc-gdal-cachemax",
        type=int,
        metavar="MB",
        help="GDAL_CACHEMAX for odc (default: GDAL's, 5 %% of RAM; ours "
        "bounds its own cache to 64 MB)",
    )
    parser.add_argument(
        "--odc-timeout",
        type=int,
        default=1800,
        metavar="S",
        help="fail an odc run after S seconds (default 1800)",
    )
    parser.add_argument(
        "--group-by",
        choices=["item", "solar_day"],
        default="item",
        help="median over items (odc groupby='id') or over solar days (groupby='solar_day')",
    )
    parser.add_argument(
        "--grid",
        choices=["webmercator", "utm"],
        default="webmercator",
        help="webmercator: WebMercatorQuad tiles at the sample's zoom; utm: the main UTM "
        "zone's items on their own CRS and pixel grid (default webmercator; issue 12's "
        "benchmark is --grid utm --group-by solar_day)",
    )
    parser.add_argument("--odc-child", help=argparse.SUPPRESS)
    parser.add_argument("--generate-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.odc_child:
        odc_child(json.loads(args.odc_child))
        return
    if args.generate_child:
        d, n, size, res = args.generate_child
        generate_child(d, int(n), int(size), float(res))
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-odc-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sample_dir = workdir / f"sample_{args.scenes}x{args.size}_{args.resolution:g}m"
    if not (sample_dir / SAMPLE_INFO).exists():
        # generated in a child process so that this one stays small (see _measure.py)
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate-child",
                str(sample_dir),
                str(args.scenes),
                str(args.size),
                str(args.resolution),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    sample = json.loads((sample_dir / SAMPLE_INFO).read_text())
    print(
        f"sample: {args.scenes} scenes of {args.size} px at {args.resolution:g} m "
        f"(generated in {sample['seconds']:.1f} s); bbox {sample['bbox']}, "
        f"zoom {sample['zoom']}",
        flush=True,
    )

    ours_out, odc_out = workdir / "ours.tif", workdir / "odc.tif"
    crs = "EPSG:3857"
    ours_args: tuple[Any, ...] = (
        sample["items"],
        sample["bbox"],
        ["--zoom", str(sample["zoom"])],
        ours_out,
        args.group_by,
    )
    if args.grid == "utm":
        items, crs, res, bbox, n = utm_subset(sample["items"])
        ours_args = (
            items,
            bbox,
            ["--crs", crs, "--resolution", f"{res:g}"],
            ours_out,
            args.group_by,
        )
        print(f"utm grid: {n} items in {crs} at {res:g} m", flush=True)

    # warm-up (page cache, imports) and the output grid that odc-stac gets
    r = run_ours(*ours_args)
    shape, transform = grid_of(ours_out)
    print(
        f"grid: {shape[1]} x {shape[0]} px ({shape[0] * shape[1] / 1e6:.1f} Mpx), {crs}, "
        f"{transform[0]:.4f} m pixels; "
        f"ours warm-up: {_fmt(r)}",
        flush=True,
    )
    spec = {
        "items": ours_args[0],
        "crs": crs,
        "shape": shape,
        "transform": transform,
        "out": str(odc_out),
        "chunk": args.chunk,
        "scheduler": args.scheduler,
        "gdal_cachemax": args.odc_gdal_cachemax,
        "timeout": args.odc_timeout,
        "groupby": "id" if args.group_by == "item" else "solar_day",
    }

    if args.scheduler == "auto":
        trials = {}
        for sched in ("threads", "cluster"):
            try:
                trials[sched] = run_odc({**spec, "scheduler": sched})
            except SystemExit as e:  # _measure's report of a failed child
                print(f"odc warm-up, {sched:8s}: FAILED, not a candidate: {e}", flush=True)
                continue
            print(f"odc warm-up, {sched:8s}: {_fmt(trials[sched])}", flush=True)
        if not trials:
            raise SystemExit("odc-stac failed with both schedulers")
        spec["scheduler"] = min(trials, key=lambda k: trials[k]["wall"])
        print(f"baseline scheduler: {spec['scheduler']} (faster of the two)", flush=True)

    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "odc": []}
    for i in range(args.repeats):
        for who in ("odc", "ours") if i % 2 == 0 else ("ours", "odc"):
            r = run_ours(*ours_args) if who == "ours" else run_odc(spec)
            runs[who].append(r)
            print(f"  run {i + 1}, {who:4s}: {_fmt(r)}", flush=True)

    med = {
        k: {m: statistics.median(r[m] for r in v) for m in ("wall", "rss", "cpu")}
        for k, v in runs.items()
    }
    o, b = med["ours"], med["odc"]
    targets = (0.33, 0.3) if args.grid == "utm" else (0.5, 0.5)  # issue 12 / issue 4
    odc_label = f"odc ({spec['scheduler']})"
    print()
    print(
        f"{args.scenes} scenes x {args.size} px at {args.resolution:g} m -> "
        f"{shape[1]} x {shape[0]} px x {len(BANDS)} bands uint16, median of "
        f"{args.repeats} runs"
    )
    print(f"  {'':16s} {'wall s':>8} {'peak RSS MB':>12}")
    for name, m in (("ours (CLI)", o), (odc_label, b)):
        print(f"  {name:16s} {m['wall']:8.1f} {m['rss']:12.0f}")
    print(
        f"  ratio ours/odc: wall {o['wall'] / b['wall']:.2f} (target <= {targets[0]}), "
        f"peak RSS {o['rss'] / b['rss']:.2f} (target <= {targets[1]})"
    )
    print(f"  ours: {profile_line(ours_out)}")
    print(f"  odc:  {profile_line(odc_out)}")
    print("  pixel agreement over pixels valid in both:")
    for band, st in zip(BANDS, compare(ours_out, odc_out), strict=True):
        frac = st["equal"] / st["both"] if st["both"] else float("nan")
        print(
            f"    {band:6s} {st['both']:>10d} px, {frac:8.4%} equal, max |diff| "
            f"{st['max_diff']:5d}; valid only in ours {st['only_ours']}, only in odc "
            f"{st['only_odc']}"
        )


if __name__ == "__main__":
    main()
