"""--group-by solar_day: scenes of one local solar day fused, then the selection over dates.

References: a numpy loop over rio-tiler reads (tests/time_oracles.py), and odc-stac's own
solar-day conversion.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate
from test_oracle import compare_output
from time_oracles import BANDS, features, median, observations, odc_solar_date, tile_items

from mosaic_assembler import ConfigError, assemble
from mosaic_assembler._grouping import group_observations, observation_day
from mosaic_assembler.cli import cli
from mosaic_assembler.demo_data import make_demo_sample
from mosaic_assembler.grid import AOI, plan_tiles
from mosaic_assembler.sources.stac_items import items_from_features


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"))


def _run(demo, out, **kw):
    args = dict(bbox=demo.bbox, zoom=demo.zoom, items=demo.items_path, assets=BANDS)
    return assemble(out, progress=False, **{**args, **kw})


def _oracle(demo, reduce, group_by="solar_day", qa=False):
    feats = features(demo.items_path)

    def oracle(tile):
        obs = observations(tile_items(demo.items_path, feats, tile), tile, group_by, qa)
        return reduce(obs)

    return oracle


def _plan(demo):
    return plan_tiles(AOI.from_bbox(*demo.bbox), demo.zoom, 512)


def test_solar_day_median_equals_fuse_then_median(demo, tmp_path):
    out = tmp_path / "day.tif"
    _run(demo, out, pixel_selection="median", group_by="solar_day")
    assert cog_validate(str(out), quiet=True)[0]
    assert compare_output(out, _plan(demo), _oracle(demo, median)) >= 4


def test_solar_day_median_differs_from_the_item_median_where_scenes_of_a_date_overlap(
    demo, tmp_path
):
    by_day, by_item = tmp_path / "day.tif", tmp_path / "item.tif"
    _run(demo, by_day, pixel_selection="median", group_by="solar_day")
    _run(demo, by_item, pixel_selection="median")
    # the demo's scenes of one date (paths 28 and 29 of a row) overlap in a band of latitude
    feats = features(demo.items_path)
    dates = [odc_solar_date(f) for f in feats]
    assert len(set(dates)) < len(dates)
    with rasterio.open(by_day) as d, rasterio.open(by_item) as i:
        a, b = d.read(), i.read()
        both = (d.dataset_mask() > 0) & (i.dataset_mask() > 0)
    differ = (a != b).any(axis=0) & both
    assert differ.sum() > 1000
    assert (~differ & both).sum() > differ.sum()  # elsewhere (one scene per date) equal


def test_solar_day_with_qa_mask_masks_first_then_fuses(demo, tmp_path):
    out = tmp_path / "qa.tif"
    _run(demo, out, pixel_selection="median", group_by="solar_day", mask_band="qa_pixel")
    assert compare_output(out, _plan(demo), _oracle(demo, median, qa=True)) >= 4


def _first(obs):
    return None if not obs else _fuse([a for _, a in obs])


def _fuse(stack):
    from time_oracles import fuse_first

    return fuse_first(stack)


def test_solar_day_first_and_latest_clear(demo, tmp_path):
    first, latest = tmp_path / "first.tif", tmp_path / "latest.tif"
    _run(demo, first, pixel_selection="first", group_by="solar_day")
    assert compare_output(first, _plan(demo), _oracle(demo, _first)) >= 4
    _run(demo, latest, pixel_selection="latest-clear", group_by="solar_day", mask_band="qa_pixel")

    def newest_first(obs):
        return _first(sorted(obs, key=lambda o: o[0], reverse=True))

    assert compare_output(latest, _plan(demo), _oracle(demo, newest_first, qa=True)) >= 4


def test_solar_day_with_an_expression(demo, tmp_path):
    out = tmp_path / "ndvi.tif"
    _run(demo, out, pixel_selection="highest", group_by="solar_day",
         expression="(nir08-red)/(nir08+red)", assets=())  # fmt: skip

    def highest_ndvi(obs):
        if not obs:
            return None
        ndvi = [(a[3].astype("float64") - a[2]) / (a[3].astype("float64") + a[2]) for _, a in obs]
        fused = numpy.ma.stack(ndvi).max(axis=0)
        return fused.astype("float32")[None]

    plan = _plan(demo)
    got = compare_output(out, plan, _oracle(demo, highest_ndvi))
    assert got >= 4


def test_every_method_runs_with_solar_day(demo, tmp_path):
    from mosaic_assembler.selection import PIXEL_SELECTION_METHODS

    for method in (*PIXEL_SELECTION_METHODS, "p25"):
        out = tmp_path / f"{method}.tif"
        r = _run(demo, out, pixel_selection=method, group_by="solar_day")
        assert r.tiles_done == 6, method


def _item(item_id: str, when: str, lon: float) -> dict:
    return {
        "type": "Feature",
        "id": item_id,
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                [[lon - 0.5, 0], [lon + 0.5, 0], [lon + 0.5, 1], [lon - 0.5, 1], [lon - 0.5, 0]]
            ],
        },  # fmt: skip
        "properties": {"datetime": when},
        "assets": {"b": {"href": f"/nowhere/{item_id}.tif"}},
        "links": [],
    }


def test_solar_days_across_the_utc_date_line():
    # near 180° the local solar day is almost a day ahead of (east) or behind (west) UTC: two
    # passes 2 hours apart in UTC can fall on one solar day, or one pass on two UTC dates
    feats = [
        _item("east-late", "2024-03-01T23:30:00Z", 179.4),  # solar 2024-03-02 10:30
        _item("east-next", "2024-03-02T01:10:00Z", 179.6),  # solar 2024-03-02 12:10
        _item("west-early", "2024-03-02T00:20:00Z", -179.5),  # solar 2024-03-01 12:20
        _item("west-late", "2024-03-01T22:50:00Z", -179.2),  # solar 2024-03-01 10:50
        _item("greenwich", "2024-03-01T23:59:00Z", 0.2),
    ]
    src = items_from_features(feats, ("b",), "test", "test", lambda h, _i: h)
    groups = group_observations(list(src.items), "solar_day")
    got = {day: [a.id for a in items] for day, items in groups}
    expected: dict[dt.date, list[str]] = {}
    for f in feats:
        expected.setdefault(odc_solar_date(f), []).append(f["id"])
    assert got == expected
    assert got == {
        dt.date(2024, 3, 2): ["east-late", "east-next"],
        dt.date(2024, 3, 1): ["west-early", "west-late", "greenwich"],
    }
    # by item: UTC dates, every item its own observation, in the run's order
    by_item = group_observations(list(src.items), "item")
    assert [a[0].id for _, a in by_item] == [f["id"] for f in feats]
    assert [observation_day(a, "item") for a in src.items][:2] == [
        dt.date(2024, 3, 1),
        dt.date(2024, 3, 2),
    ]
    newest = group_observations(list(src.items), "solar_day", newest_first=True)
    assert [d for d, _ in newest] == [dt.date(2024, 3, 2), dt.date(2024, 3, 1)]


def test_default_group_by_keeps_the_demo_bytes(demo, tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    _run(demo, a, pixel_selection="median")
    _run(demo, b, pixel_selection="median", group_by="item")
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert (x.read() == y.read()).all()


def test_solar_day_needs_items_and_the_in_process_tiler(demo, tmp_path):
    with pytest.raises(ConfigError, match="needs STAC items"):
        assemble(tmp_path / "x.tif", bbox=demo.bbox, zoom=demo.zoom, group_by="solar_day",
                 mosaicjson=demo.mosaicjson_path, progress=False)  # fmt: skip
    runner = CliRunner()
    for extra in (
        ["--tiler", "http://127.0.0.1:9/{z}/{x}/{y}.tif", "--bbox", *map(str, demo.bbox)],
        ["--mosaicjson", str(demo.mosaicjson_path), "--bbox", *map(str, demo.bbox)],
    ):
        res = runner.invoke(
            cli, ["--zoom", "10", *extra, "--group-by", "solar_day", str(tmp_path / "y.tif")]
        )
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and "group" in lines[0]
    res = runner.invoke(cli, ["--zoom", "10", "--items", str(demo.items_path), "--assets", "red",
                              "--group-by", "week", str(tmp_path / "z.tif")])  # fmt: skip
    assert res.exit_code == 2 and "week" in res.output


def test_chips_keeps_its_solar_day(demo):
    from mosaic_assembler.chips import solar_date

    feats = json.loads(demo.items_path.read_text())["features"]
    for f in feats:
        utc = dt.datetime.fromisoformat(f["properties"]["datetime"].replace("Z", "+00:00"))
        from shapely.geometry import shape

        assert solar_date(utc, shape(f["geometry"]).centroid.x) == odc_solar_date(f)
