"""Output grids x time semantics: --group-by solar_day and --provenance on other grids.

The two were built side by side (issue 12); here they meet: a solar-day median and its
count on a non-mercator TileMatrixSet against the brute-force reference of
tests/time_oracles.py (rio-tiler's `Reader(tms=)` per item, numpy fusing and median), and
the provenance COGs and STAC sidecar of a custom, cropped UTM grid on the output's grid.
"""

from __future__ import annotations

import json

import morecantile
import numpy
import pytest
import rasterio
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate
from time_oracles import BANDS, features, median, observations

from mosaic_assembler import assemble
from mosaic_assembler._tms import load_grid
from mosaic_assembler.demo_data import make_demo_sample
from mosaic_assembler.grid import AOI, plan_tiles

TMS_ID = "EuropeanETRS89_LAEAQuad"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"))


def _same_grid(out, companion):
    assert cog_validate(str(companion), quiet=True)[0]
    with rasterio.open(out) as o, rasterio.open(companion) as c:
        assert (c.crs, c.transform, c.shape) == (o.crs, o.transform, o.shape)
        assert (c.dataset_mask() == o.dataset_mask()).all()


def _zoom_with_a_few_tiles(bbox):
    grid = load_grid(TMS_ID)
    for z in range(4, 12):
        plan = plan_tiles(AOI.from_bbox(*bbox), z, 512, grid=grid)
        if len(plan.tiles) >= 4:
            return z, plan
    raise AssertionError("no zoom of the TMS gives a few tiles over the demo")


def test_solar_day_median_and_count_on_a_tms_equal_brute_force(demo, tmp_path):
    zoom, plan = _zoom_with_a_few_tiles(demo.bbox)
    out = tmp_path / "laea.tif"
    assemble(
        out, bbox=demo.bbox, zoom=zoom, tms=TMS_ID, items=demo.items_path, assets=BANDS,
        pixel_selection="median", group_by="solar_day", provenance="count", progress=False,
    )  # fmt: skip
    count_path = tmp_path / "laea.count.tif"
    _same_grid(out, count_path)
    tms = morecantile.tms.get(TMS_ID)
    feats = features(demo.items_path)
    checked = 0
    with rasterio.open(out) as o, rasterio.open(count_path) as c:
        assert o.crs == tms.rasterio_crs
        for tile in plan.tiles:
            w, s, e, n = transform_bounds(
                tms.rasterio_crs, "EPSG:4326", *tms.xy_bounds(*tile), densify_pts=21
            )
            hits = [f for f in feats
                    if f["bbox"][0] < e and f["bbox"][2] > w and f["bbox"][1] < n
                    and f["bbox"][3] > s]  # fmt: skip
            row, col = plan.offset(tile)
            win = Window(col, row, 512, 512)
            valid = o.dataset_mask(window=win) > 0
            obs = observations(hits, tile, "solar_day", tms=tms)
            if not obs:
                assert not valid.any()
                continue
            exp = median(obs)
            exp_valid = ~numpy.ma.getmaskarray(exp).all(axis=0)
            numpy.testing.assert_array_equal(valid, exp_valid)
            numpy.testing.assert_array_equal(
                o.read(window=win)[:, valid], numpy.ma.getdata(exp)[:, valid]
            )
            count = sum((~numpy.ma.getmaskarray(a).all(axis=0)).astype("uint16") for _, a in obs)
            numpy.testing.assert_array_equal(c.read(1, window=win)[valid], count[valid])
            checked += int(valid.any())
    assert checked >= 3


def test_provenance_and_sidecar_of_a_cropped_custom_grid(demo, tmp_path):
    """The companions of a custom grid follow its crop; the sidecar describes that grid."""
    out = tmp_path / "utm.tif"
    assemble(
        out, bbox=demo.bbox, crs="EPSG:32631", resolution=60.0, items=demo.items_path,
        assets=BANDS, pixel_selection="first", group_by="solar_day",
        provenance=("count", "date"), progress=False,
    )  # fmt: skip
    for kind in ("count", "date"):
        _same_grid(out, tmp_path / f"utm.{kind}.tif")
    with rasterio.open(out) as o:
        assert o.crs.to_epsg() == 32631 and o.res == (60.0, 60.0)
        # cropped to the AOI's bounds snapped outward, not whole tiles
        assert o.width % 512 or o.height % 512
        item = json.loads((tmp_path / "utm.json").read_text())
        props = item["properties"]
        assert props["proj:code"] == "EPSG:32631"
        assert props["proj:shape"] == [o.height, o.width]
        assert props["proj:transform"][:6] == list(o.transform)[:6]
