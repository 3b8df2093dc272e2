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


def test_datasets_are_shared_by_threads_but_never_in_use_by_two(scenes, monkeypatch):
    monkeypatch.setattr(_fastread, "_POOL", _fastread._Pool())
    href = str(scenes.paths[0])
    key = _fastread._source_key(href, None)
    inside = threading.Barrier(2)
    used: dict[str, int] = {}

    def work(name):
        with _fastread._POOL.checkout(href, None, key) as source:
            used[name] = id(source)
            inside.wait(timeout=30)  # both threads hold a source at the same time

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert used["a"] != used["b"]  # two reads at once: two handles
    assert _fastread._POOL.count == 2
    # one thread after the other: the second takes the handle the first gave back
    box = {}

    def take(name):
        with _fastread._POOL.checkout(href, None, key) as source:
            box[name] = id(source)

    for name in ("c", "d"):
        th = threading.Thread(target=take, args=(name,))
        th.start()
        th.join()
    assert box["c"] == box["d"] and box["c"] in used.values()
    assert _fastread._POOL.count == 2


def test_idle_datasets_are_bounded_and_evicted_ones_closed(scenes, monkeypatch):
    monkeypatch.setattr(_fastread, "MAX_OPEN_LOCAL", 2)  # the scenes are local files
    monkeypatch.setattr(_fastread, "_POOL", _fastread._Pool())
    opened = []
    for p in scenes.paths:
        with _fastread._POOL.checkout(str(p), None, _fastread._source_key(str(p), None)) as s:
            opened.append(s)
    assert len(opened) == 4 and _fastread._POOL.count == 2
    assert [s.reader.dataset.closed for s in opened] == [True, True, False, False]
    # closing from another thread than the one that opened leaves this thread's Env alone
    import rasterio
    from rasterio.env import local

    with rasterio.Env():
        env = local._env
        _fastread.release_datasets()
        assert local._env is env
    assert all(s.reader.dataset.closed for s in opened) and _fastread._POOL.count == 0


def test_a_failed_read_closes_its_dataset(scenes, monkeypatch):
    monkeypatch.setattr(_fastread, "_POOL", _fastread._Pool())
    href = str(scenes.paths[0])
    key = _fastread._source_key(href, None)
    with pytest.raises(ValueError):
        with _fastread._POOL.checkout(href, None, key) as source:
            raise ValueError("a read failed")
    assert source.reader.dataset.closed and _fastread._POOL.count == 0
    with pytest.raises(TileOutsideBounds):  # a tile outside is no failure: kept
        with _fastread._POOL.checkout(href, None, key) as source:
            raise TileOutsideBounds("outside")
    assert not source.reader.dataset.closed and _fastread._POOL.count == 1


def test_a_failed_asset_read_names_the_asset(scenes, tmp_path):
    """A tile whose asset cannot be read fails with the asset's path before GDAL's reason
    (for an HTTP error GDAL's own message does not say which file); a URL's query string
    is left out of the name."""
    from mosaic_assembler.errors import TileReadError
    from mosaic_assembler.selection import ReadOptions
    from mosaic_assembler.tilers.local import LocalTiler, _asset_label

    good = scenes.paths[0]
    data = good.read_bytes()
    broken = tmp_path / "broken.tif"
    broken.write_bytes(data[: len(data) // 3])  # the header and IFDs, not the tiles
    w, s, e, n = bounds_lonlat(good)
    tile = mercantile.tile((w + e) / 2, (s + n) / 2, 10)  # inside the scene's data
    tiler = LocalTiler(ReadOptions(pixel_selection="first", tilesize=256))
    try:
        with pytest.raises(TileReadError) as e:
            tiler.read_tile((tile.x, tile.y, tile.z), [str(broken), str(good)])
    finally:
        tiler.close()
    message = str(e.value)
    assert message.startswith(f"tile {tile.z}/{tile.x}/{tile.y}: {broken}: "), message
    assert _asset_label("https://h.example/a.tif?token=s3cr3t#x") == "https://h.example/a.tif"


def test_a_failed_tiles_recorded_reason_holds_no_credential(scenes, tmp_path):
    """GDAL's message names the path it could not open, query string included: the reason
    a chunk records (`iter_tiles`) has credential parameters redacted, the asset still named."""
    from mosaic_assembler.chunks import iter_tiles
    from mosaic_assembler.selection import ReadOptions
    from mosaic_assembler.tilers.local import LocalTiler

    w, s, e, n = bounds_lonlat(scenes.paths[0])
    t = mercantile.tile((w + e) / 2, (s + n) / 2, 10)
    missing = f"{tmp_path}/gone.tif?token=s3cr3tvalue"
    tiler = LocalTiler(ReadOptions(pixel_selection="first", tilesize=256))
    try:
        results = list(iter_tiles(tiler, [((t.x, t.y, t.z), [missing])], 1))
    finally:
        tiler.close()
    [(tile, data, reason)] = results
    assert data is None and reason is not None
    assert "s3cr3tvalue" not in reason, reason
    assert f"{tmp_path}/gone.tif" in reason, reason
