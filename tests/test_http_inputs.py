"""http:// hrefs read through GDAL's /vsicurl/ (range reads, retries, timeouts).

The server is real (`servers.RangeServer`: a file server with byte ranges, in its own process
on 127.0.0.1). Oracle: the same run over the local files, read back with rasterio. Every GDAL
HTTP timeout is short here (set in the environment, which `storage.gdal_env` keeps), and the
failing runs are CLI subprocesses with a deadline: nothing can hang the test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import rasterio
from servers import RangeServer, free_port

from mosaic_assembler import assemble
from mosaic_assembler.demo_data import make_demo_sample

ZOOM, TILESIZE = 11, 256
ASSETS = ("red", "green", "blue")
#: short enough that a stuck read fails fast, long enough for a loaded 2-core machine
_FAST_HTTP = {"GDAL_HTTP_TIMEOUT": "20", "GDAL_HTTP_CONNECTTIMEOUT": "5",
              "GDAL_HTTP_MAX_RETRY": "2", "GDAL_HTTP_RETRY_DELAY": "0.2"}  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"), n_scenes=4, size=256, resolution=120.0)


@pytest.fixture(scope="module")
def oracle(demo, tmp_path_factory):
    """The local-file run that every http:// run must equal."""
    out = tmp_path_factory.mktemp("oracle") / "local.tif"
    assemble(out, progress=False, **_options(items=str(demo.items_path)))
    return out


@pytest.fixture(autouse=True)
def _fast_http(monkeypatch):
    for name, value in _FAST_HTTP.items():
        monkeypatch.setenv(name, value)


def _options(**source):
    return dict(zoom=ZOOM, tilesize=TILESIZE, assets=ASSETS, pixel_selection="median",
                chunk_tiles=2, **source)  # fmt: skip


def _items_at(demo, base: str, out: Path, broken: str = "") -> Path:
    """The demo's items with absolute hrefs under `base` (the first item's red at `broken`)."""
    items = json.loads(demo.items_path.read_text())
    for item in items["features"]:
        for asset in item["assets"].values():
            asset["href"] = f"{base}/{asset['href'].removeprefix('./')}"
    if broken:
        items["features"][0]["assets"]["red"]["href"] = f"{base}/{broken}"
    out.write_text(json.dumps(items))
    return out


def _mosaicjson_at(demo, base: str, out: Path) -> Path:
    doc = json.loads(demo.mosaicjson_path.read_text())
    root = str(demo.root)
    doc["tiles"] = {
        q: [f"{base}{h.removeprefix(root)}" for h in hrefs] for q, hrefs in doc["tiles"].items()
    }
    out.write_text(json.dumps(doc))
    return out


def _assert_same(path: Path, oracle: Path) -> None:
    with rasterio.open(path) as got, rasterio.open(oracle) as want:
        assert (got.width, got.height, got.count) == (want.width, want.height, want.count)
        assert got.transform == want.transform
        numpy.testing.assert_array_equal(got.dataset_mask(), want.dataset_mask())
        numpy.testing.assert_array_equal(got.read(), want.read())


@pytest.fixture(scope="module")
def served(demo):
    server = RangeServer(demo.root)
    yield server
    server.stop()


def test_http_items_equal_the_local_run_through_range_reads(served, demo, oracle, tmp_path):
    items = _items_at(demo, served.url, tmp_path / "items.json")
    before = len(served.requests())
    r = assemble(tmp_path / "http.tif", progress=False, **_options(items=str(items)))
    assert r.tiles_failed == 0 and r.tiles_done > 0
    _assert_same(tmp_path / "http.tif", oracle)
    # GDAL read the COGs by byte ranges (and never the whole of one): /vsicurl/, not a download
    reads = [(m, p, rng) for m, p, rng, _ in served.requests()[before:] if p.endswith(".TIF")]
    assert reads and all(m in ("GET", "HEAD") for m, _, _ in reads)
    gets = [rng for m, _, rng in reads if m == "GET"]
    assert gets and all(rng.startswith("bytes=") for rng in gets), gets[:5]


