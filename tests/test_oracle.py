"""The assembled COG equals rio-tiler's mosaic_reader, tile by tile, for every method."""

from __future__ import annotations

import mercantile
import numpy
import pytest
import rasterio
from cogeo_mosaic.backends import MosaicBackend
from conftest import make_items
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate
from rio_tiler.errors import EmptyMosaicError
from rio_tiler.io import Reader, STACReader
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.mosaic.methods import PixelSelectionMethod

from mosaic_assembler import assemble
from mosaic_assembler.grid import AOI, plan_tiles

METHODS = [m.name for m in PixelSelectionMethod]


def _cog_reader(asset, x, y, z, **kw):
    with Reader(asset) as src:
        return src.tile(x, y, z, **kw)


def expected_tile(assets, tile, method, reader=_cog_reader, **kw):
    """The oracle: rio-tiler's mosaic_reader with a fresh method instance."""
    x, y, z = tile
    try:
        img, _ = mosaic_reader(
            assets, reader, x, y, z, pixel_selection=PixelSelectionMethod[method].value(), **kw
        )
    except EmptyMosaicError:
        return None
    arr = img.array
    if arr.ndim == 2:
        arr = arr[None]
    return arr


def compare_output(path, plan, expected_for):
    """Every planned tile of the COG equals the oracle: mask and the data under the mask."""
    checked = 0
    with rasterio.open(path) as src:
        for tile in plan.tiles:
            row, col = plan.offset(tile)
            win = Window(col, row, plan.tilesize, plan.tilesize)
            data = src.read(window=win)
            mask = src.dataset_mask(window=win) > 0
            exp = expected_for(tile)
            if exp is None:
                assert not mask.any(), f"tile {tile} should be empty"
                continue
            exp_valid = ~numpy.ma.getmaskarray(exp).all(axis=0)
            numpy.testing.assert_array_equal(mask, exp_valid, err_msg=f"mask of {tile}")
            assert data.dtype == exp.dtype
            numpy.testing.assert_array_equal(
                data[:, mask], numpy.ma.getdata(exp)[:, mask], err_msg=f"data of {tile}"
            )
            checked += int(mask.any())
    return checked


@pytest.mark.parametrize("method", METHODS)
def test_mosaicjson_matches_mosaic_reader(scenes, tmp_path, method):
    out = tmp_path / f"{method}.tif"
    result = assemble(
        out,
        bbox=scenes.bbox,
        zoom=scenes.zoom,
        mosaicjson=scenes.mosaicjson,
        pixel_selection=method,
        progress=False,
    )
    assert result.path == out and out.exists()
    valid, errors, _ = cog_validate(str(out), quiet=True)
    assert valid and not errors
    plan = plan_tiles(AOI.from_bbox(*scenes.bbox), scenes.zoom, 512)
    backend = MosaicBackend(str(scenes.mosaicjson))

    def oracle(tile):
        assets = backend.assets_for_tile(tile[0], tile[1], tile[2])
        if not assets:
            return None
        return expected_tile(assets, tile, method, tilesize=512)

    checked = compare_output(out, plan, oracle)
    assert checked >= 4  # the comparison actually compared data
    assert result.tiles_done == checked


@pytest.mark.parametrize("method", ["first", "median", "lastbandlow", "count"])
def test_stac_items_match_mosaic_reader(scenes, tmp_path, method):
    keys = ("red", "green", "blue")
    items = make_items(list(scenes.paths), scenes.dir / "items.json", keys)
    out = tmp_path / "items.tif"
    assemble(
        out,
        bbox=scenes.bbox,
        zoom=scenes.zoom,
        items=items,
        assets=",".join(keys),
        pixel_selection=method,
        progress=False,
    )
    import json

    feats = json.loads(items.read_text())["features"]
    for f in feats:  # the oracle reads the same items with absolute hrefs
        for a in f["assets"].values():
            a["href"] = str((items.parent / a["href"]).resolve())

    def reader(item, x, y, z, **kw):
        with STACReader(None, item=item, include_assets=set(keys), include_asset_types=None) as src:
            return src.tile(x, y, z, assets=list(keys), **kw)

    plan = plan_tiles(AOI.from_bbox(*scenes.bbox), scenes.zoom, 512)

    def oracle(tile):
        b = mercantile.bounds(tile[0], tile[1], tile[2])
        hits = [
            f
            for f in feats
            if f["bbox"][0] < b.east
            and f["bbox"][2] > b.west
            and f["bbox"][1] < b.north
            and f["bbox"][3] > b.south
        ]
        if not hits:
            return None
        return expected_tile(hits, tile, method, reader=reader, tilesize=512)

    assert compare_output(out, plan, oracle) >= 4


def test_bidx_and_expression_match(scenes, tmp_path):
    plan = plan_tiles(AOI.from_bbox(*scenes.bbox), scenes.zoom, 512)
    backend = MosaicBackend(str(scenes.mosaicjson))
    for name, kw in {"bidx": {"bidx": (3, 1)}, "expr": {"expression": "(b1-b2)/(b1+b2)"}}.items():
        out = tmp_path / f"{name}.tif"
        assemble(
            out,
            bbox=scenes.bbox,
            zoom=scenes.zoom,
            mosaicjson=scenes.mosaicjson,
            pixel_selection="median",
            progress=False,
            **kw,
        )
        rkw = {"indexes": kw["bidx"]} if "bidx" in kw else kw

        def oracle(tile, rkw=rkw, name=name):
            assets = backend.assets_for_tile(*tile)
            exp = expected_tile(assets, tile, "median", tilesize=512, **rkw) if assets else None
            # computed expressions are stored as float32 (rio-tiler computes them in float64)
            return exp.astype("float32") if exp is not None and name == "expr" else exp

        with rasterio.open(out) as src:
            assert src.count == (2 if name == "bidx" else 1)
            assert src.dtypes[0] == ("uint16" if name == "bidx" else "float32")
        assert compare_output(out, plan, oracle) >= 4
