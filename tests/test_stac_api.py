"""STAC API search and titiler-pgstac against a real throwaway stack (no mocks).

The session fixture starts PostgreSQL/PostGIS + pgstac + stac-fastapi-pgstac + titiler-pgstac
(scripts/stac_stack.py) over a generated collection (tests/stac_fixtures.py). Without
PostgreSQL or the stack venv the module is skipped, except under CI=true where it fails.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

import mercantile
import numpy
import pytest
from servers import free_port
from shapely.geometry import box, mapping, shape
from stac_fixtures import ASSETS, ITEM_SPECS, make_stac_collection, start_stack

from mosaic_assembler.errors import ConfigError, SourceError, TilerRequestError
from mosaic_assembler.sources import open_mosaicjson, open_stac_items
from mosaic_assembler.sources.stac_api import (
    StacSearch,
    item_season_ok,
    open_stac_search,
    parse_query,
    parse_sort_by,
    save_items,
    save_mosaicjson,
)
from mosaic_assembler.tilers import LocalTiler, ReadOptions
from mosaic_assembler.tilers.http import HttpTiler
from mosaic_assembler.tilers.pgstac import (
    pgstac_http_options,
    pgstac_search_body,
    register_search,
)

NORTH_USABLE = [
    "s1-winter",
    "s2-spring",
    "s3-summer",
    "s4-autumn",
    "s5-spring",
    "s6-summer",
    "s7-winter",
]
BY_DATE = sorted(NORTH_USABLE, key=lambda i: ITEM_SPECS[i][5])
ZOOM = 10


@pytest.fixture(scope="session")
def coll(tmp_path_factory):
    return make_stac_collection(tmp_path_factory.mktemp("stac-collection"))


@pytest.fixture(scope="session")
def stack(coll):
    t0 = time.monotonic()
    s = start_stack(coll.items_path, coll.collection)
    logging.getLogger(__name__).info("stack up in %.1f s: %s", time.monotonic() - t0, s.timings)
    yield s
    s.stop()


SEARCH_FIELDS = {f.name for f in dataclasses.fields(StacSearch)}


def search(stack, coll, url=None, **kw):
    """open_stac_search with the StacSearch fields and the other arguments mixed in `kw`."""
    kw.setdefault("collections", [coll.collection])
    kw.setdefault("assets", ASSETS)
    fields = {k: kw.pop(k) for k in list(kw) if k in SEARCH_FIELDS}
    return open_stac_search(StacSearch(url or stack.stac_url, **fields), kw.pop("assets"), **kw)


def ids(source):
    return [i.id for i in source.items]


def aoi_tiles(coll):
    return [(t.x, t.y, t.z) for t in mercantile.tiles(*coll.aoi_bbox, ZOOM)]


def same_tile(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return (
        numpy.array_equal(a.data, b.data)
        and numpy.array_equal(a.valid, b.valid)
        and a.data.dtype == b.data.dtype
    )


# --------------------------------------------------------------------------- pure helpers


def test_parse_query_and_sort():
    assert parse_query(
        ["eo:cloud_cover<5", "eo:cloud_cover>=1", "platform=landsat-8", 'flag != "x"']
    ) == {
        "eo:cloud_cover": {"lt": 5, "gte": 1},
        "platform": {"eq": "landsat-8"},
        "flag": {"neq": "x"},
    }
    assert parse_query({"a": {"eq": 1}}) == {"a": {"eq": 1}}
    with pytest.raises(ConfigError, match="bad `query`"):
        parse_query(["eo:cloud_cover ~ 5"])
    assert parse_sort_by("eo:cloud_cover,-datetime") == [
        {"field": "eo:cloud_cover", "direction": "asc"},
        {"field": "datetime", "direction": "desc"},
    ]


@pytest.mark.parametrize(
    "lat,month,seasons,ok",
    [
        (45, 1, ("winter",), True),
        (45, 7, ("summer",), True),
        (45, 7, ("winter",), False),
        (-45, 7, ("winter",), True),
        (-45, 1, ("summer",), True),
        (-45, 4, ("autumn",), True),
        (-45, 10, ("spring",), True),
        (45, 10, ("fall",), True),
        (0, 3, ("spring",), True),
    ],
)
def test_season_rule(lat, month, seasons, ok):
    item = {
        "geometry": mapping(box(5, lat - 0.5, 6, lat + 0.5))
        if lat
        else mapping(box(5, -0.2, 6, 0.2)),
        "properties": {"datetime": f"2024-{month:02d}-15T10:00:00Z"},
    }
    assert item_season_ok(item, seasons) is ok
    assert item_season_ok({"geometry": item["geometry"], "properties": {}}, seasons) is None


# --------------------------------------------------------------------------- searches


def test_bbox_search_reports_unusable_items(stack, coll, caplog):
    with caplog.at_level(logging.WARNING):
        src = search(stack, coll, bbox=coll.aoi_bbox)
    assert sorted(ids(src)) == sorted(NORTH_USABLE)
    assert src.skipped == ("s8-noblue",)
    assert "s8-noblue" in caplog.text
    # default order of a pgstac-backed API: newest first
    assert ids(src) == BY_DATE[::-1]
    assert all(i.assets == ASSETS for i in src.items)


def test_geometry_search_matches_footprints(stack, coll):
    aoi = mapping(box(5.45, 45.60, 5.60, 45.80))  # the north-west corner
    expected = sorted(
        f["id"]
        for f in coll.features
        if shape(f["geometry"]).intersects(shape(aoi)) and f["id"] != "s8-noblue"
    )
    assert 0 < len(expected) < len(NORTH_USABLE)
    src = search(stack, coll, geometry={"type": "Feature", "geometry": aoi, "properties": {}})
    assert sorted(ids(src)) == expected


def test_datetime_search(stack, coll):
    src = search(stack, coll, bbox=coll.aoi_bbox, datetime="2024-04-01/2024-08-31")
    assert sorted(ids(src)) == ["s2-spring", "s3-summer", "s5-spring", "s6-summer"]
    assert src.skipped == ("s8-noblue",)


def test_query_search(stack, coll):
    src = search(stack, coll, query=["eo:cloud_cover<5"])
    assert sorted(ids(src)) == ["s1-winter", "s3-summer", "s5-spring", "south-jul"]


@pytest.mark.parametrize(
    "flt",
    [
        "eo:cloud_cover >= 8 AND eo:cloud_cover < 40",
        {
            "op": "and",
            "args": [
                {"op": ">=", "args": [{"property": "eo:cloud_cover"}, 8]},
                {"op": "<", "args": [{"property": "eo:cloud_cover"}, 40]},
            ],
        },
    ],
)
def test_cql2_filter_search(stack, coll, flt):
    src = search(stack, coll, filter=flt)
    assert sorted(ids(src)) == ["s2-spring", "s4-autumn", "s7-winter"]


def test_seasons_follow_the_hemisphere(stack, coll):
    winter = search(stack, coll, seasons=("winter",))
    assert sorted(ids(winter)) == ["s1-winter", "s7-winter", "south-jul"]  # July is austral winter
    summer = search(stack, coll, seasons=["summer"])
    assert sorted(ids(summer)) == ["s3-summer", "s6-summer"]
    assert summer.skipped == ("s8-noblue",)  # June, north: in season but lacks "blue"
    both = search(stack, coll, seasons="spring,autumn", bbox=coll.aoi_bbox)
    assert sorted(ids(both)) == ["s2-spring", "s4-autumn", "s5-spring"]


def test_sort_and_max_items(stack, coll):
    by_cloud = search(stack, coll, bbox=coll.aoi_bbox, sort_by="eo:cloud_cover")
    assert ids(by_cloud) == sorted(NORTH_USABLE, key=lambda i: ITEM_SPECS[i][6])
    newest = search(stack, coll, bbox=coll.aoi_bbox, sort_by="-datetime")
    assert ids(newest) == BY_DATE[::-1]
    oldest = search(stack, coll, bbox=coll.aoi_bbox, sort_by="datetime")
    assert ids(oldest) == BY_DATE
    two = search(stack, coll, bbox=coll.aoi_bbox, sort_by="eo:cloud_cover", max_items=2)
    assert ids(two) == ["s3-summer", "s1-winter"]
    # max_items counts usable items after the seasons filter
    one = search(
        stack, coll, bbox=coll.aoi_bbox, sort_by="datetime", seasons=["winter"], max_items=1
    )
    assert ids(one) == ["s1-winter"]


def test_search_equals_items_file_in_process(stack, coll, tmp_path):
    """Same items → same per-tile asset lists and bit-identical in-process tiles."""
    src = search(stack, coll, bbox=coll.aoi_bbox, sort_by="datetime")
    features = [coll.feature(i) for i in BY_DATE]
    items_file = tmp_path / "items.json"
    items_file.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    from_file = open_stac_items(items_file, ASSETS)
    tiles = aoi_tiles(coll)
    for t in tiles:
        assert [i.id for i in src.assets_for_tile(*t)] == [
            i.id for i in from_file.assets_for_tile(*t)
        ]
    read = ReadOptions(pixel_selection="median", tilesize=256)
    tiler = LocalTiler(read)
    for t in tiles[4:6]:
        a = tiler.read_tile(t, src.assets_for_tile(*t))
        b = tiler.read_tile(t, from_file.assets_for_tile(*t))
        assert a is not None and same_tile(a, b)


def test_save_items_pins_the_search(stack, coll, tmp_path):
    """A run directory can pin the search: re-opening the file gives identical items."""
    src = search(
        stack, coll, bbox=coll.aoi_bbox, sort_by="eo:cloud_cover", seasons=["summer", "winter"]
    )
    again = open_stac_items(save_items(src, tmp_path / "run" / "items.json"), ASSETS)
    assert again.items == src.items and again.footprints == src.footprints


def test_assemble_from_pinned_search_equals_items_file(stack, coll, tmp_path):
    """End to end: `assemble` over the pinned search == over the original items file."""
    import rasterio

    from mosaic_assembler import assemble

    src = search(stack, coll, bbox=coll.aoi_bbox, sort_by="datetime")
    pinned = save_items(src, tmp_path / "pinned.json")
    original = tmp_path / "original.json"
    original.write_text(
        json.dumps({"type": "FeatureCollection", "features": [coll.feature(i) for i in BY_DATE]})
    )
    bbox = (5.80, 45.40, 6.10, 45.60)
    outs = []
    for name, items in (("search", pinned), ("file", original)):
        out = tmp_path / f"{name}.tif"
        assemble(
            out,
            bbox=bbox,
            zoom=ZOOM,
            items=items,
            assets=ASSETS,
            pixel_selection="median",
            tilesize=256,
            progress=False,
        )
        with rasterio.open(out) as ds:
            outs.append((ds.read(masked=True), ds.transform))
    (a, ta), (b, tb) = outs
    assert ta == tb and numpy.array_equal(a.mask, b.mask)
    assert numpy.array_equal(a.filled(0), b.filled(0)) and a.count() > 0


# --------------------------------------------------------------------------- mosaicJSON


def test_save_mosaicjson_single_asset(stack, coll, tmp_path):
    src = search(stack, coll, bbox=coll.aoi_bbox, sort_by="datetime")
    out = save_mosaicjson(
        src, tmp_path / "m" / "mosaic.json", minzoom=8, maxzoom=12, quadkey_zoom=ZOOM, asset="red"
    )
    mj = open_mosaicjson(out)
    for t in aoi_tiles(coll):
        assert mj.assets_for_tile(*t) == [
            i.item["assets"]["red"]["href"] for i in src.assets_for_tile(*t)
        ]
    # the pinned items, re-opened without the API, are the same source
    again = open_stac_items(tmp_path / "m" / "mosaic.items.json", ASSETS)
    assert [i.id for i in again.items] == ids(src)
    assert [i.item["assets"] for i in again.items] == [i.item["assets"] for i in src.items]


def test_save_mosaicjson_item_files(stack, coll, tmp_path):
    src = search(stack, coll, bbox=coll.aoi_bbox, sort_by="datetime")
    out = save_mosaicjson(src, tmp_path / "mosaic.json", minzoom=8, maxzoom=12, quadkey_zoom=ZOOM)
    doc = json.loads(out.read_text())
    entries = {e for v in doc["tiles"].values() for e in v}
    assert entries == {f"items/{i}.json" for i in NORTH_USABLE}
    item = json.loads((tmp_path / "items" / "s3-summer.json").read_text())
    assert sorted(item["assets"]) == sorted(ASSETS)
    mj = open_mosaicjson(out)
    for t in aoi_tiles(coll):
        assert mj.assets_for_tile(*t) == [
            str(tmp_path / "items" / f"{i.id}.json") for i in src.assets_for_tile(*t)
        ]
    with pytest.raises(SourceError, match="not among the selected assets"):
        save_mosaicjson(src, tmp_path / "x.json", 8, 12, asset="nir")


# --------------------------------------------------------------------------- titiler-pgstac


@pytest.fixture(scope="module")
def pgstac_search(stack, coll):
    """The pinned search (datetime ascending) registered by ids, as the CLI would."""
    src = search(stack, coll, bbox=coll.aoi_bbox, sort_by="datetime")
    body = pgstac_search_body(
        [coll.collection], bbox=coll.aoi_bbox, sort_by="datetime", ids=ids(src)
    )
    return src, register_search(stack.titiler_url, body)


def test_register_is_stable_and_urls(stack, coll, pgstac_search):
    src, sid = pgstac_search
    body = pgstac_search_body(
        [coll.collection], bbox=coll.aoi_bbox, sort_by="datetime", ids=ids(src)
    )
    assert register_search(stack.titiler_url + "/", body) == sid
    read = ReadOptions(pixel_selection="median", tilesize=256)
    opts = pgstac_http_options(stack.titiler_url, sid, read, ASSETS)
    url = HttpTiler(opts, read).url_for((1, 2, 3))
    assert url.startswith(f"{stack.titiler_url}/searches/{sid}/tiles/WebMercatorQuad/3/1/2.tif?")
    for part in (
        "assets=red&assets=green&assets=blue",
        "exitwhenfull=false",
        "skipcovered=false",
        "items_limit=10000",
        "scan_limit=100000",
        "time_limit=60",
        "pixel_selection=median",
        "tilesize=256",
    ):
        assert part in url
    fast = HttpTiler(
        pgstac_http_options(stack.titiler_url, sid, read, ASSETS, full_scan=False), read
    ).url_for((1, 2, 3))
    assert "exitwhenfull" not in fast and "items_limit" not in fast


def test_pgstac_median_equals_in_process(stack, coll, pgstac_search):
    src, sid = pgstac_search
    read = ReadOptions(pixel_selection="median", tilesize=256)
    remote = HttpTiler(pgstac_http_options(stack.titiler_url, sid, read, ASSETS), read)
    local = LocalTiler(read)
    compared = 0
    for t in aoi_tiles(coll):
        items = src.assets_for_tile(*t)
        a, b = remote.read_tile(t), local.read_tile(t, items)
        assert same_tile(a, b), f"tile {t} differs ({len(items)} items)"
        compared += a is not None and len(items) >= 3
    assert compared >= 3


def test_without_full_scan_median_is_not_a_median(stack, coll, pgstac_search):
    """pgstac's defaults (exitwhenfull/skipcovered) drop items: the median changes."""
    src, sid = pgstac_search
    read = ReadOptions(pixel_selection="median", tilesize=256)
    remote = HttpTiler(
        pgstac_http_options(stack.titiler_url, sid, read, ASSETS, full_scan=False), read
    )
    local = LocalTiler(read)
    differ = [
        t
        for t in aoi_tiles(coll)
        if not same_tile(remote.read_tile(t), local.read_tile(t, src.assets_for_tile(*t)))
    ]
    assert differ, "expected pgstac's default item shortcut to change at least one tile"


