"""_fastread's per-process facts: tiles that miss a file are refused before any thread opens it."""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict

import mercantile
import pytest
from conftest import bounds_lonlat
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from mosaic_assembler.tilers import _fastread
from mosaic_assembler.tilers._fastread import reader_tile

warnings.filterwarnings("ignore", module="rio_tiler")


def _in_new_thread(fn):
    """fn() in a fresh thread; its result, or the exception it raised."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except Exception as e:  # returned to the test, which checks it
            out["error"] = e

    th = threading.Thread(target=run)
    th.start()
    th.join()
    return out


def test_tile_exists_from_facts_equals_rio_tilers(scenes, monkeypatch):
    monkeypatch.setattr(_fastread, "_FACTS", OrderedDict())
    monkeypatch.setattr(_fastread, "_POOL", _fastread._Pool())  # no file open yet
    path = str(scenes.paths[0])  # EPSG:32631, a fast source
    w, s, e, n = bounds_lonlat(path)
    inside = mercantile.tile((w + e) / 2, (s + n) / 2, 9)
    first = _in_new_thread(lambda: reader_tile(path, inside.x, inside.y, 9, tilesize=256))
    assert "value" in first
    assert len(_fastread._FACTS) == 1

    pad = 0.3
    tiles = [t for z in (7, 9, 10) for t in mercantile.tiles(w - pad, s - pad, e + pad, n + pad, z)]

    def refusals():
        got = {}
        for t in tiles:
            try:
                reader_tile(path, t.x, t.y, t.z, tilesize=256)
                got[t] = True
            except TileOutsideBounds:
                got[t] = False
        return got

    ours = _in_new_thread(refusals)["value"]
    with Reader(path) as ref:
        expected = {t: ref.tile_exists(t.x, t.y, t.z) for t in tiles}
    assert ours == expected
    assert any(expected.values()) and not all(expected.values())


def test_a_missed_file_is_not_opened(scenes, monkeypatch):
    monkeypatch.setattr(_fastread, "_FACTS", OrderedDict())
    monkeypatch.setattr(_fastread, "_POOL", _fastread._Pool())  # no file open yet
    path = str(scenes.paths[0])
    w, s, e, n = bounds_lonlat(path)
    inside = mercantile.tile((w + e) / 2, (s + n) / 2, 9)
    far = mercantile.tile(20.0, 10.0, 9)  # nowhere near the scene
    assert "value" in _in_new_thread(lambda: reader_tile(path, inside.x, inside.y, 9))

    def miss():
        with pytest.raises(TileOutsideBounds):
            reader_tile(path, far.x, far.y, 9)
        return dict(_fastread._POOL.idle)

    monkeypatch.setattr(_fastread, "_POOL", _fastread._Pool())
    assert _in_new_thread(miss)["value"] == {}  # refused from the facts, never opened here
    # without facts (a file not seen yet), the thread opens it and rio-tiler's test refuses
    monkeypatch.setattr(_fastread, "_FACTS", OrderedDict())
    opened = _in_new_thread(miss)["value"]
    assert len(opened) == 1
