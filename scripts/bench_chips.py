"""chips vs the seed's per-plot loop (issue 15): points per second and peak RSS.

The seed (`../shared/seeds/003_*`, TimeSync extraction) processes one plot at a time: for
each observation it opens the QA band to test the centre pixel, then opens every band and
reads its boundless window, rescales to Collection 1, and writes the PNG composites and a
CSV row. `seed_loop` below re-implements that loop faithfully (one item per observation:
the demo's scenes overlap, so the seed's same-day sum would not apply) with the b432
composite (the demo has no SWIR bands for b743/tcap), and writes what the seed writes, the
way it writes it: each PNG through rasterio's PNG driver with `crs` and `transform` (GDAL's
defaults: zlib level 6, and the georeferencing in `<png>.aux.xml`), one CSV row per
observation. chips writes more: the chip GeoTIFF of every observation (source bands, mask)
besides each PNG and its .aux.xml, and values.csv. The script asserts identical values and,
for every PNG, identical decoded pixels (not bytes: chips encodes them itself, faster) with
the same CRS and pixel size; the seed's origin is its `build_affine(centered_bounds(…))`, the
plot's coordinates ± 127 pixels (within a pixel of chips', which is the chip's pixel corner).
It prints the files' counts and sizes.

Each run is its own process (peak RSS = its VmHWM; CPU = user + system time of the process
and of its worker processes); runs alternate seed, chips, ...; the figures are medians of
`--repeat` runs.

    python scripts/bench_chips.py [--points 1000] [--repeat 3] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy

ASSETS = ("blue", "green", "red", "nir08")
QA_EXPR = "(qa & 192) == 0"  # the seed's classify_qa: cloudy unless clear (6) or water (7)


# ------------------------------------------------------------------ the seed's loop
def convert_sr(data):
    return ((data.astype(float) * 0.0000275 - 0.2) * 10000).astype(numpy.int16)


def byte_scale(array, lo, hi):
    out = (255 / (hi - lo)) * (array - lo)
    return numpy.maximum(numpy.minimum(out, 255), 0).astype(numpy.uint8)


def seed_loop(points: list[dict], items: list[dict], root: Path, out: Path, size: int) -> int:
    """The seed's process_plot / process_group, one item per observation."""
    import rasterio as rio
    from pyproj import Transformer
    from shapely.geometry import Point, shape

    footprints = [shape(f["geometry"]) for f in items]
    rows = []
    for plot in points:
        records = [f for f, fp in zip(items, footprints, strict=True)
                   if fp.intersects(Point(plot["x"], plot["y"]))]  # fmt: skip
        for record in records:
            href = {k: str(root / v["href"]) for k, v in record["assets"].items()}
            crs = f"EPSG:{record['properties']['proj:epsg']}"
            x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(
                plot["x"], plot["y"]
            )
            with rio.open(href["qa_pixel"]) as ds:  # read_qa_at_plot
                row, col = ds.index(x, y)
                qa = ds.read(1, window=rio.windows.Window(col, row, 1, 1), boundless=False)
            if qa.size == 0 or int(qa.item()) & 1:
                continue
            data = {}
            for band in (*ASSETS, "qa_pixel"):  # read_bands: every band opened per plot
                with rio.open(href[band]) as ds:
                    row, col = ds.index(x, y)
                    win = rio.windows.Window(col - size // 2, row - size // 2, size, size)
                    arr = ds.read(1, window=win, boundless=True, fill_value=0, masked=True)
                    data[band] = arr.filled()
                    res = ds.res[0]
            date = record["properties"]["datetime"][:10]
            name = f"{date}_{record['id']}"
            combined = {k: convert_sr(v) if k != "qa_pixel" else v for k, v in data.items()}
            mask = (numpy.stack([combined[k] for k in ASSETS]) == convert_sr(numpy.array(0))).any(0)
            b432 = numpy.stack([combined[k] for k in ("nir08", "red", "green")])
            rgb = numpy.stack([byte_scale(b432[i], *r) for i, r in
                               enumerate([(151, 4951), (-300, 2500), (50, 1150)])])  # fmt: skip
            rgb[:, mask] = 0
            png = out / "b432" / plot["key"] / f"{name}.png"
            png.parent.mkdir(parents=True, exist_ok=True)
            # the seed's write_to_png: rasterio's PNG driver with the CRS and its build_affine
            # of centered_bounds (the plot's coordinates ± 127 pixels of 30 m): GDAL keeps them
            # in png.aux.xml
            # (30 m in the seed, Landsat's pixel: the band's own pixel size here)
            px = res
            aff = rio.Affine(px, 0, x - (size // 2) * px, 0, -px, y + (size // 2) * px)
            with rio.open(png, "w", driver="PNG", count=3, nodata=None, crs=crs, transform=aff,
                          height=size, width=size, dtype=numpy.uint8) as dst:  # fmt: skip
                dst.write(rgb)
            c = size // 2
            qa_c = int(combined["qa_pixel"][c, c])
            rows.append({"plot_id": plot["plot_id"], "item_id": record["id"],
                         **{k: int(combined[k][c, c]) for k in ASSETS},
                         "qa": 0 if qa_c & (1 << 6) or qa_c & (1 << 7) else 1})  # fmt: skip
            # the seed writes one CSV per observation
            with (out / "csv").open("a", newline="") as f:
                csv.writer(f).writerow(rows[-1].values())
    (out / "values.json").write_text(json.dumps(rows))
    return len(rows)


# ------------------------------------------------------------------ chips
def chips_run(points_csv: Path, items_path: Path, out: Path, size: int, concurrency: int) -> int:
    from mosaic_assembler.chips import extract_chips

    r = extract_chips(points_csv, out, items=items_path, assets=",".join(ASSETS), size=size,
                      mask_band="qa_pixel", mask_expression=QA_EXPR, composites=("b432",),
                      rescale="c1", concurrency=concurrency)  # fmt: skip
    assert r.failed == 0, r.failures
    (out / "reads.json").write_text(json.dumps(r.reads))
    return r.rows


def child(kind: str, work: Path, out: Path, size: int, concurrency: int) -> None:
    """One measured run in this process; prints a JSON line."""
    pts = json.loads((work / "points.json").read_text())
    t0, c0 = time.perf_counter(), _cpu_seconds()
    if kind == "seed":
        items = json.loads((work / "demo" / "items.json").read_text())["features"]
        with warnings.catch_warnings():  # rasterio warns that the PNG driver copies on close
            warnings.simplefilter("ignore")
            n = seed_loop(pts, items, work / "demo", out, size)
    else:
        n = chips_run(work / "points.csv", work / "demo" / "items.json", out, size, concurrency)
    dt, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    rss = _peak_rss_mb()
    workers = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if kind == "chips" else 0.0
    )
    print(json.dumps({"kind": kind, "seconds": dt, "cpu_s": cpu, "rows": n,
                      "pps": len(pts) / dt, "rss_mb": rss, "worker_rss_mb": workers}))  # fmt: skip


def _cpu_seconds() -> float:
    """User + system time of this process and of its (finished) worker processes."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would include the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _values(kind: str, out: Path) -> set[tuple]:
    if kind == "seed":
        rows = json.loads((out / "values.json").read_text())
    else:
        rows = list(csv.DictReader((out / "values.csv").read_text().splitlines()))
    return {(str(r["plot_id"]), r["item_id"], *(int(r[k]) for k in ASSETS), int(r["qa"]))
            for r in rows}  # fmt: skip


def _make_points(work: Path, n: int, bbox: tuple[float, ...]) -> None:
    rng = numpy.random.default_rng(42)
    w, s, e, nn = bbox
    pts = [{"key": f"prj_{i}", "plot_id": i, "x": round(float(rng.uniform(w, e)), 6),
            "y": round(float(rng.uniform(s, nn)), 6)} for i in range(n)]  # fmt: skip
    (work / "points.json").write_text(json.dumps(pts))
    with (work / "points.csv").open("w") as f:
        f.write("project_id,plot_id,x,y\n")
        f.writelines(f"prj,{p['plot_id']},{p['x']},{p['y']}\n" for p in pts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=255)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--child", nargs=3, metavar=("KIND", "WORK", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], Path(a.child[1]), Path(a.child[2]), a.size, a.concurrency)
        return
    from mosaic_assembler.demo_data import make_demo_sample

    with tempfile.TemporaryDirectory(prefix="bench_chips_") as tmp:
        work = Path(tmp)
        sample = make_demo_sample(work / "demo")
        _make_points(work, a.points, sample.bbox)
        results: dict[str, list[dict]] = {"seed": [], "chips": []}
        files: dict[str, dict[str, tuple]] = {}
        sizes: dict[str, dict[str, tuple[int, int]]] = {}
        values: dict[str, set[tuple]] = {}
        for r in range(a.repeat):
            for kind in ("seed", "chips"):
                out = work / f"{kind}{r}"
                cmd = [sys.executable, __file__, "--size", str(a.size), "--concurrency",
                       str(a.concurrency), "--child", kind, str(work), str(out)]  # fmt: skip
                line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                results[kind].append(json.loads(line.strip().splitlines()[-1]))
                print(f"  run {r + 1} {kind:5s}: {results[kind][-1]}", flush=True)
                if r == 0:  # the outputs compared
                    files[kind] = _output_files(out)
                    values[kind] = _values(kind, out)
                    sizes[kind] = _sizes(out)
                else:
                    shutil.rmtree(out)
        assert values["seed"] == values["chips"], (
            len(values["seed"]), len(values["chips"]),
            list(values["seed"] ^ values["chips"])[:5],
        )  # fmt: skip
        problem = _same_pixels_and_georeferencing(files["seed"], files["chips"])
        assert not problem, problem
        reads = json.loads((work / "chips0" / "reads.json").read_text())
        _print_summary(a, results, len(values["seed"]), len(files["seed"]), reads, sizes)


def _output_files(out: Path) -> dict[str, tuple]:
    """Every PNG composite of a run: path -> (sha256 of its decoded pixels, EPSG, transform).

    Decoded, not bytes: chips encodes its PNGs faster (zlib level 1, one filter), the seed
    through GDAL's PNG driver. The CRS and transform are what rasterio reads back (from the
    .aux.xml beside each PNG, on both sides).
    """
    import rasterio

    got = {}
    for p in sorted((out / "b432").rglob("*.png")):
        with rasterio.open(p) as ds:
            pixels = ds.read()
            got[str(p.relative_to(out))] = (hashlib.sha256(pixels.tobytes()).hexdigest(),
                                            ds.crs.to_epsg(), ds.transform)  # fmt: skip
    return got


def _same_pixels_and_georeferencing(seed: dict[str, tuple], chips: dict[str, tuple]) -> str:
    """'' when every PNG decodes to the same pixels with the same CRS and pixel size, and
    origins less than a pixel apart (the seed's transform puts the plot's coordinates, not
    its pixel's corner, 127 pixels from the chip's corner); else what differs."""
    if seed.keys() != chips.keys():
        return _first_difference({k: v[0] for k, v in seed.items()}, chips)
    for name, (sha, epsg, t) in seed.items():
        sha2, epsg2, t2 = chips[name]
        if sha != sha2:
            return f"{name}: decoded pixels differ"
        if epsg != epsg2 or (t.a, t.e) != (t2.a, t2.e):
            return f"{name}: CRS or pixel size differ ({epsg} {t} vs {epsg2} {t2})"
        if abs(t.c - t2.c) >= abs(t.a) or abs(t.f - t2.f) >= abs(t.e):
            return f"{name}: origins more than a pixel apart ({t} vs {t2})"
    return ""


def _sizes(out: Path) -> dict[str, tuple[int, int]]:
    """(files, bytes) of the chip GeoTIFFs, the PNGs and their .aux.xml."""
    sizes = {}
    for kind, pattern in (("tif", "chips/**/*.tif"), ("png", "b432/**/*.png"),
                          ("aux.xml", "b432/**/*.aux.xml")):  # fmt: skip
        files = list(out.glob(pattern))
        sizes[kind] = (len(files), sum(f.stat().st_size for f in files))
    return sizes


def _first_difference(a: dict[str, str], b: dict[str, str]) -> str:
    only = sorted(a.keys() ^ b.keys())
    if only:
        return f"{len(only)} files in one run only, e.g. {only[:3]}"
    diff = sorted(k for k in a if a[k] != b[k])
    return f"{len(diff)} files differ, e.g. {diff[:3]}"


def _print_summary(
    a: argparse.Namespace, results: dict, rows: int, pngs: int, reads: dict, sizes: dict
) -> None:
    metrics = ("pps", "rss_mb", "seconds", "cpu_s", "worker_rss_mb")
    med = {k: {m: statistics.median(r[m] for r in v) for m in metrics}
           for k, v in results.items()}  # fmt: skip
    print(f"\n{a.points} points, {rows} observations (values identical: yes; {pngs} PNGs: "
          f"decoded pixels identical, same CRS and pixel size: yes), chip {a.size} px, medians of "
          f"{a.repeat} runs, chips --concurrency {a.concurrency}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for k in ("seed", "chips"):
        print(f"  {k:5s}: {med[k]['pps']:7.1f} points/s  ({med[k]['seconds']:.1f} s, CPU "
              f"{med[k]['cpu_s']:.1f} s)  peak RSS {med[k]['rss_mb']:.0f} MB"
              + (f" (worker processes: {med[k]['worker_rss_mb']:.0f} MB each at most)"
                 if med[k]["worker_rss_mb"] else ""))  # fmt: skip
    for k in ("seed", "chips"):
        listed = [f"{n} {kind} {b / 2**20:.1f} MiB" for kind, (n, b) in sizes[k].items() if n]
        print(f"  {k:5s} files: " + ", ".join(listed))
    print(f"  chips reads: {reads}; the seed opens {len(ASSETS) + 2} files per observation")
    print(f"  speed-up: {med['chips']['pps'] / med['seed']['pps']:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
