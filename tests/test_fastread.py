"""The kept-open, one-warp tile reads equal rio-tiler's Reader/STACReader reads exactly."""

from __future__ import annotations

import json
import threading
import warnings

import mercantile
import numpy
import pytest
from conftest import bounds_lonlat, make_items, make_scene
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader, STACReader

from mosaic_assembler.tilers import _fastread
from mosaic_assembler.tilers._fastread import reader_tile, stac_tile

warnings.filterwarnings("ignore", module="rio_tiler")


def _same(ref, got) -> None:
    assert got.array.shape == ref.array.shape
    assert got.array.dtype == ref.array.dtype
    numpy.testing.assert_array_equal(numpy.ma.getdata(got.array), numpy.ma.getdata(ref.array))
    numpy.testing.assert_array_equal(
        numpy.ma.getmaskarray(got.array), numpy.ma.getmaskarray(ref.array)
    )


def _read(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except TileOutsideBounds:
        return None


def _tiles(path, zooms):
    w, s, e, n = bounds_lonlat(path)
    pad = 0.05
    for z in zooms:
        yield from mercantile.tiles(w - pad, s - pad, e + pad, n + pad, z)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"indexes": 2},
        {"indexes": (3, 1)},
        {"resampling_method": "bilinear"},
        {"expression": "(b1-b2)/(b1+b2);b3"},
    ],
    ids=["all", "bidx2", "bidx31", "bilinear", "expression"],
)
def test_reader_tile_equals_rio_tiler(scenes, kwargs):
    checked = 0
    for path in scenes.paths:
        for tilesize in (256, 512):
            for t in _tiles(path, (7, 9, 11)):
                with Reader(str(path)) as r:
                    ref = _read(r.tile, *t, tilesize=tilesize, **kwargs)
                got = _read(reader_tile, str(path), *t, tilesize=tilesize, **kwargs)
                assert (ref is None) == (got is None), (path.name, t)
                if ref is not None:
                    _same(ref, got)
                    checked += 1
    assert checked > 50


def test_fast_path_taken_where_rio_tiler_warps_with_nodata(scenes):
    fast = {p.name: _fastread._open(str(p)).fast for p in scenes.paths}
    # UTM and WGS84 scenes with a nodata value are warped here; the EPSG:3857 scene without
    # nodata goes through rio-tiler
    assert fast == {
        "a_32631.tif": True,
        "b_32632.tif": True,
        "c_4326.tif": True,
        "d_3857.tif": False,
    }


def test_float_nan_nodata(tmp_path):
    path = make_scene(
        tmp_path / "f.tif",
        "EPSG:32631",
        (5.75, 45.5),
        300,
        100.0,
        seed=7,
        dtype="float32",
        nodata=float("nan"),
    )
    assert _fastread._open(str(path)).fast
    checked = 0
    for t in _tiles(path, (9, 11)):
        with Reader(str(path)) as r:
            ref = _read(r.tile, *t, tilesize=256)
        got = _read(reader_tile, str(path), *t, tilesize=256)
        assert (ref is None) == (got is None)
        if ref is not None:
            _same(ref, got)
            checked += 1
    assert checked > 5


def test_file_rewritten_in_place_is_reopened(tmp_path):
    path = tmp_path / "s.tif"
    make_scene(path, "EPSG:32631", (5.75, 45.5), 300, 100.0, seed=1)
    t = mercantile.tile(5.75, 45.5, 10)
    first = reader_tile(str(path), *t, tilesize=256)
    make_scene(path, "EPSG:32631", (5.75, 45.5), 300, 100.0, seed=2)
    second = reader_tile(str(path), *t, tilesize=256)
    with Reader(str(path)) as r:
        _same(r.tile(*t, tilesize=256), second)
    assert not numpy.array_equal(first.array.data, second.array.data)


def test_tile_outside_dataset(scenes):
    with pytest.raises(TileOutsideBounds):
        reader_tile(str(scenes.paths[0]), 0, 0, 9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"expression": "(b1-b2)/(b1+b2);b3"},
        {"resampling_method": "cubic"},
    ],
    ids=["assets", "expression", "cubic"],
)
def test_stac_tile_equals_stac_reader(scenes, tmp_path, kwargs):
    items = json.loads(
        make_items(
            list(scenes.paths), tmp_path / "items.json", ("red", "green", "blue")
        ).read_text()
    )["features"]
    checked = 0
    for item in items:
        for a in item["assets"].values():
            a["href"] = str((tmp_path / a["href"]).resolve())
        assets = ("blue", "red", "green")
        for t in _tiles(scenes.paths[0], (8, 10)):
            with STACReader(
                None, item=item, include_assets=set(assets), include_asset_types=None
            ) as s:
                ref = _read(s.tile, *t, assets=list(assets), tilesize=256, **kwargs)
            got = _read(
                stac_tile,
                lambda it=item: it,
                (item["id"], assets),
                assets,
                *t,
                tilesize=256,
                **kwargs,
            )
            assert (ref is None) == (got is None), (item["id"], t)
            if ref is not None:
                _same(ref, got)
                checked += 1
    assert checked > 20
    # at zoom 10 the 120-m scenes are coarser than the tile: one stacked warp read them
    stacks = _fastread._cache("stacks").values()
    assert any(s.dataset is not None for s in stacks)
    assert any(s.dataset is None for s in stacks)  # the EPSG:3857 scene is not warped here


def test_datasets_are_per_thread_and_bounded(scenes, monkeypatch):
    monkeypatch.setattr(_fastread, "MAX_OPEN", 2)
    seen = {}

    def work(name):
        for p in scenes.paths:
            _fastread._open(str(p))
        seen[name] = dict(_fastread._cache("sources"))

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(seen["a"]) == len(seen["b"]) == 2
    assert not {id(s) for s in seen["a"].values()} & {id(s) for s in seen["b"].values()}
    assert all(not s.reader.dataset.closed for s in seen["a"].values())


def test_evicted_datasets_are_closed(scenes, monkeypatch):
    monkeypatch.setattr(_fastread, "MAX_OPEN", 2)
    monkeypatch.setattr(_fastread, "_local", threading.local())
    opened = [_fastread._open(str(p)) for p in scenes.paths]
    assert [s.reader.dataset.closed for s in opened] == [True, True, False, False]
