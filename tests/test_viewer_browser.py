"""The served viewer in headless Chromium: map pixels, layer switching, grants, a box download."""

from __future__ import annotations

import os
from pathlib import Path

import numpy
import pytest
from browser import browser_page, require_browser
from rasterio.io import MemoryFile
from serve_fixtures import (
    BLUE,
    GOOD,
    GREEN,
    RED,
    YELLOW,
    centre,
    expected_window,
    make_serve_inputs,
    run_serve,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    require_browser()
    pytest.importorskip("fastapi")
    d = tmp_path_factory.mktemp("viewer")
    inputs = make_serve_inputs(d)
    args = [*inputs.specs(), "--grants", str(inputs.grants)]
    with run_serve(args, d / "serve.log") as base:
        yield base, inputs


def open_viewer(page, url, layer):
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=20_000)
    wait_tiles(page, layer)


def wait_tiles(page, layer):
    page.wait_for_selector(f"body[data-tiles-loaded='{layer}']", timeout=20_000)
    page.wait_for_timeout(300)  # let the last tiles fade in (Leaflet's 200 ms opacity)


def colour_at(page, lon, lat):
    """The screenshot's RGB at a lon/lat on the map."""
    x, y = page.evaluate(
        """([lon, lat]) => {
            const p = viewer.map.latLngToContainerPoint([lat, lon]);
            const r = document.getElementById('map').getBoundingClientRect();
            return [Math.round(r.left + p.x), Math.round(r.top + p.y)];
        }""",
        [lon, lat],
    )
    with MemoryFile(page.screenshot()) as mem, mem.open() as ds:
        shot = ds.read()
    return tuple(int(v) for v in shot[:3, y, x]), shot


def near(got, want, tol=6):
    return all(abs(a - b) <= tol for a, b in zip(got, want, strict=True))


def test_viewer_shows_the_mosaic_and_switches_layers(server, tmp_path):
    base, inputs = server
    lon, lat = centre(inputs.rgb)
    with browser_page() as (page, log):
        open_viewer(page, base + "/", "rgb")
        options = page.eval_on_selector_all("#layer option", "os => os.map(o => o.value)")
        assert options == ["rgb", "green", "split"]  # no token: the granted layer is absent
        west, shot = colour_at(page, lon - 0.03, lat)
        east, _ = colour_at(page, lon + 0.03, lat)
        assert near(west, RED) and near(east, BLUE), (west, east)
        map_box = page.eval_on_selector("#map", "e => e.getBoundingClientRect().toJSON()")
        region = shot[:3, int(map_box["top"]) :, int(map_box["left"]) :]
        assert (region.reshape(3, -1).T != 255).any(axis=1).mean() > 0.05  # not blank
        # MOSAIC_SCREENSHOTS=docs/img refreshes the README's picture of the viewer
        shots = Path(os.environ.get("MOSAIC_SCREENSHOTS") or tmp_path)
        page.screenshot(path=str(shots / "viewer.png"))
        assert page.locator("body[data-histogram='rgb']").count() == 1

        page.select_option("#layer", "green")
        wait_tiles(page, "green")
        after, _ = colour_at(page, lon - 0.03, lat)
        assert near(after, GREEN), after

        page.select_option("#layer", "split")
        wait_tiles(page, "split")
        assert near(colour_at(page, lon - 0.06, lat)[0], RED)
        assert log.errors == [] and log.failed == []


def test_token_session_sees_the_granted_layer(server):
    base, inputs = server
    lon, lat = centre(inputs.secret)
    with browser_page() as (page, log):
        open_viewer(page, f"{base}/?token={GOOD}", "rgb")
        assert "token" not in page.url  # removed from the address bar
        options = page.eval_on_selector_all("#layer option", "os => os.map(o => o.value)")
        assert "secret" in options
        page.select_option("#layer", "secret")
        wait_tiles(page, "secret")
        got, _ = colour_at(page, lon, lat)
        assert near(got, YELLOW), got
        assert log.errors == [] and log.failed == []


def test_typed_box_downloads_the_cog_window(server, tmp_path):
    base, inputs = server
    lon, lat = centre(inputs.rgb)
    bbox = (lon - 0.012, lat - 0.008, lon + 0.01, lat + 0.009)
    with browser_page() as (page, log):
        open_viewer(page, base + "/", "rgb")
        box = page.eval_on_selector("#map", "e => e.getBoundingClientRect().toJSON()")
        x0, y0 = box["left"] + box["width"] * 0.4, box["top"] + box["height"] * 0.4
        page.keyboard.down("Shift")  # shift-drag draws a box into the W,S,E,N inputs
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x0 + 80, y0 + 60, steps=5)
        page.mouse.up()
        page.keyboard.up("Shift")
        drawn = [float(page.input_value(f"#box-{k}")) for k in "wsen"]
        assert drawn[0] < drawn[2] and drawn[1] < drawn[3]
        assert drawn[0] == pytest.approx(lon, abs=0.1) and drawn[1] == pytest.approx(lat, abs=0.1)
        px, py = page.evaluate(
            """([lon, lat]) => {
                const p = viewer.map.latLngToContainerPoint([lat, lon]);
                const r = document.getElementById('map').getBoundingClientRect();
                return [r.left + p.x, r.top + p.y];
            }""",
            [lon - 0.03, lat],
        )
        assert page.text_content("#point") == "click the map"  # the drag was no click
        page.mouse.click(px, py)  # a click: the pixel values under it (the red half)
        page.wait_for_function("document.getElementById('point').textContent.includes('b1')")
        assert "b1: 220" in page.text_content("#point")
        for key, value in zip("wsen", bbox, strict=True):
            page.fill(f"#box-{key}", repr(value))
        with page.expect_download() as info:
            page.click("#download-box")
        out = tmp_path / "box.tif"
        info.value.save_as(out)
        assert info.value.suggested_filename == "rgb_box.tif"
        assert log.errors == []
    import rasterio

    e_data, e_mask, e_tf, e_crs = expected_window(inputs.rgb, bbox)
    with rasterio.open(out) as ds:
        assert ds.crs == e_crs and ds.transform.almost_equals(e_tf)
        numpy.testing.assert_array_equal(ds.read(), e_data)
        numpy.testing.assert_array_equal(ds.dataset_mask(), e_mask)