def test_http_mosaicjson_equals_the_local_run(served, demo, tmp_path):
    local = tmp_path / "local.tif"
    opts = dict(zoom=ZOOM, tilesize=TILESIZE, pixel_selection="median", chunk_tiles=2,
                bbox=demo.bbox)  # fmt: skip
    assemble(local, progress=False, mosaicjson=str(demo.mosaicjson_path), **opts)
    mosaic = _mosaicjson_at(demo, served.url, tmp_path / "mosaic.json")
    assert all(
        h.startswith("http://127.0.0.1:")
        for hs in json.loads(mosaic.read_text())["tiles"].values()
        for h in hs
    )
    r = assemble(tmp_path / "http.tif", progress=False, mosaicjson=str(mosaic), **opts)
    assert r.tiles_failed == 0
    _assert_same(tmp_path / "http.tif", local)


def test_gdal_retries_a_server_that_fails_each_request_once(demo, oracle, tmp_path):
    """Every (method, path) is answered 503 the first time: GDAL's retries make it whole."""
    server = RangeServer(demo.root, flaky_status=503)
    try:
        items = _items_at(demo, server.url, tmp_path / "items.json")
        r = assemble(tmp_path / "flaky.tif", progress=False, **_options(items=str(items)))
        log = server.requests()
    finally:
        server.stop()
    assert r.tiles_failed == 0
    _assert_same(tmp_path / "flaky.tif", oracle)
    failed = [p for _, p, _, s in log if s == "503" and p.endswith(".TIF")]
    assert failed, "the server failed no COG request: the test proves nothing"


def _cli(args: list[str], tmp_path: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, **_FAST_HTTP, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    code = "from mosaic_assembler.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
        env=env, cwd=tmp_path,
    )  # fmt: skip


def _run_args(out: Path, items: Path) -> list[str]:
    return [str(out), "--zoom", str(ZOOM), "--tilesize", str(TILESIZE), "--items", str(items),
            "--assets", ",".join(ASSETS), "--pixel-selection", "median", "--chunk-tiles", "2",
            "-q"]  # fmt: skip


def test_an_asset_answering_500_gives_failed_tiles_with_the_reason(demo, oracle, tmp_path):
    server = RangeServer(demo.root, fail_mark="broken", fail_status=500)
    try:
        items = _items_at(demo, server.url, tmp_path / "items.json", broken="broken/red.tif")
        res = _cli(_run_args(tmp_path / "o.tif", items), tmp_path)
        partial = _cli([*_run_args(tmp_path / "p.tif", items), "--allow-partial", "--json"],
                       tmp_path)  # fmt: skip
        log = server.requests()
    finally:
        server.stop()
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    # GDAL's reason, after the asset that failed (GDAL's message does not name the URL)
    assert "tiles failed" in res.stderr and "HTTP response code: 500" in res.stderr, res.stderr
    first = json.loads(items.read_text())["features"][0]["id"]
    assert f"item {first!r} (" in res.stderr, res.stderr
    assert not (tmp_path / "o.tif").exists()
    assert partial.returncode == 0, partial.stderr
    summary = json.loads(partial.stdout)
    assert summary["tiles_failed"] > 0 and summary["tiles_done"] > 0
    # GDAL retried the 500s (GDAL_HTTP_MAX_RETRY=2) before the tile failed
    hits = [p for _, p, _, s in log if "broken" in p and s == "500"]
    assert len(hits) >= 3, hits
    # the tiles that did not need the broken asset have the local run's pixels
    with rasterio.open(tmp_path / "p.tif") as got, rasterio.open(oracle) as want:
        mask = got.dataset_mask() > 0
        assert mask.any()
        numpy.testing.assert_array_equal(got.read()[:, mask], want.read()[:, mask])


def test_a_closed_port_gives_failed_tiles_not_a_hang(demo, tmp_path):
    base = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    items = _items_at(demo, base, tmp_path / "items.json")
    res = _cli(_run_args(tmp_path / "o.tif", items), tmp_path)
    assert res.returncode in (1, 2), res.stderr
    assert "Traceback" not in res.stderr
    assert "127.0.0.1" in res.stderr and not (tmp_path / "o.tif").exists()
