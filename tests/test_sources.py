"""Sources: mosaicJSON lookups equal cogeo-mosaic's at any quadkey zoom; STAC items."""

from __future__ import annotations

import json

import mercantile
import pytest
from cogeo_mosaic.backends import MosaicBackend
from conftest import make_items, make_mosaicjson

from mosaic_assembler.errors import SourceError
from mosaic_assembler.sources import open_mosaicjson, open_source, open_stac_items


@pytest.mark.parametrize("qk_zoom", [6, 8, 10])
def test_mosaicjson_assets_match_cogeo_mosaic(scenes, tmp_path, qk_zoom):
    mj = make_mosaicjson(list(scenes.paths), tmp_path / "m.json", qk_zoom, 11)
    ours = open_mosaicjson(mj)
    backend = MosaicBackend(str(mj))
    assert ours.quadkey_zoom == qk_zoom
    checked = 0
    for zoom in (qk_zoom - 2, qk_zoom, qk_zoom + 2):  # parent, same and child lookups
        for t in mercantile.tiles(*scenes.bbox, zooms=zoom):
            expected = backend.assets_for_tile(t.x, t.y, t.z)
            assert ours.assets_for_tile(t.x, t.y, t.z) == expected
            checked += bool(expected)
    assert checked > 3


def test_mosaicjson_relative_paths_and_prefix(scenes, tmp_path):
    doc = json.loads(scenes.mosaicjson.read_text())
    doc["tiles"] = {q: [p.rsplit("/", 1)[1] for p in a] for q, a in doc["tiles"].items()}
    (scenes.dir / "rel.json").write_text(json.dumps(doc))
    src = open_mosaicjson(scenes.dir / "rel.json")
    assert set(src.all_assets()) == {str(p) for p in scenes.paths}


def test_stac_items_order_and_footprints(scenes):
    items = make_items(list(scenes.paths), scenes.dir / "items.json", ("red", "green", "blue"))
    src = open_stac_items(items, ("red", "blue"))
    assert [i.id for i in src.items] == [p.stem for p in scenes.paths]
    t = mercantile.tile(5.95, 45.5, 9)
    hits = src.assets_for_tile(t.x, t.y, t.z)
    assert [h.id for h in hits] == sorted(
        (h.id for h in hits), key=[p.stem for p in scenes.paths].index
    )
    assert all(h.assets == ("red", "blue") for h in hits)
    href = hits[0].item["assets"]["red"]["href"]
    assert href.startswith("/") and href.endswith("_red.tif")
    far = mercantile.tile(100.0, 10.0, 9)
    assert src.assets_for_tile(far.x, far.y, far.z) == []


def test_items_missing_some_assets_are_skipped_and_reported(scenes, tmp_path, caplog):
    items = make_items(list(scenes.paths), scenes.dir / "items.json", ("red", "green", "blue"))
    doc = json.loads(items.read_text())
    del doc["features"][1]["assets"]["blue"]
    p = scenes.dir / "items_missing.json"
    p.write_text(json.dumps(doc))
    src = open_stac_items(p, ("red", "blue"))
    assert src.skipped == (doc["features"][1]["id"],)
    assert len(src.items) == len(scenes.paths) - 1
    assert "skipped" in caplog.text


def test_source_choice_errors(scenes):
    with pytest.raises(SourceError, match="exactly one source"):
        open_source()
    with pytest.raises(SourceError, match="exactly one source"):
        open_source(mosaicjson=scenes.mosaicjson, items=scenes.mosaicjson)
    with pytest.raises(SourceError, match="--assets applies to STAC items"):
        open_source(mosaicjson=scenes.mosaicjson, assets=("red",))