def test_pgstac_first_follows_the_same_order(stack, coll):
    """Default order (no sortby) on both sides: pgstac's datetime-descending `first`."""
    src = search(stack, coll, bbox=coll.aoi_bbox)
    sid = register_search(
        stack.titiler_url, pgstac_search_body([coll.collection], bbox=coll.aoi_bbox, ids=ids(src))
    )
    read = ReadOptions(pixel_selection="first", tilesize=256)
    remote = HttpTiler(pgstac_http_options(stack.titiler_url, sid, read, ASSETS), read)
    local = LocalTiler(read)
    for t in aoi_tiles(coll)[3:9]:
        assert same_tile(remote.read_tile(t), local.read_tile(t, src.assets_for_tile(*t))), t


def test_register_errors(stack):
    with pytest.raises(TilerRequestError, match="refused the search") as e:
        register_search(stack.titiler_url, {"collections": "notalist", "bbox": [1, 2]})
    assert e.value.status in (400, 422)
    with pytest.raises(SourceError, match="cannot register"):
        register_search(
            f"http://127.0.0.1:{free_port()}", {"collections": ["x"]}, retries=1, backoff=0.01
        )


# --------------------------------------------------------------------------- errors


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_unreachable_api():
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    with pytest.raises(SourceError) as e:
        open_stac_search(StacSearch(url, collections=("x",)), ASSETS, retries=1)
    msg = one_line(e)
    assert "cannot reach the STAC API" in msg and "connection refused" in msg
    assert "after 1 retries" in msg
    assert time.monotonic() - t0 < 20


