"""assemble(): outputs, masks, antimeridian, clipping, atomicity, errors; real data."""

from __future__ import annotations

import json
from pathlib import Path

import mercantile
import numpy
import pytest
import rasterio
from cogeo_mosaic.backends import MosaicBackend
from conftest import make_mosaicjson, make_scene, write_cog
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate
from test_oracle import compare_output, expected_tile

from mosaic_assembler import (
    AOIError,
    ConfigError,
    EmptyPlanError,
    OutputError,
    SourceError,
    TilesFailedError,
    assemble,
)
from mosaic_assembler.grid import AOI, plan_tiles


def _valid_cog(path: Path) -> None:
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid and not errors, errors


def test_output_keeps_dtype_and_masks_with_a_mask_band(scenes, tmp_path):
    out = tmp_path / "o.tif"
    r = assemble(
        out, bbox=scenes.bbox, zoom=scenes.zoom, mosaicjson=scenes.mosaicjson, progress=False
    )
    _valid_cog(out)
    with rasterio.open(out) as src:
        assert src.dtypes == ("uint16",) * 3
        assert src.nodata is None
        assert src.crs.to_epsg() == 3857
        assert all(f == [rasterio.enums.MaskFlags.per_dataset] for f in src.mask_flag_enums)
        mask = src.dataset_mask()
        assert 0 < (mask > 0).mean() < 1
        assert src.overviews(1)
    assert r.tiles_done + r.tiles_empty + r.tiles_failed == r.tiles_total
    assert r.size_bytes == out.stat().st_size
    assert r.width == r.height == 512 * 3 or r.width * r.height > 0


def test_real_zeros_stay_valid(tmp_path):
    """A zero inside the data is data: nodata=0 must not swallow it in the output."""
    data = numpy.full((1, 200, 200), 1000, dtype="int16")
    data[0, 50:150, 50:150] = 0  # real zeros, e.g. a reflectance of 0
    src = write_cog(
        tmp_path / "z.tif", data, "EPSG:3857", from_origin(600000, 5700000, 100, 100), nodata=None
    )
    mj = make_mosaicjson([src], tmp_path / "m.json", 7, 10)
    out = tmp_path / "o.tif"
    assemble(out, mosaicjson=mj, zoom=10, progress=False)
    with rasterio.open(out) as o:
        vals, mask = o.read(1), o.dataset_mask() > 0
        assert (vals[mask] == 0).sum() > 1000  # zeros survive, under a valid mask
        assert o.nodata is None


def test_polygon_aoi_and_clip(scenes, tmp_path):
    poly = {
        "type": "Polygon",
        "coordinates": [[[5.6, 45.3], [6.4, 45.35], [6.0, 45.7], [5.6, 45.3]]],
    }
    aoi_file = tmp_path / "aoi.geojson"
    aoi_file.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": poly}))
    plain, clipped = tmp_path / "plain.tif", tmp_path / "clip.tif"
    assemble(plain, aoi=aoi_file, zoom=10, mosaicjson=scenes.mosaicjson, progress=False)
    assemble(
        clipped, aoi=str(aoi_file), zoom=10, mosaicjson=scenes.mosaicjson, clip=True, progress=False
    )
    _valid_cog(clipped)
    with rasterio.open(plain) as p, rasterio.open(clipped) as c:
        assert p.transform == c.transform and p.shape == c.shape
        mp, mc = p.dataset_mask() > 0, c.dataset_mask() > 0
        assert mc.sum() < mp.sum()
        assert not (mc & ~mp).any()  # clipping only removes
        # a pixel outside the triangle but inside the tile rectangle is masked
        x, y = mercantile.xy(6.35, 45.65)
        row, col = c.index(x, y)
        assert not mc[row, col]
        x, y = mercantile.xy(6.0, 45.45)
        row, col = c.index(x, y)
        assert mc[row, col] and mp[row, col]
        numpy.testing.assert_array_equal(p.read()[:, mc], c.read()[:, mc])


def test_antimeridian_output_is_continuous(tmp_path):
    scene = make_scene(
        tmp_path / "dateline.tif",
        "EPSG:32660",
        (179.95, 51.5),
        500,
        100.0,
        seed=7,
        collar=False,
        nodata=None,
    )
    # mosaicJSON listing the scene in quadkeys on both sides of 180°
    tiles = {}
    for lon in (179.6, 179.99, -179.99, -179.7):
        for lat in (51.3, 51.7):
            t = mercantile.tile(lon, lat, 8)
            tiles[mercantile.quadkey(t)] = [str(scene)]
    mj = tmp_path / "m.json"
    mj.write_text(
        json.dumps(
            {
                "mosaicjson": "0.0.3",
                "minzoom": 8,
                "maxzoom": 12,
                "quadkey_zoom": 8,
                "bounds": [-180, -85, 180, 85],
                "tiles": tiles,
            }
        )
    )
    out = tmp_path / "o.tif"
    bbox = (179.7, 51.3, -179.8, 51.7)
    assemble(out, bbox=bbox, zoom=10, mosaicjson=mj, progress=False)
    _valid_cog(out)
    plan = plan_tiles(AOI.from_bbox(*bbox), 10, 512)
    assert plan.crosses_antimeridian
    with rasterio.open(out) as src:
        assert src.bounds.right > 20037508.35
        mask = src.dataset_mask() > 0
        xs = numpy.array([src.transform * (c + 0.5, 0) for c in range(src.width)])[:, 0]
        assert mask[:, xs < 20037508.34].any() and mask[:, xs > 20037508.34].any()

    def oracle(tile):
        return expected_tile([str(scene)], tile, "first", tilesize=512)

    assert compare_output(out, plan, oracle) >= 2


