"""Chunk-file compression for S3 run directories: CPU seconds against bytes, per codec.

Takes the chunk files of a real median run over the demo sample (written raw, as on a local
run directory), then rewrites every chunk from its pixels the way a worker writes it (tiled
256 px, internal mask, the run's internal overviews) with each candidate codec, and reads it
back whole. Codecs run in turn, rounds alternate, medians of `--rounds` (>= 3). Printed: the
bytes and the CPU seconds of writing and of reading back, as ratios to the raw file.

    python scripts/bench_chunk_compression.py [--min-tiles 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy
import rasterio
from rasterio.enums import Resampling

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mosaic_assembler import assemble  # noqa: E402
from mosaic_assembler.demo_data import make_demo_sample  # noqa: E402

CODECS: dict[str, dict[str, object]] = {
    "raw": {},
    "zstd1": {"compress": "ZSTD", "zstd_level": 1},
    "zstd1+pred2": {"compress": "ZSTD", "zstd_level": 1, "predictor": 2},
    "deflate1+pred2": {"compress": "DEFLATE", "zlevel": 1, "predictor": 2},
    "deflate6+pred2": {"compress": "DEFLATE", "zlevel": 6, "predictor": 2},
    "lzw+pred2": {"compress": "LZW", "predictor": 2},
}


def _chunks(work: Path, min_tiles: int) -> list[Path]:
    demo = make_demo_sample(work / "demo")
    opts = dict(items=str(demo.items_path), assets=("red", "green", "blue"), tilesize=256,
                pixel_selection="median", progress=False)  # fmt: skip
    for zoom in range(8, 18):
        if assemble(work / "x.tif", dry_run=True, zoom=zoom, **opts).tiles_total >= min_tiles:
            break
    run = work / "run"
    assemble(work / "out.tif", zoom=zoom, run_dir=str(run), keep_run_dir=True, **opts)
    return sorted(p for p in (run / "chunks").glob("r*-c*.tif") if p.name.count(".") == 1)


def _rewrite(src: Path, dst: Path, codec: dict[str, object]) -> float:
    """CPU seconds to write `src`'s pixels as a worker does, with `codec`."""
    with rasterio.open(src) as s:
        data, mask, profile = s.read(), s.read_masks(1), dict(s.profile)
        factors = s.overviews(1)
    profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, sparse_ok=True)
    for k in ("compress", "predictor", "zstd_level", "zlevel", "interleave"):
        profile.pop(k, None)
    profile.update(codec)
    t0 = time.process_time()
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES", GDAL_CACHEMAX=16 * 2**20):
        with rasterio.open(dst, "w", **profile) as d:
            d.write(data)
            d.write_mask(mask)
            if factors:
                d.build_overviews(factors, Resampling.nearest)
    return time.process_time() - t0


def _read(path: Path) -> float:
    t0 = time.process_time()
    with rasterio.open(path) as s:
        s.read()
        s.read_masks(1)
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-tiles", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-chunkcomp-"))
    chunks = _chunks(work, args.min_tiles)
    print(f"{len(chunks)} chunk files, {sum(p.stat().st_size for p in chunks) / 1e6:.1f} MB raw")
    write: dict[str, list[float]] = {c: [] for c in CODECS}
    read: dict[str, list[float]] = {c: [] for c in CODECS}
    size: dict[str, int] = {}
    same = {c: True for c in CODECS}
    for r in range(args.rounds):
        order = list(CODECS) if r % 2 == 0 else list(reversed(CODECS))
        for name in order:
            out = work / name
            out.mkdir(exist_ok=True)
            write[name].append(sum(_rewrite(p, out / p.name, CODECS[name]) for p in chunks))
            read[name].append(sum(_read(out / p.name) for p in chunks))
            size[name] = sum((out / p.name).stat().st_size for p in chunks)
            if r == 0:
                for p in chunks:
                    with rasterio.open(p) as a, rasterio.open(out / p.name) as b:
                        same[name] &= bool(numpy.array_equal(a.read(), b.read()))
                        same[name] &= bool(numpy.array_equal(a.read_masks(1), b.read_masks(1)))
    base_w, base_r = statistics.median(write["raw"]), statistics.median(read["raw"])
    print(f"{'codec':16} {'MB':>8} {'bytes':>7} {'write CPU s':>12} {'x raw':>6} "
          f"{'read CPU s':>11} {'x raw':>6}  lossless")  # fmt: skip
    for name in CODECS:
        w, rd = statistics.median(write[name]), statistics.median(read[name])
        print(f"{name:16} {size[name] / 1e6:8.1f} {size[name] / size['raw']:7.3f} {w:12.2f} "
              f"{w / base_w:6.2f} {rd:11.2f} {rd / base_r:6.2f}  {same[name]}")  # fmt: skip


if __name__ == "__main__":
    main()
