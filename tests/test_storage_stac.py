"""A STAC API search with an s3:// run directory: the pinned search lives in the bucket.

Real servers only: the throwaway pgstac stack (tests/stac_fixtures.py; skipped without
PostgreSQL or the stack venv, except under CI=true) and the moto S3 server.
"""

from __future__ import annotations

import json

import numpy
import pytest
import rasterio
from stac_fixtures import ASSETS, make_stac_collection, start_stack

from mosaic_assembler import assemble
from mosaic_assembler.errors import SourceError

ZOOM = 11
BBOX = (5.80, 45.40, 6.10, 45.60)


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    return make_stac_collection(tmp_path_factory.mktemp("stac-collection"))


@pytest.fixture(scope="module")
def stack(coll):
    s = start_stack(coll.items_path, coll.collection)
    yield s
    s.stop()


def test_stac_search_pins_its_items_in_an_s3_run_dir(stack, coll, s3, tmp_path, monkeypatch):
    """The first run uploads the search's items (search.items.json, then search.json) to the
    s3:// run directory; a resumed run reads them back instead of searching and resumes every
    chunk; the output equals a local run directory's; cleanup removes them."""
    from mosaic_assembler.sources import stac_api

    kw = dict(stac=stack.stac_url, collections=[coll.collection], bbox=BBOX, zoom=ZOOM,
              tilesize=256, assets=ASSETS, sort_by="datetime", pixel_selection="median",
              progress=False)  # fmt: skip
    local = assemble(tmp_path / "local.tif", run_dir=tmp_path / "run", keep_run_dir=True, **kw)
    run = s3.url("stac/run")
    first = assemble(tmp_path / "a.tif", run_dir=run, keep_run_dir=True, **kw)
    keys = s3.keys("stac/run/")
    assert {"stac/run/search.json", "stac/run/search.items.json"} <= set(keys)
    pinned = json.loads(s3.get("stac/run/search.items.json"))["features"]
    local_items = json.loads((tmp_path / "run" / "search.items.json").read_text())["features"]
    assert pinned == local_items and pinned
    assert json.loads(s3.get("stac/run/search.json"))["key"]

    def no_search(*a, **k):
        raise SourceError("searched again")

    monkeypatch.setattr(stac_api, "open_stac_search", no_search)
    again = assemble(tmp_path / "b.tif", run_dir=run, **kw)
    assert again.chunks_resumed == again.chunks == first.chunks > 0
    for out in (first.path, again.path):
        with rasterio.open(out) as a, rasterio.open(local.path) as b:
            numpy.testing.assert_array_equal(a.read(), b.read())
            numpy.testing.assert_array_equal(a.dataset_mask(), b.dataset_mask())
    assert s3.keys("stac/run/") == []  # removed, pinned search included
    # with the pins gone, the run searches again (here: refused by the patched search)
    with pytest.raises(SourceError, match="searched again"):
        assemble(tmp_path / "c.tif", run_dir=run, **kw)