def test_dry_run_writes_nothing(scenes, tmp_path):
    out = tmp_path / "o.tif"
    r = assemble(
        out,
        bbox=scenes.bbox,
        zoom=scenes.zoom,
        mosaicjson=scenes.mosaicjson,
        dry_run=True,
        progress=False,
    )
    assert r.dry_run and not out.exists() and list(tmp_path.iterdir()) == []
    assert r.estimated_bytes == r.width * r.height * 3 * 2
    assert r.count == 3 and r.dtype == "uint16"


def test_existing_output_refused_then_overwritten(scenes, tmp_path):
    out = tmp_path / "o.tif"
    out.write_bytes(b"precious")
    kw = dict(bbox=scenes.bbox, zoom=scenes.zoom, mosaicjson=scenes.mosaicjson, progress=False)
    with pytest.raises(OutputError, match="`overwrite`"):
        assemble(out, **kw)
    assert out.read_bytes() == b"precious"
    assemble(out, overwrite=True, **kw)
    _valid_cog(out)


def test_failed_tiles_leave_no_output(scenes, tmp_path):
    """A corrupt asset fails its tiles: no output file, no temp files left behind."""
    bad = tmp_path / "bad.tif"
    good = scenes.paths[0]
    bad.write_bytes(good.read_bytes()[:5000])  # truncated COG: header ok, data missing
    mj = tmp_path / "m.json"
    doc = json.loads(scenes.mosaicjson.read_text())
    doc["tiles"] = {q: [str(bad)] + a for q, a in doc["tiles"].items()}
    mj.write_text(json.dumps(doc))
    out = tmp_path / "o.tif"
    with pytest.raises(TilesFailedError, match="tiles failed") as e:
        assemble(out, bbox=scenes.bbox, zoom=scenes.zoom, mosaicjson=mj, progress=False)
    assert len(e.value.failed) > 0
    assert not out.exists()
    # the run directory stays, so that re-running retries only what failed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tif", "m.json", "o.tif.run"]
    # --allow-partial writes the rest, the failed tiles masked
    r = assemble(
        out, bbox=scenes.bbox, zoom=scenes.zoom, mosaicjson=mj, allow_partial=True, progress=False
    )
    assert r.tiles_failed > 0 and out.exists()
    _valid_cog(out)
    assert not (tmp_path / "o.tif.run").exists()


def test_empty_aoi_is_an_error_unless_allowed(scenes, tmp_path):
    out = tmp_path / "o.tif"
    with pytest.raises(EmptyPlanError, match="intersects no asset"):
        assemble(
            out, bbox=(10, 10, 10.5, 10.5), zoom=9, mosaicjson=scenes.mosaicjson, progress=False
        )
    r = assemble(
        out,
        bbox=(10, 10, 10.5, 10.5),
        zoom=9,
        mosaicjson=scenes.mosaicjson,
        allow_empty=True,
        progress=False,
    )
    assert r.path is None and not out.exists()


@pytest.mark.parametrize(
    "kwargs,error,msg",
    [
        (dict(pixel_selection="nope"), ConfigError, "valid: first"),
        (dict(zoom=30), ConfigError, "zoom"),
        (dict(bbox=(1, 2, 3)), ConfigError, "4 numbers"),
        (dict(bbox=(6, 46, 5, 45)), AOIError, "inverted"),
        (dict(mosaicjson="/nonexistent/m.json"), SourceError, "does not exist"),
        (dict(cog_profile="jpeg"), ConfigError, "needs uint8"),
        (dict(cog_profile="png"), ConfigError, "unknown COG profile"),
        (dict(max_pixels=1000), ConfigError, "`max_pixels`"),
        (dict(bidx=(1,), expression="b1"), ConfigError, "together"),
        (dict(colour="red"), ConfigError, "unknown option"),
    ],
)
def test_bad_options(scenes, tmp_path, kwargs, error, msg):
    kw = dict(bbox=scenes.bbox, zoom=scenes.zoom, mosaicjson=scenes.mosaicjson, progress=False)
    kw.update(kwargs)
    with pytest.raises(error, match=msg):
        assemble(tmp_path / "o.tif", **kw)
    assert list(tmp_path.iterdir()) == []