def test_zero_items_echoes_the_search(stack, coll):
    with pytest.raises(SourceError) as e:
        search(
            stack,
            coll,
            bbox=coll.aoi_bbox,
            datetime="2030-01-01/2030-12-31",
            query=["eo:cloud_cover<5"],
        )
    msg = one_line(e)
    assert msg.startswith("0 items matched the STAC search")
    assert "2030-01-01" in msg and "eo:cloud_cover" in msg and coll.collection in msg


def test_nothing_in_season(stack, coll):
    with pytest.raises(SourceError, match="none was acquired in autumn") as e:
        search(
            stack, coll, bbox=coll.aoi_bbox, datetime="2024-01-01/2024-02-28", seasons=["autumn"]
        )
    one_line(e)


def test_unknown_collection(stack, coll):
    with pytest.raises(ConfigError) as e:
        search(stack, coll, collections=["nope"])
    msg = one_line(e)
    assert "unknown collection 'nope'" in msg and coll.collection in msg


@pytest.mark.parametrize("dt", ["2024-13-01", "last summer", "2024-06-01/2024-05-01x"])
def test_bad_datetime(stack, coll, dt):
    with pytest.raises(ConfigError, match="bad `datetime`") as e:
        search(stack, coll, datetime=dt)
    one_line(e)


