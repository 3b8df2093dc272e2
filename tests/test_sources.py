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
    with pytest.raises(SourceError, match="`assets` applies to STAC items"):
        open_source(mosaicjson=scenes.mosaicjson, assets=("red",))


def _handmade_mosaicjson(tmp_path, tiles: dict[str, list[str]], qk_zoom: int):
    from cogeo_mosaic.mosaic import MosaicJSON

    doc = MosaicJSON(
        mosaicjson="0.0.3", minzoom=qk_zoom, maxzoom=qk_zoom, quadkey_zoom=qk_zoom,
        bounds=(-180, -85, 180, 85), center=(0, 0, qk_zoom), tiles=tiles,
    )  # fmt: skip
    path = tmp_path / "hand.json"
    path.write_text(doc.model_dump_json(exclude_none=True))
    return path


def test_mosaicjson_child_order_is_cogeo_mosaics(tmp_path):
    """Children two levels down: cogeo-mosaic's order is the quadkeys' lexicographic one.

    Row-major order at the child zoom (what `children(tile, zoom=z+2)` gives) puts 010 before
    002; cogeo-mosaic (and so TiTiler) puts 002 first.
    """
    parent = "0213"
    tiles = {parent + s: [f"/data/{s}.tif", "/data/shared.tif"] for s in ("32", "10", "02", "33")}
    path = _handmade_mosaicjson(tmp_path, tiles, len(parent) + 2)
    ours = open_mosaicjson(path)
    backend = MosaicBackend(str(path))
    t = mercantile.quadkey_to_tile(parent)
    expected = backend.assets_for_tile(t.x, t.y, t.z)
    assert expected[:3] == ["/data/02.tif", "/data/shared.tif", "/data/10.tif"]
    assert ours.assets_for_tile(t.x, t.y, t.z) == expected
    for qk in ("0", "02", "021", parent, parent + "1", parent + "10", parent + "102"):
        t = mercantile.quadkey_to_tile(qk)
        assert ours.assets_for_tile(t.x, t.y, t.z) == backend.assets_for_tile(t.x, t.y, t.z), qk
    t = mercantile.quadkey_to_tile("1")
    assert ours.assets_for_tile(t.x, t.y, t.z) == []


def test_mosaicjson_deep_quadkeys_are_looked_up_by_prefix(tmp_path):
    """A 30-digit quadkey: a zoom-8 tile is not split into 4^22 children (MemoryError)."""
    deep = mercantile.quadkey(mercantile.tile(6.0, 45.5, 30))
    path = _handmade_mosaicjson(tmp_path, {deep: ["/data/a.tif"]}, 30)
    src = open_mosaicjson(path)
    t = mercantile.tile(6.0, 45.5, 8)
    assert src.assets_for_tile(t.x, t.y, t.z) == ["/data/a.tif"]
    assert src.assets_for_tile(t.x + 1, t.y, t.z) == []
    assert src.assets_for_tile(0, 0, 0) == ["/data/a.tif"]


def test_source_documents_are_refused_above_the_limit(tmp_path):
    from mosaic_assembler.sources._files import MAX_DOCUMENT_BYTES, read_json

    assert MAX_DOCUMENT_BYTES == 256 * 2**20
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"type": "FeatureCollection", "features": [0] * 20}))
    with pytest.raises(SourceError, match="larger than 16 bytes"):
        read_json(big, "STAC items file", limit=16)
    assert read_json(big, "STAC items file")["type"] == "FeatureCollection"
    with pytest.raises(SourceError, match="binary data, not JSON"):
        read_json("/dev/zero", "STAC items file")
    with pytest.raises(SourceError, match="is a directory"):
        read_json(tmp_path, "mosaicJSON")


def test_a_fifo_is_read_up_to_the_limit(tmp_path):
    import os
    import threading

    from mosaic_assembler.sources._files import read_json

    fifo = tmp_path / "fifo"

    def feed(text: str) -> threading.Thread:
        def write() -> None:
            try:
                with open(fifo, "w") as f:
                    f.write(text)
            except BrokenPipeError:  # the reader stopped at its limit
                pass

        t = threading.Thread(target=write)
        t.start()
        return t

    os.mkfifo(fifo)
    t = feed('{"a": 1}')
    assert read_json(fifo, "AOI") == {"a": 1}
    t.join()
    t = feed("[" + "1," * 100_000 + "1]")
    with pytest.raises(SourceError, match="larger than 1000 bytes"):
        read_json(fifo, "AOI", limit=1000)
    t.join()


def test_written_documents_hold_no_signed_hrefs(tmp_path):
    """A signed href (a credential in its query) never reaches a document the tool writes."""
    from mosaic_assembler.sources.stac_api import save_items, save_mosaicjson
    from mosaic_assembler.sources.stac_items import items_from_features

    secret = "s3cr3t-signature-value"
    feature = {
        "type": "Feature", "stac_version": "1.0.0", "id": "a",
        "geometry": {"type": "Polygon",
                     "coordinates": [[[5, 45], [6, 45], [6, 46], [5, 46], [5, 45]]]},
        "bbox": [5, 45, 6, 46], "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "assets": {"red": {"href": f"https://example.test/a/red.tif?se=2030&sig={secret}"}},
    }  # fmt: skip
    source = items_from_features([feature], ["red"], "test", "test", lambda h, _: h)
    save_items(source, tmp_path / "pinned.json")
    save_mosaicjson(source, tmp_path / "m.json", minzoom=5, maxzoom=8)
    save_mosaicjson(source, tmp_path / "v.json", minzoom=5, maxzoom=8, asset="red")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 4
    for p in written:
        text = p.read_text()
        assert secret not in text, p
    pinned = json.loads((tmp_path / "pinned.json").read_text())
    href = pinned["features"][0]["assets"]["red"]["href"]
    assert href.startswith("https://example.test/a/red.tif?") and "se=2030" in href