def test_bad_sources(tmp_path, scenes):
    (tmp_path / "notjson.json").write_text("{nope")
    (tmp_path / "notmosaic.json").write_text('{"foo": 1}')
    for name, msg in [
        ("notjson.json", "not valid JSON"),
        ("notmosaic.json", "not a valid mosaicJSON"),
    ]:
        with pytest.raises(SourceError, match=msg):
            assemble(tmp_path / "o.tif", zoom=9, mosaicjson=tmp_path / name, progress=False)
    from conftest import make_items

    items = make_items(list(scenes.paths[:2]), scenes.dir / "items2.json", ("red", "green"))
    with pytest.raises(SourceError, match="not found in any item"):
        assemble(tmp_path / "o.tif", zoom=9, items=items, assets="red,nir", progress=False)
    with pytest.raises(SourceError, match="`assets` is required"):
        assemble(tmp_path / "o.tif", zoom=9, items=items, progress=False)


def test_output_dir_not_writable(scenes, tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        assemble(
            tmp_path / "missing" / "o.tif",
            bbox=scenes.bbox,
            zoom=scenes.zoom,
            mosaicjson=scenes.mosaicjson,
            progress=False,
        )


def test_progress_callback_counts_every_tile(scenes, tmp_path):
    seen = []
    r = assemble(
        tmp_path / "o.tif",
        bbox=scenes.bbox,
        zoom=scenes.zoom,
        mosaicjson=scenes.mosaicjson,
        progress=seen.append,
    )
    last = seen[-1]
    assert last.done + last.empty + last.failed == last.total == r.tiles_total
    assert [p.done for p in seen] == sorted(p.done for p in seen)


@pytest.mark.real_data
def test_real_landsat_mixed_crs_median_matches_oracle(real_data, tmp_path):
    """Group A: overlapping Landsat-8 scenes in EPSG:32618 and EPSG:4326 with nodata collars."""
    paths = [
        real_data / "cogeo-mosaic/cog1.tif",
        real_data / "cogeo-mosaic/cog2.tif",
        real_data / "rio-tiler/mosaic_cog3.tif",
    ]
    mj = make_mosaicjson(paths, tmp_path / "m.json", 7, 9)
    out = tmp_path / "median.tif"
    bbox = (-75.0, 45.5, -73.0, 46.5)
    r = assemble(out, bbox=bbox, zoom=8, mosaicjson=mj, pixel_selection="median", progress=False)
    _valid_cog(out)
    assert r.tiles_done >= 2
    plan = plan_tiles(AOI.from_bbox(*bbox), 8, 512)
    backend = MosaicBackend(str(mj))

    def oracle(tile):
        assets = backend.assets_for_tile(*tile)
        return expected_tile(assets, tile, "median", tilesize=512) if assets else None

    assert compare_output(out, plan, oracle) >= 2


@pytest.mark.real_data
def test_real_antimeridian_qa_scene(real_data, tmp_path):
    """cog_dateline.tif: a real UTM 60N scene that crosses 180°."""
    scene = str(real_data / "rio-tiler/cog_dateline.tif")
    tiles = {}
    for lon in numpy.linspace(178.0, 181.4, 12):
        lon = lon - 360 if lon > 180 else lon
        for lat in (50.7, 51.5, 52.6):
            tiles[mercantile.quadkey(mercantile.tile(lon, lat, 7))] = [scene]
    mj = tmp_path / "m.json"
    mj.write_text(
        json.dumps(
            {"mosaicjson": "0.0.3", "minzoom": 7, "maxzoom": 12, "quadkey_zoom": 7, "tiles": tiles}
        )
    )
    out = tmp_path / "o.tif"
    bbox = (178.5, 51.0, -178.8, 52.3)
    assemble(out, bbox=bbox, zoom=9, mosaicjson=mj, progress=False)
    _valid_cog(out)
    plan = plan_tiles(AOI.from_bbox(*bbox), 9, 512)
    assert plan.crosses_antimeridian
    assert (
        compare_output(out, plan, lambda t: expected_tile([scene], t, "first", tilesize=512)) >= 4
    )


def test_default_concurrency_local_vs_remote(monkeypatch):
    import json as _json

    from mosaic_assembler.pipeline import default_concurrency
    from mosaic_assembler.sources import ItemAssets

    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2})
    assert default_concurrency(["/data/a.tif"]) == 3
    assert default_concurrency(["s3://bucket/a.tif"]) == 12
    assert default_concurrency(["/vsicurl/https://host/a.tif"]) == 12
    item = ItemAssets(
        "i", "", _json.dumps({"assets": {"red": {"href": "https://h/r.tif"}}}), ("red",)
    )
    assert default_concurrency([item]) == 12
    assert default_concurrency([]) == 3