@pytest.mark.parametrize(
    "flt", ["eo:cloud_cover <<< 5", "eo:cloud_cover < 5 AND", {"op": "=", "args": [1]}]
)
def test_bad_cql2(stack, coll, flt):
    with pytest.raises(ConfigError, match="bad CQL2 `filter`") as e:
        search(stack, coll, filter=flt)
    one_line(e)


def test_http_error_carries_the_api_message(stack, coll):
    with pytest.raises((ConfigError, SourceError)) as e:
        search(stack, coll, query={"eo:cloud_cover": {"between": [1, 2]}})
    msg = one_line(e)
    assert "answered HTTP 400" in msg, msg


def test_missing_asset_key_everywhere(stack, coll):
    with pytest.raises(
        SourceError, match="asset key.s. nir not found .*available: blue, green, red"
    ):
        search(stack, coll, assets=("red", "nir"))
    with pytest.raises(SourceError, match="`assets` is required"):
        search(stack, coll, assets=())


def test_not_a_stac_api(stack):
    with pytest.raises(SourceError) as e:
        open_stac_search(
            StacSearch(stack.titiler_url + "/healthz", collections=("x",)), ASSETS, retries=0
        )
    one_line(e)


def test_stack_tempdir_is_removed(tmp_path):
    from stac_fixtures import load_stack_module

    mod = load_stack_module()
    empty = tmp_path / "none.json"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    s = mod.StacStack(empty, "empty", stac_api=False, titiler=False)
    try:
        s.start()
    except mod.StackUnavailable as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"STAC stack unavailable under CI: {e}")
        pytest.skip(str(e))
    workdir = s.workdir
    assert workdir is not None and Path(workdir).is_dir() and s.item_ids == []
    s.stop()
    assert not Path(workdir).exists()
    s.stop()  # idempotent


