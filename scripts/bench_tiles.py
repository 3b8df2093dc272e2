"""Tiles per second: `assemble-mosaic tiles` (folder, PMTiles) vs gdal2tiles and rio-pmtiles.

The same COG (the demo median, rescaled to uint8 RGB), zooms, tile size (256), format (PNG)
and nearest resampling for every tool, on 2 cores (`taskset -c 0,1` where there is one):
    assemble-mosaic tiles --concurrency 2         (2 worker processes, the default)
    render_tiles(..., parallel="threads")         ("ours threads": the thread pool, for scale)
    gdal2tiles.py --processes=2 --xyz -r near    (Debian: apt-get install gdal-bin python3-gdal)
    rio pmtiles -j 2 --resampling nearest        (pip install rio-pmtiles)
Runs alternate between the tools, each into a fresh output; the medians of --repeat runs
(>= 3) are printed with the ratios. The tile counts differ (gdal2tiles and rio-pmtiles may
write tiles that hold no data): tiles/s counts each tool's own tiles, and the wall-time
ratio compares the same pyramid.

    python scripts/bench_tiles.py [--zooms 6-13] [--repeat 3] [--work /tmp/bench-tiles]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def demo_median(work: Path) -> Path:
    """The demo sample's median composite as a uint8 RGB COG (made once, then reused)."""
    cog = work / "median_rgb.tif"
    if cog.is_file():
        return cog
    sys.path.insert(0, str(ROOT))
    from mosaic_assembler import assemble
    from mosaic_assembler.demo_data import make_demo_sample

    sample = make_demo_sample(work / "demo", size=1024, resolution=30.0)
    assemble(
        cog,
        bbox=sample.bbox,
        zoom=sample.zoom + 1,
        items=str(sample.items_path),
        assets=("red", "green", "blue"),
        pixel_selection="median",
        rescale=("0,3000",),
        progress=False,
    )
    return cog


def count_files(root: Path, ext: str) -> int:
    return sum(1 for p in root.rglob(f"*.{ext}") if p.parent.name.isdigit())


def count_pmtiles(path: Path) -> int:
    from pmtiles.reader import MmapSource, Reader

    with path.open("rb") as f:
        return int(Reader(MmapSource(f)).header()["addressed_tiles_count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zooms", default="6-13")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-tiles"))
    args = parser.parse_args()
    if args.repeat < 3:
        parser.error("--repeat needs >= 3 (medians)")
    args.work.mkdir(parents=True, exist_ok=True)
    cog = demo_median(args.work)
    zmin, zmax = args.zooms.split("-")
    pin = ["taskset", "-c", "0,1"] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []
    python = sys.executable
    out = args.work / "out"
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env_path}" if env_path else str(ROOT)
    ours = [python, "-m", "mosaic_assembler.cli", "tiles", str(cog)]
    ours_args = ["--zooms", args.zooms, "--concurrency", "2", "-q"]
    threads = (
        "from mosaic_assembler.render import render_tiles; import sys; "
        "render_tiles(sys.argv[1], sys.argv[2], zooms=sys.argv[3], concurrency=2, "
        "parallel='threads')"
    )
    tools: dict[str, tuple[list[str], Path, str]] = {
        "ours folder": ([*ours, str(out / "folder"), *ours_args], out / "folder", "png"),
        "ours pmtiles": ([*ours, str(out / "a.pmtiles"), *ours_args], out / "a.pmtiles", "pm"),
        "ours threads": (
            [python, "-c", threads, str(cog), str(out / "threads"), args.zooms],
            out / "threads",
            "png",
        ),
    }
    gdal2tiles = shutil.which("gdal2tiles.py") or shutil.which("gdal2tiles")
    if gdal2tiles:
        cmd = [gdal2tiles, f"--zoom={args.zooms}", "--processes=2", "--xyz", "-r", "near"]
        cmd += ["-w", "none", "-q", str(cog), str(out / "gdal")]
        tools["gdal2tiles"] = (cmd, out / "gdal", "png")
    else:
        print("gdal2tiles: not installed (apt-get install gdal-bin python3-gdal); skipped")
    rio = shutil.which("rio", path=str(Path(python).parent)) or shutil.which("rio")
    if rio and not os.system(f"{rio} pmtiles --help > /dev/null 2>&1"):
        cmd = [rio, "pmtiles", str(cog), str(out / "rio.pmtiles"), "--zoom-levels"]
        cmd += [f"{zmin}..{zmax}", "-j", "2", "--resampling", "nearest", "-f", "PNG"]
        cmd += ["--tile-size", "256", "--silent"]
        tools["rio-pmtiles"] = (cmd, out / "rio.pmtiles", "pm")
    else:
        print("rio-pmtiles: not installed (pip install rio-pmtiles); skipped")

    walls: dict[str, list[float]] = {name: [] for name in tools}
    cpus: dict[str, list[float]] = {name: [] for name in tools}
    counts: dict[str, int] = {}
    names = list(tools)
    for rep in range(args.repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]  # alternate who goes first
        for name in order:
            cmd, target, kind = tools[name]
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            wall, rss, cpu, _, _ = measure([*pin, *cmd])
            walls[name].append(wall)
            cpus[name].append(cpu)
            counts[name] = count_pmtiles(target) if kind == "pm" else count_files(target, "png")
            print(f"  run {rep + 1} {name:13s} {wall:6.2f} s  {counts[name]} tiles  "
                  f"cpu {cpu:5.1f} s  rss {rss:5.0f} MB", flush=True)  # fmt: skip
    print(f"\n{cog.name}, zooms {args.zooms}, 256 px PNG, 2 cores, medians of {args.repeat}:")
    med = {name: statistics.median(w) for name, w in walls.items()}
    for name in names:
        rate = counts[name] / med[name]
        cpu = statistics.median(cpus[name])
        print(f"{name:13s} {med[name]:6.2f} s  {counts[name]:6d} tiles  {rate:7.1f} tiles/s"
              f"  cpu {cpu:5.1f} s")  # fmt: skip
    for ref in ("gdal2tiles", "rio-pmtiles"):
        if ref not in med:
            continue
        for name in ("ours folder", "ours pmtiles"):
            speed = med[ref] / med[name]
            rate = (counts[name] / med[name]) / (counts[ref] / med[ref])
            print(f"{name} vs {ref}: {speed:.2f}x faster (wall), {rate:.2f}x the tiles/s")


if __name__ == "__main__":
    main()
