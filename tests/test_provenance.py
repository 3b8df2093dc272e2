"""--provenance count|date: OUT.count.tif and OUT.date.tif against brute force.

The reference reads each item with rio-tiler's `Reader` and counts / picks with numpy loops
(tests/time_oracles.py); the COGs are checked with rio-cogeo.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate
from time_oracles import BANDS, features, observations, tile_items

from mosaic_assembler import assemble
from mosaic_assembler.cli import cli
from mosaic_assembler.demo_data import make_demo_sample
from mosaic_assembler.errors import ConfigError, StateMismatchError
from mosaic_assembler.grid import AOI, plan_tiles

EPOCH = dt.date(1970, 1, 1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"))


def _run(demo, out, **kw):
    args = dict(bbox=demo.bbox, zoom=demo.zoom, items=demo.items_path, assets=BANDS)
    return assemble(out, progress=False, **{**args, **kw})


def _tiles(demo):
    plan = plan_tiles(AOI.from_bbox(*demo.bbox), demo.zoom, 512)
    feats = features(demo.items_path)
    for tile in plan.tiles:
        row, col = plan.offset(tile)
        yield tile, Window(col, row, 512, 512), tile_items(demo.items_path, feats, tile)


def _check_companion(out, path, dtype, bands):
    assert cog_validate(str(path), quiet=True)[0]
    with rasterio.open(out) as o, rasterio.open(path) as p:
        assert (p.crs, p.transform, p.shape) == (o.crs, o.transform, o.shape)
        assert p.count == bands and p.dtypes[0] == dtype
        assert (p.dataset_mask() == o.dataset_mask()).all()


def _valid(a):
    return ~numpy.ma.getmaskarray(a).all(axis=0)


@pytest.mark.parametrize("group_by", ["item", "solar_day"])
def test_count_is_the_number_of_valid_observations(demo, tmp_path, group_by):
    out = tmp_path / "median.tif"
    _run(demo, out, pixel_selection="median", group_by=group_by, provenance="count",
         mask_band="qa_pixel")  # fmt: skip
    count_path = tmp_path / "median.count.tif"
    _check_companion(out, count_path, "uint16", 1)
    checked, maxima = 0, set()
    with rasterio.open(count_path) as c, rasterio.open(out) as o:
        for tile, win, items in _tiles(demo):
            obs = observations(items, tile, group_by, qa=True)
            expected = sum(_valid(a).astype("uint16") for _, a in obs)
            got, valid = c.read(1, window=win), o.dataset_mask(window=win) > 0
            numpy.testing.assert_array_equal(valid, expected > 0)
            numpy.testing.assert_array_equal(got[valid], expected[valid])
            checked += 1
            maxima.add(int(expected.max()))
    assert checked == 6
    # overlapping scenes of a date: 2 items on one pixel count once with solar_day (3 dates)
    assert max(maxima) > 3 if group_by == "item" else max(maxima) == 3


def _first_date(obs, band=0):
    days = numpy.zeros(obs[0][1].shape[-2:], "int32")
    todo = numpy.ones(days.shape, bool)
    for day, a in obs:
        hit = todo & ~numpy.ma.getmaskarray(a)[band]
        days[hit] = (day - EPOCH).days
        todo &= ~hit
    return days


def _extreme_date(obs, band, pick):
    """Date of the first observation holding the band's highest/lowest valid value."""
    stack = numpy.ma.stack([a[band] for _, a in obs])
    best = stack.max(axis=0) if pick == "max" else stack.min(axis=0)
    days = numpy.zeros(best.shape, "int32")
    todo = ~numpy.ma.getmaskarray(best)
    for day, a in obs:
        hit = todo & ~numpy.ma.getmaskarray(a[band]) & (a[band].data == best.data)
        days[hit] = (day - EPOCH).days
        todo &= ~hit
    return days


@pytest.mark.parametrize(
    ("method", "group_by"),
    [("first", "item"), ("latest-clear", "solar_day"), ("highest", "item"),
     ("lastbandlow", "solar_day")],
)  # fmt: skip
def test_date_of_the_chosen_observation(demo, tmp_path, method, group_by):
    out = tmp_path / "pick.tif"
    _run(demo, out, pixel_selection=method, group_by=group_by, provenance=("date", "count"),
         mask_band="qa_pixel")  # fmt: skip
    bands = 4 if method == "highest" else 1
    date_path = tmp_path / "pick.date.tif"
    _check_companion(out, date_path, "int32", bands)
    seen = set()
    with rasterio.open(date_path) as d, rasterio.open(out) as o:
        for tile, win, items in _tiles(demo):
            obs = observations(items, tile, group_by, qa=True)
            if method == "latest-clear":
                obs = sorted(obs, key=lambda x: x[0], reverse=True)
            if method == "first" or method == "latest-clear":
                expected = [_first_date(obs)]
            elif method == "highest":
                expected = [_extreme_date(obs, b, "max") for b in range(4)]
            else:  # lastbandlow: nir08 decides
                expected = [_extreme_date(obs, 3, "min")]
            valid = o.dataset_mask(window=win) > 0
            got = d.read(window=win)
            for b, exp in enumerate(expected):
                numpy.testing.assert_array_equal(got[b][valid], exp[valid], err_msg=f"{tile} {b}")
                seen.update(numpy.unique(exp[valid]).tolist())
    dates = {(EPOCH + dt.timedelta(days=v)).isoformat() for v in seen}
    assert len(dates) >= 2 and all(d.startswith("2023-") for d in dates)