# --------------------------------------------------------------------------- the CLI, end to end


def _cli_stac(stack, coll, out, *extra):
    import subprocess
    import sys

    from mosaic_assembler.cli import main  # noqa: F401 - the entry point users run

    cmd = [
        sys.executable,
        "-m",
        "mosaic_assembler.cli",
        "--stac",
        stack.stac_url,
        "--collections",
        coll.collection,
        "--bbox",
        *map(str, coll.aoi_bbox),
        "--zoom",
        str(ZOOM),
        "--tilesize",
        "256",
        "--assets",
        ",".join(ASSETS),
        "--sort-by",
        "datetime",
        "--pixel-selection",
        "median",
        "--json",
        *extra,
        str(out),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_cli_stac_in_process_and_titiler_pgstac_are_identical(stack, coll, tmp_path):
    from rio_cogeo.cogeo import cog_validate
    from test_http import assert_same_cog

    local, remote, saved = tmp_path / "local.tif", tmp_path / "remote.tif", tmp_path / "m.json"
    r = _cli_stac(stack, coll, local, "--save-mosaicjson", str(saved))
    assert r.returncode == 0, r.stderr
    r = _cli_stac(stack, coll, remote, "--tiler", f"titiler-pgstac:{stack.titiler_url}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["tiles_done"] > 0
    for p in (local, remote):
        assert cog_validate(str(p), quiet=True)[0]
    assert_same_cog(local, remote)
    # the saved search repeats the run without the API
    from mosaic_assembler import assemble

    again = tmp_path / "again.tif"
    assemble(
        again,
        items=saved.with_name("m.items.json"),
        assets=ASSETS,
        bbox=coll.aoi_bbox,
        zoom=ZOOM,
        tilesize=256,
        pixel_selection="median",
        progress=False,
    )
    assert_same_cog(local, again)


def test_cli_stac_mask_band_equals_items_file(stack, coll, tmp_path):
    """--mask-band with --stac: the QA asset travels with the searched items; the result is
    the --items run over the saved search, and the mask changes the median."""
    import rasterio
    from test_http import assert_same_cog

    from mosaic_assembler import assemble

    mask = ("--mask-band", "blue", "--mask-expression", "qa > 20000")
    masked, plain, saved = tmp_path / "masked.tif", tmp_path / "plain.tif", tmp_path / "m.json"
    r = _cli_stac(stack, coll, masked, *mask, "--save-mosaicjson", str(saved))
    assert r.returncode == 0, r.stderr
    again = tmp_path / "again.tif"
    assemble(
        again,
        items=saved.with_name("m.items.json"),
        assets=ASSETS,
        bbox=coll.aoi_bbox,
        zoom=ZOOM,
        tilesize=256,
        pixel_selection="median",
        mask_band="blue",
        mask_expression="qa > 20000",
        progress=False,
    )
    assert_same_cog(masked, again)
    r = _cli_stac(stack, coll, plain)
    assert r.returncode == 0, r.stderr
    with rasterio.open(masked) as a, rasterio.open(plain) as b:
        assert not numpy.array_equal(a.read(), b.read())


def test_resumed_stac_run_reuses_the_pinned_items(stack, coll, tmp_path, monkeypatch, caplog):
    """The first run pins its search's items in the run directory; a resumed run reads them
    instead of searching again (the catalogue may have changed); --restart searches anew."""
    import rasterio

    from mosaic_assembler import assemble
    from mosaic_assembler.errors import SourceError
    from mosaic_assembler.sources import stac_api

    run_dir = tmp_path / "run"
    kw = dict(
        stac=stack.stac_url,
        collections=[coll.collection],
        bbox=(5.80, 45.40, 6.10, 45.60),
        zoom=ZOOM,
        tilesize=256,
        assets=ASSETS,
        sort_by="datetime",
        pixel_selection="median",
        run_dir=run_dir,
        keep_run_dir=True,
        progress=False,
    )
    first = assemble(tmp_path / "a.tif", **kw)
    pinned = json.loads((run_dir / "search.items.json").read_text())["features"]
    assert [f["id"] for f in pinned] == [
        i.id for i in search(stack, coll, bbox=(5.80, 45.40, 6.10, 45.60), sort_by="datetime").items
    ]

    def no_search(*a, **k):
        raise SourceError("searched again")

    monkeypatch.setattr(stac_api, "open_stac_search", no_search)
    with caplog.at_level("INFO", logger="mosaic_assembler"):
        again = assemble(tmp_path / "b.tif", **kw)
    assert "pinned" in caplog.text and again.chunks_resumed == again.chunks > 0
    with rasterio.open(first.path) as a, rasterio.open(again.path) as b:
        assert numpy.array_equal(a.read(), b.read())
    with pytest.raises(SourceError, match="searched again"):
        assemble(tmp_path / "c.tif", restart=True, **kw)
    # another search on the same run directory does not take the pinned items
    with pytest.raises(SourceError, match="searched again"):
        assemble(tmp_path / "d.tif", **{**kw, "datetime": "2024-06-01/2024-12-31"})


def test_cli_stac_errors_are_one_line(stack, coll, tmp_path):
    out = tmp_path / "o.tif"
    r = _cli_stac(stack, coll, out, "--datetime", "2030-01-01/2030-12-31")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "0 items matched" in lines[0], r.stderr
    assert not out.exists()
