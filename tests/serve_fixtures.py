"""Inputs and a real server for the `serve` tests: small uint8 RGB COGs of known colours."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy
import rasterio
import rasterio.shutil  # noqa: F401  (conftest.write_cog uses it)
from conftest import make_mosaicjson, write_cog
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from servers import free_port, stop_process, wait_http

RED, BLUE, GREEN, YELLOW = (220, 40, 40), (40, 60, 220), (40, 200, 60), (230, 210, 30)
# EPSG:3857 origin of the test COGs (~5.39 E, 45.50 N), 30 m pixels, 512 x 512
X0, Y0, RES, SIZE, BORDER = 600_000.0, 5_700_000.0, 30.0, 512, 16
GOOD, OTHER = "tok-good-3f9a1c", "tok-other-77d2e0"
GRANTS = {"layers": {"secret": "team"}, "tokens": {GOOD: ["team"], OTHER: ["other"]}}
REPO = Path(__file__).resolve().parents[1]


def _fill(colours: list[tuple[int, int, int]], size: int = SIZE) -> numpy.ndarray:
    """Vertical stripes of solid colours inside a nodata (0) border."""
    a = numpy.zeros((3, size, size), "uint8")
    edges = numpy.linspace(BORDER, size - BORDER, len(colours) + 1).astype(int)
    for colour, c0, c1 in zip(colours, edges[:-1], edges[1:], strict=True):
        a[:, BORDER:-BORDER, c0:c1] = numpy.array(colour, "uint8")[:, None, None]
    return a


@dataclass(frozen=True)
class ServeInputs:
    """The layers' files: rgb (red | blue), green (EPSG:4326), secret (yellow), split."""

    dir: Path
    rgb: Path
    green: Path
    secret: Path
    split: Path
    grants: Path

    def specs(self) -> list[str]:
        return [str(self.rgb), str(self.green), f"secret={self.secret}", str(self.split)]


def make_serve_inputs(d: Path) -> ServeInputs:
    rgb = write_cog(d / "rgb.tif", _fill([RED, BLUE]), "EPSG:3857", from_origin(X0, Y0, RES, RES))
    secret = write_cog(
        d / "secret.tif", _fill([YELLOW]), "EPSG:3857", from_origin(X0, Y0, RES, RES)
    )
    green = write_cog(
        d / "green.tif", _fill([GREEN], 400), "EPSG:4326", from_origin(5.38, 45.51, 0.0004, 0.0004)
    )
    split = d / "split"
    split.mkdir()
    half = SIZE // 2  # two COGs of one grid, side by side, as splits.py writes them
    west = _fill([RED, GREEN])[:, :, :half]
    east = _fill([GREEN, BLUE])[:, :, half:]
    parts = [
        write_cog(split / "a.tif", west, "EPSG:3857", from_origin(X0, Y0, RES, RES)),
        write_cog(split / "b.tif", east, "EPSG:3857", from_origin(X0 + half * RES, Y0, RES, RES)),
    ]
    make_mosaicjson(parts, split / "mosaic.json", minzoom=9, maxzoom=12)
    grants = d / "grants.json"
    grants.write_text(json.dumps(GRANTS))
    return ServeInputs(d, rgb, green, secret, split, grants)


@contextlib.contextmanager
def run_serve(args: list[str], log: Path) -> Iterator[str]:
    """`assemble-mosaic serve ARGS` on a free 127.0.0.1 port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mosaic_assembler.cli", "serve", *args, "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=err, env=env,
        )  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/api/layers", timeout=60, proc=proc)
            yield base
        finally:
            stop_process(proc)


def centre(path):
    with rasterio.open(path) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return (w + e) / 2, (s + n) / 2


def expected_window(path, bbox):
    with rasterio.open(path) as src:
        left, bottom, right, top = transform_bounds("EPSG:4326", src.crs, *bbox, densify_pts=21)
        w = from_bounds(left, bottom, right, top, src.transform)
        eps = 1e-9  # whole pixels; a float error of an edge on a pixel boundary is no pixel
        c0, r0 = int(numpy.floor(w.col_off + eps)), int(numpy.floor(w.row_off + eps))
        c1 = int(numpy.ceil(w.col_off + w.width - eps))
        r1 = int(numpy.ceil(w.row_off + w.height - eps))
        c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, src.width), min(r1, src.height)
        win = Window(c0, r0, c1 - c0, r1 - r0)
        return (
            src.read(window=win),
            src.dataset_mask(window=win),
            src.window_transform(win),
            src.crs,
        )
