"""The previewer in headless Chromium: it loads offline and shows the COG's colours."""

from __future__ import annotations

import io
import threading

import numpy
import pytest
from browser import browser_page
from PIL import Image
from test_tiles import RED, ZOOMS, gradient_lonlat, red_lonlat, rgb_cog  # noqa: F401

from mosaic_assembler.render import render_tiles
from mosaic_assembler.render.rangeserver import make_server

BACKGROUND = (34, 34, 34)  # the page's #222


def _look(url: str) -> tuple[numpy.ndarray, dict[str, tuple[float, float]], list, list]:
    """Open the page, wait for its tiles, screenshot it; the pixel of each known point."""
    with browser_page() as (page, log):
        page.goto(url)
        page.wait_for_function("window.previewLoaded === true", timeout=20_000)
        page.wait_for_timeout(300)  # the fade-in of the last tiles
        shot = numpy.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
        points = {}
        for name, (lon, lat) in (("red", red_lonlat()), ("gradient", gradient_lonlat())):
            p = page.evaluate(
                "([lat, lon]) => { const p = previewMap.latLngToContainerPoint([lat, lon]);"
                " return [p.x, p.y]; }",
                [lat, lon],
            )
            points[name] = (p[0], p[1])
        bounds_zoom = page.evaluate("previewMap.getZoom()")
        assert ZOOMS[0] <= bounds_zoom <= ZOOMS[1] + 2
        return shot, points, log.errors, log.failed


def _pixel(shot: numpy.ndarray, xy: tuple[float, float]) -> numpy.ndarray:
    x, y = (int(round(v)) for v in xy)
    return shot[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3).mean(axis=0)


def _check(shot, points) -> None:
    red = _pixel(shot, points["red"])
    assert numpy.abs(red - RED).max() <= 3, red
    gradient = _pixel(shot, points["gradient"])
    assert numpy.abs(gradient - BACKGROUND).max() > 20, gradient
    data = numpy.abs(shot.astype(int) - BACKGROUND).max(axis=2) > 10
    assert data.mean() > 0.05  # a good part of the map shows the COG


def test_folder_previewer_from_file_url(rgb_cog, tmp_path):  # noqa: F811
    out = tmp_path / "pyr"
    r = render_tiles(rgb_cog, out, zooms=ZOOMS)
    shot, points, errors, failed = _look(r.previewer.as_uri())
    assert errors == [] and failed == []
    _check(shot, points)


@pytest.fixture
def static_server(tmp_path):
    server = make_server(str(tmp_path), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pmtiles_previewer_through_a_range_server(rgb_cog, tmp_path, static_server):  # noqa: F811
    r = render_tiles(rgb_cog, tmp_path / "pyr.pmtiles", zooms=ZOOMS)
    shot, points, errors, failed = _look(f"{static_server}/{r.previewer.name}")
    assert errors == [] and failed == []
    _check(shot, points)