def test_date_of_a_median_and_provenance_with_a_tiler_are_refused(demo, tmp_path):
    with pytest.raises(ConfigError, match="undefined for median"):
        _run(demo, tmp_path / "m.tif", pixel_selection="median", provenance="date")
    runner = CliRunner()
    base = ["--zoom", "10", "--bbox", *map(str, demo.bbox)]
    for extra, words in (
        (["--items", str(demo.items_path), "--assets", "red", "--pixel-selection", "median",
          "--provenance", "date"], "undefined for median"),
        (["--tiler", "http://127.0.0.1:9/{z}/{x}/{y}.tif", "--provenance", "count"],
         "only the selected pixels"),
        (["--mosaicjson", str(demo.mosaicjson_path), "--provenance", "date"], "needs STAC items"),
        (["--items", str(demo.items_path), "--assets", "red", "--provenance", "when"], "when"),
    ):  # fmt: skip
        res = runner.invoke(cli, [*base, *extra, str(tmp_path / "x.tif")])
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        if words != "when":  # (a bad choice: click's usage lines first, as for every option)
            assert len(lines) == 1, lines
        assert lines[-1].startswith("Error:") and words in lines[-1], lines
        assert not (tmp_path / "x.tif").exists()


def test_count_with_a_mosaicjson_and_an_existing_companion(demo, tmp_path):
    out = tmp_path / "first.tif"
    (tmp_path / "first.count.tif").write_text("mine")
    runner = CliRunner()
    args = ["--zoom", "10", "--bbox", *map(str, demo.bbox), "--mosaicjson",
            str(demo.mosaicjson_path), "--provenance", "count", str(out)]  # fmt: skip
    res = runner.invoke(cli, args)
    assert res.exit_code == 2 and "first.count.tif" in res.output and not out.exists()
    assert (tmp_path / "first.count.tif").read_text() == "mine"
    res = runner.invoke(cli, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    _check_companion(out, tmp_path / "first.count.tif", "uint16", 1)


def test_overwrite_without_a_kind_removes_only_that_kind_we_wrote(demo, tmp_path):
    """An overwrite that writes no count removes the count COG the earlier run wrote (listed
    in its OUT.json), not a file of that name the tool did not write."""
    out = tmp_path / "o.tif"
    _run(demo, out, provenance=("count", "date"), pixel_selection="first")
    assert (tmp_path / "o.count.tif").is_file() and (tmp_path / "o.date.tif").is_file()
    _run(demo, out, provenance=("date",), pixel_selection="first", overwrite=True)
    assert not (tmp_path / "o.count.tif").exists()
    _check_companion(out, tmp_path / "o.date.tif", "int32", 1)
    doc = json.loads((tmp_path / "o.json").read_text())
    assert "count" not in doc["assets"] and "date" in doc["assets"]
    (tmp_path / "o.count.tif").write_text("mine")  # not in OUT.json: not ours
    _run(demo, out, pixel_selection="first", overwrite=True)
    assert (tmp_path / "o.count.tif").read_text() == "mine"
    assert not (tmp_path / "o.date.tif").exists()  # ours (listed), not written this time


def test_split_outputs_get_one_provenance_cog_each(demo, tmp_path):
    single, split = tmp_path / "one.tif", tmp_path / "split"
    kw = dict(pixel_selection="first", provenance=("count", "date"))
    _run(demo, single, **kw)
    r = _run(demo, split, split_zoom=9, **kw)
    assert len(r.outputs) >= 2
    with rasterio.open(tmp_path / "one.date.tif") as whole:
        for cog in r.outputs:
            for kind in ("count", "date"):
                part = cog.with_name(f"{cog.stem}.{kind}.tif")
                _check_companion(cog, part, {"count": "uint16", "date": "int32"}[kind], 1)
                with rasterio.open(part) as p, rasterio.open(tmp_path / f"one.{kind}.tif") as w:
                    win = rasterio.windows.from_bounds(*p.bounds, transform=w.transform)
                    assert (w.read(window=win.round_offsets().round_lengths()) == p.read()).all()
            assert (cog.with_name(f"{cog.stem}.json")).exists()
        assert whole.count == 1
    assert (split / "collection.json").exists()


def test_resume_keeps_provenance_and_the_hash_includes_it(demo, tmp_path):
    out, run_dir = tmp_path / "r.tif", tmp_path / "run"
    kw = dict(pixel_selection="first", provenance="date", run_dir=run_dir, chunk_tiles=1)
    first = _run(demo, out, keep_run_dir=True, **kw)
    assert sorted(p.name for p in (run_dir / "chunks").glob("*.date.tif"))
    with rasterio.open(tmp_path / "r.date.tif") as d:
        before = d.read()
    # a chunk whose provenance file is gone is redone; the others are resumed
    victim = sorted((run_dir / "chunks").glob("*.date.tif"))[0]
    victim.unlink()
    again = _run(demo, out, overwrite=True, keep_run_dir=True, **kw)
    assert again.chunks_resumed == first.chunks - 1
    with rasterio.open(tmp_path / "r.date.tif") as d:
        assert (d.read() == before).all()
    with pytest.raises(StateMismatchError):
        _run(demo, out, overwrite=True, **{**kw, "provenance": "count"})


def test_provenance_on_dask_workers_equals_threads(demo, tmp_path):
    kw = dict(pixel_selection="highest", group_by="solar_day", provenance=("count", "date"),
              chunk_tiles=1)  # fmt: skip
    _run(demo, tmp_path / "t.tif", **kw)
    _run(demo, tmp_path / "d.tif", dask_local=2, **kw)
    for name in ("", ".count", ".date"):
        with (
            rasterio.open(tmp_path / f"t{name}.tif") as a,
            rasterio.open(tmp_path / f"d{name}.tif") as b,
        ):
            assert (a.read() == b.read()).all() and (a.dataset_mask() == b.dataset_mask()).all()
