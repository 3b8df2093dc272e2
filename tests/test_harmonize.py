"""--harmonize s2: Sentinel-2's +1000 DN offset removed from the right items, before selection.

Reference: each item read with rio-tiler's `Reader`, the offset subtracted with numpy where
the item's processing baseline says so, then numpy's selection.
"""

from __future__ import annotations

import json
import logging

import numpy
import pytest
from conftest import make_items
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from test_oracle import compare_output

from mosaic_assembler import assemble
from mosaic_assembler.grid import AOI, plan_tiles
from mosaic_assembler.harmonize import has_offset, offset_bands, remove_offset
from mosaic_assembler.sources import open_stac_items

KEYS = ("red", "nir", "scl")
PROPS = [
    {"s2:processing_baseline": "03.01"},  # before 04.00: no offset
    {"s2:processing_baseline": "04.00"},  # offset: removed
    {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True},  # done already
]


@pytest.fixture(scope="module")
def s2(scenes, tmp_path_factory):
    d = tmp_path_factory.mktemp("s2")
    path = make_items(list(scenes.paths[:3]), d / "items.json", KEYS)
    doc = json.loads(path.read_text())
    for f, props in zip(doc["features"], PROPS, strict=True):
        f["properties"].update(props)
        f["assets"]["scl"]["eo:bands"] = [{"name": "SCL"}]
    path.write_text(json.dumps(doc))
    return scenes, path, doc["features"]


def _reference(s2, pick, harmonize, expression=None):
    scenes, path, feats = s2
    by_id = {f["id"]: f for f in feats}
    src = open_stac_items(path, KEYS)

    def oracle(tile):
        stack = []
        for ia in src.assets_for_tile(*tile):
            f = by_id[ia.id]
            try:
                arrays = []
                for k in KEYS:
                    with Reader(str((path.parent / f["assets"][k]["href"]).resolve())) as r:
                        arrays.append(r.tile(*tile, tilesize=512).array)
            except TileOutsideBounds:
                continue
            data = numpy.concatenate([a.data for a in arrays]).astype("int64")
            mask = numpy.concatenate([numpy.ma.getmaskarray(a) for a in arrays])
            shifted = f["properties"]["s2:processing_baseline"] == "04.00"
            if harmonize and shifted:
                data[:2] = numpy.maximum(data[:2], 1000) - 1000  # red, nir; never scl
            a = numpy.ma.MaskedArray(data.astype("uint16"), mask=mask)
            if expression:
                r, n = a[0].astype("float64"), a[1].astype("float64")
                a = ((n - r) / (n + r))[None]
            stack.append(a)
        if not stack:
            return None
        s = numpy.ma.stack(stack)
        return pick(s)

    return oracle


def _run(s2, out, **kw):
    scenes, path, _ = s2
    args = dict(bbox=scenes.bbox, zoom=scenes.zoom, items=path, assets=KEYS, progress=False)
    return assemble(out, **{**args, **kw})


def _plan(s2):
    scenes = s2[0]
    return plan_tiles(AOI.from_bbox(*scenes.bbox), scenes.zoom, 512)


def _lowest(s):
    return s.min(axis=0)


def test_offset_removed_only_from_baseline_04_items(s2, tmp_path):
    out = tmp_path / "low.tif"
    _run(s2, out, pixel_selection="lowest", harmonize="s2")
    assert compare_output(out, _plan(s2), _reference(s2, _lowest, harmonize=True)) >= 2
    plain = tmp_path / "plain.tif"
    _run(s2, plain, pixel_selection="lowest")
    assert compare_output(plain, _plan(s2), _reference(s2, _lowest, harmonize=False)) >= 2
    import rasterio

    with rasterio.open(out) as a, rasterio.open(plain) as b:
        diff = b.read().astype(int) - a.read().astype(int)
        valid = a.dataset_mask() > 0
    assert (diff[2][valid] == 0).all()  # scl untouched
    assert (diff[:2][:, valid] > 0).any()  # red/nir: lower where the 04.00 item is lowest
    assert set(numpy.unique(diff[:2][:, valid])) <= set(range(0, 1001))


def test_offset_removed_before_an_expression(s2, tmp_path):
    out = tmp_path / "ndvi.tif"
    _run(s2, out, pixel_selection="first", harmonize="s2", expression="(nir-red)/(nir+red)",
         assets=())  # fmt: skip

    def first(s):
        filled = numpy.ma.getmaskarray(s)
        idx = numpy.argmin(filled, axis=0)
        return numpy.ma.MaskedArray(
            numpy.take_along_axis(s.data, idx[None], 0)[0],
            mask=numpy.take_along_axis(filled, idx[None], 0)[0],
        ).astype("float32")

    assert compare_output(out, _plan(s2), _reference(s2, first, True, expression=True)) >= 2


def test_mixed_baselines_warn_without_harmonize(s2, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mosaic_assembler"):
        _run(s2, tmp_path / "a.tif", pixel_selection="first")
    warned = [r for r in caplog.records if "processing baseline" in r.getMessage()]
    assert len(warned) == 1 and "harmonize" in warned[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mosaic_assembler"):
        _run(s2, tmp_path / "b.tif", pixel_selection="first", harmonize="s2")
    assert not [r for r in caplog.records if "processing baseline" in r.getMessage()]


def test_offset_rules():
    item = {"properties": {"s2:processing_baseline": "04.00"},
            "assets": {"B04": {}, "SCL": {}, "aot": {}, "visual": {}, "nir08": {}}}  # fmt: skip
    assert offset_bands(item, ("B04", "SCL", "aot", "visual", "nir08")) == (
        True, False, False, False, True,
    )  # fmt: skip
    assert not has_offset({"properties": {"s2:processing_baseline": "02.14"}})
    assert not has_offset({"properties": {}})
    assert has_offset({"properties": {"s2:processing_baseline": "04.10"}})
    assert not has_offset(
        {"properties": {"s2:processing_baseline": "04.10", "earthsearch:boa_offset_applied": True}}
    )
    a = numpy.array([[[0, 500, 1000, 1500, 65535]]] * 2, "uint16")
    out = remove_offset(a, (True, False))
    assert out.dtype == a.dtype and out[0].tolist() == [[0, 0, 0, 500, 64535]]
    assert (out[1] == a[1]).all() and a[0, 0, 3] == 1500  # input untouched
