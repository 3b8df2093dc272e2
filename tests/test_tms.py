"""Output grids other than WebMercatorQuad: any morecantile TMS, and custom CRS + resolution grids.

Oracles: rio-tiler's `mosaic_reader` over `Reader(..., tms=)` / `STACReader(..., tms=)` tile
by tile, cogeo-mosaic's `MosaicBackend(..., tms=)` for the assets of a tile, a real TiTiler,
and the source scenes' own pixels (a native-snapped grid reproduces them).
"""

from __future__ import annotations

import json
import math

import morecantile
import numpy
import pytest
import rasterio
from conftest import make_items, make_mosaicjson, make_scene
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate
from rio_tiler.io import Reader, STACReader
from test_cli import run_cli
from test_oracle import METHODS, compare_output, expected_tile

from mosaic_assembler import assemble
from mosaic_assembler._tms import auto_utm, load_grid
from mosaic_assembler.errors import ConfigError
from mosaic_assembler.grid import AOI, plan_tiles
from mosaic_assembler.options import build_options

#: (TMS id, level): a few 512-px tiles over the `scenes` bbox.
GRIDS = [("WGS1984Quad", 9), ("EuropeanETRS89_LAEAQuad", 7), ("UTM31WGS84Quad", 10)]


def _valid(path):
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid and not errors, errors


def _reader(tms):
    def read(asset, x, y, z, **kw):
        with Reader(asset, tms=tms) as src:
            return src.tile(x, y, z, **kw)

    return read


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("tms_id", "zoom"), GRIDS)
def test_mosaicjson_on_tms_matches_mosaic_reader(scenes, tmp_path, tms_id, zoom, method):
    """Every method, every grid: bit-identical to mosaic_reader(Reader(tms=)) per tile."""
    from cogeo_mosaic.backends import MosaicBackend

    out = tmp_path / "out.tif"
    r = assemble(
        out, bbox=scenes.bbox, zoom=zoom, tms=tms_id, mosaicjson=scenes.mosaicjson,
        pixel_selection=method, progress=False,
    )  # fmt: skip
    _valid(out)
    tms = morecantile.tms.get(tms_id)
    grid = load_grid(tms_id)
    plan = plan_tiles(AOI.from_bbox(*scenes.bbox), zoom, 512, grid=grid)
    with rasterio.open(out) as src:
        assert src.crs == tms.rasterio_crs
        assert src.transform == plan.transform
        assert (src.width, src.height) == (plan.width, plan.height)
    backend = MosaicBackend(str(scenes.mosaicjson), tms=tms)

    def oracle(tile):
        assets = backend.assets_for_tile(*tile)
        if not assets:
            return None
        return expected_tile(assets, tile, method, reader=_reader(tms), tilesize=512)

    checked = compare_output(out, plan, oracle)
    assert checked >= 3
    assert r.tiles_done == checked and r.tms == tms_id


@pytest.mark.parametrize("method", ["first", "median", "lastbandlow", "count"])
@pytest.mark.parametrize(("tms_id", "zoom"), GRIDS)
def test_stac_items_on_tms_match_mosaic_reader(scenes, tmp_path, tms_id, zoom, method):
    keys = ("red", "green", "blue")
    items = make_items(list(scenes.paths), scenes.dir / "items.json", keys)
    out = tmp_path / "items.tif"
    assemble(
        out, bbox=scenes.bbox, zoom=zoom, tms=tms_id, items=items, assets=",".join(keys),
        pixel_selection=method, progress=False,
    )  # fmt: skip
    feats = json.loads(items.read_text())["features"]
    for f in feats:
        for a in f["assets"].values():
            a["href"] = str((items.parent / a["href"]).resolve())
    tms = morecantile.tms.get(tms_id)

    def reader(item, x, y, z, **kw):
        with STACReader(
            None, item=item, tms=tms, include_assets=set(keys), include_asset_types=None
        ) as src:
            return src.tile(x, y, z, assets=list(keys), **kw)

    plan = plan_tiles(AOI.from_bbox(*scenes.bbox), zoom, 512, grid=load_grid(tms_id))

    def oracle(tile):
        w, s, e, n = transform_bounds(
            tms.rasterio_crs, "EPSG:4326", *tms.xy_bounds(*tile), densify_pts=21
        )
        hits = [
            f
            for f in feats
            if f["bbox"][0] < e and f["bbox"][2] > w and f["bbox"][1] < n and f["bbox"][3] > s
        ]
        if not hits:
            return None
        return expected_tile(hits, tile, method, reader=reader, tilesize=512)

    assert compare_output(out, plan, oracle) >= 3


def test_mosaicjson_with_its_own_tilematrixset(scenes, tmp_path):
    """A mosaicJSON whose quadkeys are in EuropeanETRS89_LAEAQuad (cogeo-mosaic >= 7)."""
    from cogeo_mosaic.backends import MosaicBackend
    from cogeo_mosaic.mosaic import MosaicJSON

    tms = morecantile.tms.get("EuropeanETRS89_LAEAQuad")
    doc = MosaicJSON.from_urls(
        [str(p) for p in scenes.paths], minzoom=6, maxzoom=8, tilematrixset=tms, quiet=True
    )
    mj = tmp_path / "laea.json"
    mj.write_text(doc.model_dump_json(exclude_none=True))
    for tms_id, zoom in [("EuropeanETRS89_LAEAQuad", 7), ("WebMercatorQuad", 9)]:
        out = tmp_path / f"{tms_id}.tif"
        assemble(
            out, bbox=scenes.bbox, zoom=zoom, tms=tms_id, mosaicjson=mj,
            pixel_selection="median", progress=False,
        )  # fmt: skip
        out_tms = morecantile.tms.get(tms_id)
        backend = MosaicBackend(str(mj), tms=out_tms)
        plan = plan_tiles(AOI.from_bbox(*scenes.bbox), zoom, 512, grid=load_grid(tms_id))

        def oracle(tile, backend=backend, out_tms=out_tms):
            assets = backend.assets_for_tile(*tile)
            if not assets:
                return None
            return expected_tile(assets, tile, "median", reader=_reader(out_tms), tilesize=512)

        assert compare_output(out, plan, oracle) >= 3


def test_tiler_with_a_non_mercator_tms_equals_in_process(scenes, titiler, tmp_path):
    """`{tileMatrixSetId}` of a real TiTiler's template is the run's TMS; same pixels."""
    local, remote = tmp_path / "local.tif", tmp_path / "remote.tif"
    common = dict(
        bbox=scenes.bbox, zoom=7, tms="EuropeanETRS89_LAEAQuad", pixel_selection="median",
        progress=False,
    )  # fmt: skip
    assemble(local, mosaicjson=scenes.mosaicjson, **common)
    template = (
        f"{titiler.url}/mosaicjson/tiles/{{tileMatrixSetId}}/{{z}}/{{x}}/{{y}}.tif"
        f"?url={scenes.mosaicjson}"
    )
    r = assemble(remote, tiler=template, **common)
    assert r.tiles_done > 0
    with rasterio.open(local) as a, rasterio.open(remote) as b:
        assert a.crs == b.crs == rasterio.crs.CRS.from_epsg(3035)
        assert a.transform == b.transform and a.shape == b.shape
        ma, mb = a.dataset_mask(), b.dataset_mask()
        numpy.testing.assert_array_equal(ma, mb)
        assert (ma > 0).any()
        numpy.testing.assert_array_equal(a.read()[:, ma > 0], b.read()[:, mb > 0])
    # a template naming another TMS than the run's is refused before any request
    wrong = template.replace("{tileMatrixSetId}", "WebMercatorQuad")
    with pytest.raises(ConfigError, match="TileMatrixSet WebMercatorQuad"):
        assemble(tmp_path / "w.tif", tiler=wrong, **common)


def _snapped(bounds, left, top, res):
    """Expected output bounds: `bounds` snapped outward to the grid through (left, top)."""
    minx, miny, maxx, maxy = bounds
    x0 = left + math.floor((minx - left) / res + 1e-6) * res
    x1 = left + math.ceil((maxx - left) / res - 1e-6) * res
    y1 = top - math.floor((top - maxy) / res + 1e-6) * res
    y0 = top - math.ceil((top - miny) / res - 1e-6) * res
    return x0, y0, x1, y1


def _projected_bounds(bbox, crs):
    from shapely.geometry import box

    from mosaic_assembler._tms import project_aoi

    return project_aoi(box(*bbox), rasterio.crs.CRS.from_user_input(crs)).bounds


def test_custom_grid_covers_the_snapped_aoi_and_matches_the_oracle(scenes, tmp_path):
    """`crs` + `resolution` (snap none): window = AOI bounds snapped outward; pixels = oracle."""
    out = tmp_path / "utm.tif"
    r = assemble(
        out, bbox=scenes.bbox, crs="EPSG:32631", resolution=100.0, mosaicjson=scenes.mosaicjson,
        pixel_selection="first", progress=False, tilesize=256,
    )  # fmt: skip
    _valid(out)
    expect = _snapped(_projected_bounds(scenes.bbox, "EPSG:32631"), 0.0, 0.0, 100.0)
    with rasterio.open(out) as src:
        assert src.crs == rasterio.crs.CRS.from_epsg(32631)
        assert src.res == (100.0, 100.0)
        numpy.testing.assert_allclose(tuple(src.bounds), expect, atol=1e-6)
        assert src.transform.c % 100 == 0 and src.transform.f % 100 == 0  # snapped to 0
        assert (r.width, r.height) == (src.width, src.height)
        data, mask = src.read(), src.dataset_mask() > 0
        assert mask.any()
    # the oracle: rio-tiler over the run's own TMS, tile by tile (cropped to the window)
    from mosaic_assembler._native import resolve_custom_grid

    aoi = AOI.from_bbox(*scenes.bbox)
    grid, zoom, snap = resolve_custom_grid("EPSG:32631", 100.0, None, aoi, 256, scenes.paths)
    assert snap == "none"  # the scenes are in four CRSs
    plan = plan_tiles(aoi, zoom, 256, grid=grid)
    from cogeo_mosaic.backends import MosaicBackend

    backend = MosaicBackend(str(scenes.mosaicjson), tms=grid.tms)
    row0, col0, height, width = plan.output_window
    assert (row0, col0) == (0, 0) and (height, width) == data.shape[1:]
    checked = 0
    for tile in plan.tiles:
        assets = backend.assets_for_tile(*tile)
        exp = expected_tile(assets, tile, "first", reader=_reader(grid.tms), tilesize=256)
        r0, c0 = plan.offset(tile)
        h, w = min(256, height - r0), min(256, width - c0)
        if h <= 0 or w <= 0:
            continue
        got_mask = mask[r0 : r0 + h, c0 : c0 + w]
        if exp is None:
            assert not got_mask.any()
            continue
        exp_valid = ~numpy.ma.getmaskarray(exp).all(axis=0)[:h, :w]
        numpy.testing.assert_array_equal(got_mask, exp_valid, err_msg=f"mask of {tile}")
        got = data[:, r0 : r0 + h, c0 : c0 + w]
        numpy.testing.assert_array_equal(
            got[:, got_mask], numpy.ma.getdata(exp)[:, :h, :w][:, got_mask]
        )
        checked += int(got_mask.any())
    assert checked >= 4


def _assert_reproduces(out, scene, bbox):
    """Every output pixel is the scene's pixel (value and mask); the output is the AOI snapped."""
    with rasterio.open(out) as o, rasterio.open(scene) as s:
        assert o.crs == s.crs
        assert o.res == s.res
        col = (o.transform.c - s.transform.c) / s.transform.a
        row = (o.transform.f - s.transform.f) / s.transform.e
        assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6  # congruent
        col, row = round(col), round(row)
        win = Window(col, row, o.width, o.height)
        exp = s.read(window=win, boundless=True, fill_value=s.nodata or 0)
        # rio-tiler's mask is per band: a pixel is valid when any band is not nodata
        exp_mask = (s.read_masks(window=win, boundless=True) > 0).any(axis=0)
        got, got_mask = o.read(), o.dataset_mask() > 0
        numpy.testing.assert_array_equal(got_mask, exp_mask)
        numpy.testing.assert_array_equal(got[:, got_mask], exp[:, got_mask])
        assert got_mask.sum() > 1000
        # the output is the AOI's bounds snapped outward to the scene's pixels, not whole tiles
        expect = _snapped(_projected_bounds(bbox, s.crs), s.transform.c, s.transform.f, s.res[0])
        numpy.testing.assert_allclose(tuple(o.bounds), expect, rtol=0, atol=1e-6)


def test_native_snap_reproduces_a_scene(tmp_path):
    scene = make_scene(tmp_path / "s.tif", "EPSG:32631", (3.0, 45.0), 600, 30.0, seed=5)
    mj = make_mosaicjson([scene], tmp_path / "m.json", minzoom=8, maxzoom=11)
    with rasterio.open(scene) as src:
        bbox = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    inner = (bbox[0] + 0.02, bbox[1] + 0.02, bbox[2] - 0.02, bbox[3] - 0.02)
    out = tmp_path / "native.tif"
    assemble(
        out, bbox=inner, crs="EPSG:32631", resolution=30.0, mosaicjson=mj,
        pixel_selection="first", progress=False,
    )  # fmt: skip
    _valid(out)
    _assert_reproduces(out, scene, inner)
    # the same through the CLI, with --snap native said out loud
    cli_out = tmp_path / "cli.tif"
    r = run_cli(["--bbox", *map(str, inner), "--crs", "EPSG:32631", "--resolution", "30",
                 "--snap", "native", "--mosaicjson", str(mj), str(cli_out)])  # fmt: skip
    assert r.returncode == 0, r.stderr
    with rasterio.open(out) as a, rasterio.open(cli_out) as b:
        assert a.transform == b.transform
        numpy.testing.assert_array_equal(a.read(), b.read())


@pytest.mark.real_data
def test_real_landsat_scene_on_its_own_grid_is_reproduced(real_data, tmp_path):
    """A real Landsat-8 scene (cog1.tif, EPSG:32618 at 300.038239038384 m), `first`."""
    scene = real_data / "cogeo-mosaic" / "cog1.tif"
    mj = make_mosaicjson([scene], tmp_path / "m.json", minzoom=6, maxzoom=9)
    with rasterio.open(scene) as src:
        res = src.transform.a
        bbox = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    out = tmp_path / "landsat.tif"
    r = run_cli(["--bbox", *map(repr, bbox), "--crs", "EPSG:32618", "--resolution", repr(res),
                 "--snap", "native", "--mosaicjson", str(mj), "--pixel-selection", "first",
                 str(out)])  # fmt: skip
    assert r.returncode == 0, r.stderr
    _valid(out)
    _assert_reproduces(out, scene, bbox)


def _assert_split_is_single(single, r):
    """The split files tile the single output exactly: same pixels, masks and CRS."""
    with rasterio.open(single) as one:
        whole, whole_mask = one.read(), one.dataset_mask() > 0
        covered = numpy.zeros(whole_mask.shape, bool)
        for path in r.outputs:
            _valid(path)
            with rasterio.open(path) as part:
                assert part.crs == one.crs and part.res == one.res
                col = round((part.transform.c - one.transform.c) / one.transform.a)
                row = round((part.transform.f - one.transform.f) / one.transform.e)
                assert col >= 0 and row >= 0
                assert col + part.width <= one.width and row + part.height <= one.height
                win = (slice(row, row + part.height), slice(col, col + part.width))
                m = part.dataset_mask() > 0
                numpy.testing.assert_array_equal(m, whole_mask[win])
                numpy.testing.assert_array_equal(part.read()[:, m], whole[:, win[0], win[1]][:, m])
                assert not covered[win].any()  # no overlap
                covered[win] = True
    assert covered[whole_mask].all()


def test_split_output_on_a_non_mercator_tms(scenes, tmp_path):
    """Split files are parent tiles of the TMS: together they are the single output."""
    common = dict(
        bbox=scenes.bbox, zoom=8, tms="EuropeanETRS89_LAEAQuad", mosaicjson=scenes.mosaicjson,
        progress=False, tilesize=256,
    )  # fmt: skip
    single = tmp_path / "one.tif"
    assemble(single, **common)
    split = tmp_path / "split"
    r = assemble(split, split_zoom=6, **common)
    assert len(r.outputs) >= 2
    _assert_split_is_single(single, r)
    mosaic = json.loads((split / "mosaic.json").read_text())
    assert mosaic["tilematrixset"]["id"] == "EuropeanETRS89_LAEAQuad"
    items = json.loads((split / "items.json").read_text())["features"]
    assert {f["properties"]["mosaic:epsg"] for f in items} == {3035}


def test_split_output_on_a_custom_grid_is_cropped_too(scenes, tmp_path):
    common = dict(
        bbox=scenes.bbox, crs="EPSG:32631", resolution=60.0, mosaicjson=scenes.mosaicjson,
        progress=False, tilesize=256,
    )  # fmt: skip
    single = tmp_path / "one.tif"
    one = assemble(single, **common)
    split = tmp_path / "split"
    r = assemble(split, split_zoom=one.zoom - 1, **common)
    assert len(r.outputs) >= 2
    _assert_split_is_single(single, r)
    with rasterio.open(single) as src:
        covered = sum(rasterio.open(p).width * rasterio.open(p).height for p in r.outputs)
        assert covered == src.width * src.height  # cropped to the output, no empty border
    mosaic = json.loads((split / "mosaic.json").read_text())
    assert mosaic["tilematrixset"]["crs"].endswith("/32631")


def test_fiji_on_utm_zone_60_is_continuous(tmp_path):
    """Across 180° on UTM zone 60 (auto-utm): one continuous output, both sides' pixels."""
    west = make_scene(tmp_path / "w.tif", "EPSG:32760", (178.8, -17.5), 300, 500.0, seed=7)
    east = make_scene(tmp_path / "e.tif", "EPSG:32701", (-179.0, -17.2), 300, 500.0, seed=8)
    mj = make_mosaicjson([west, east], tmp_path / "m.json", minzoom=6, maxzoom=9)
    bbox = (178.0, -18.5, -178.2, -16.3)
    assert auto_utm(bbox) == "EPSG:32760"
    out = tmp_path / "fiji.tif"
    r = assemble(
        out, bbox=bbox, crs="auto-utm", resolution=1000.0, mosaicjson=mj, progress=False,
        tilesize=256,
    )  # fmt: skip
    _valid(out)
    from mosaic_assembler._native import resolve_custom_grid

    aoi = AOI.from_bbox(*bbox)
    grid, zoom, _ = resolve_custom_grid("auto-utm", 1000.0, None, aoi, 256, [west, east])
    plan = plan_tiles(aoi, zoom, 256, grid=grid)
    with rasterio.open(out) as src:
        assert src.crs == rasterio.crs.CRS.from_epsg(32760)
        # 3.8° of longitude at 17°S is ~400 km: no detour around the globe
        assert 350 < src.width < 450, src.width
        data, mask = src.read(), src.dataset_mask() > 0
    # the oracle: rio-tiler per tile over both scenes (they do not overlap)
    for tile in plan.tiles:
        exp = expected_tile([str(west), str(east)], tile, "first", reader=_reader(grid.tms),
                            tilesize=256)  # fmt: skip
        r0, c0 = plan.offset(tile)
        h, w = min(256, data.shape[1] - r0), min(256, data.shape[2] - c0)
        got_mask = mask[r0 : r0 + h, c0 : c0 + w]
        if exp is None:
            assert not got_mask.any()
            continue
        exp_valid = ~numpy.ma.getmaskarray(exp).all(axis=0)[:h, :w]
        numpy.testing.assert_array_equal(got_mask, exp_valid)
        got = data[:, r0 : r0 + h, c0 : c0 + w]
        numpy.testing.assert_array_equal(got[:, got_mask], exp.data[:, :h, :w][:, got_mask])
    cols = numpy.nonzero(mask.any(axis=0))[0]
    assert cols.min() < 150 and cols.max() > 250  # pixels from both sides of 180°
    assert r.tiles_done >= 2
    # a grid whose discontinuity is at 180° refuses the AOI with one clear message
    with pytest.raises(Exception, match="crosses the antimeridian"):
        assemble(tmp_path / "g.tif", bbox=bbox, zoom=7, tms="WGS1984Quad", mosaicjson=mj,
                 progress=False)  # fmt: skip


def test_tms_json_file_and_default_grid(scenes, tmp_path):
    """A TMS 2.0 JSON file is a grid; `tms` WebMercatorQuad is the default, byte for byte."""
    tms = morecantile.tms.get("EuropeanETRS89_LAEAQuad")
    doc = json.loads(tms.model_dump_json(exclude_none=True))
    doc["id"] = "MyLAEA"
    path = tmp_path / "mylaea.json"
    path.write_text(json.dumps(doc))
    a, b = tmp_path / "named.tif", tmp_path / "file.tif"
    common = dict(bbox=scenes.bbox, zoom=7, mosaicjson=scenes.mosaicjson, progress=False)
    assemble(a, tms="EuropeanETRS89_LAEAQuad", **common)
    assemble(b, tms=str(path), **common)
    with rasterio.open(a) as sa, rasterio.open(b) as sb:
        assert sa.transform == sb.transform and sa.crs == sb.crs
        numpy.testing.assert_array_equal(sa.read(), sb.read())
    c, d = tmp_path / "default.tif", tmp_path / "wmq.tif"
    assemble(c, bbox=scenes.bbox, zoom=9, mosaicjson=scenes.mosaicjson, progress=False)
    assemble(d, bbox=scenes.bbox, zoom=9, tms="WebMercatorQuad", mosaicjson=scenes.mosaicjson,
             progress=False)  # fmt: skip
    assert c.read_bytes() == d.read_bytes()


def test_resume_belongs_to_one_grid(scenes, tmp_path):
    """The config hash includes the grid: a run directory of another grid is not reused."""
    from mosaic_assembler.errors import MosaicAssemblerError

    run_dir = tmp_path / "run"
    common = dict(bbox=scenes.bbox, mosaicjson=scenes.mosaicjson, progress=False,
                  run_dir=run_dir, keep_run_dir=True)  # fmt: skip
    assemble(tmp_path / "a.tif", zoom=7, tms="EuropeanETRS89_LAEAQuad", **common)
    try:
        r = assemble(tmp_path / "b.tif", zoom=9, tms="WGS1984Quad", **common)
    except MosaicAssemblerError as e:  # refused: the directory belongs to another run
        assert "run" in str(e)
    else:
        assert r.chunks_resumed == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zoom", "7", "--tms", "NoSuchTMS"], "unknown TileMatrixSet 'NoSuchTMS'"),
        (["--zoom", "7", "--tms", "BAD_JSON"], "is not an OGC TileMatrixSet 2.0 document"),
        (["--crs", "EPSG:32631"], "--crs needs --resolution"),
        (["--zoom", "7", "--resolution", "30"], "--resolution needs --crs"),
        (["--crs", "EPSG:32631", "--resolution", "0"], "--resolution must be a positive"),
        (["--crs", "EPSG:32631", "--resolution", "-5"], "--resolution must be a positive"),
        (["--crs", "EPSG:32631", "--resolution", "30", "--zoom", "7"], "--zoom is decided"),
        (["--crs", "EPSG:99999999", "--resolution", "30"], "is not a coordinate reference"),
        (
            ["--crs", "EPSG:32631", "--resolution", "100", "--snap", "native"],
            "--snap native needs every source on --crs EPSG:32631",
        ),
        (["--zoom", "30", "--tms", "EuropeanETRS89_LAEAQuad"], "is not a level of"),
    ],
)
def test_bad_grid_options_are_one_line_exit_2(scenes, tmp_path, args, message):
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "x", "tileMatrices": "nope"')
    args = [str(bad) if a == "BAD_JSON" else a for a in args]
    r = run_cli(["--bbox", *map(str, scenes.bbox), *args, "--mosaicjson",
                 str(scenes.mosaicjson), str(tmp_path / "o.tif")])  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_grid_options_in_build_options():
    with pytest.raises(ConfigError, match="`crs` needs `resolution`"):
        build_options(bbox=(5, 45, 6, 46), crs="EPSG:32631", mosaicjson="m.json")
    with pytest.raises(ConfigError, match="either `tms` or `crs`"):
        build_options(bbox=(5, 45, 6, 46), crs="EPSG:32631", resolution=30, tms="WGS1984Quad",
                      mosaicjson="m.json")  # fmt: skip
    opts = build_options(bbox=(5, 45, 6, 46), crs="auto-utm", resolution=30, mosaicjson="m.json")
    assert opts.zoom is None and opts.crs == "auto-utm"
    assert auto_utm((5, 45, 6, 46)) == "EPSG:32631"
    assert auto_utm((-71, -34, -70, -33)) == "EPSG:32719"


def test_polygon_aoi_is_burnt_and_clipped_in_the_tms(scenes, tmp_path):
    """A polygon AOI on EuropeanETRS89_LAEAQuad: only the tiles it touches, `clip` in EPSG:3035."""
    from rasterio.features import geometry_mask
    from shapely.geometry import mapping, shape

    from mosaic_assembler._tms import project_aoi

    poly = {"type": "Polygon", "coordinates": [[[5.6, 45.3], [6.4, 45.35], [5.9, 45.72],
                                                [5.6, 45.3]]]}  # fmt: skip
    out = tmp_path / "clip.tif"
    assemble(out, aoi=poly, zoom=8, tms="EuropeanETRS89_LAEAQuad", tilesize=256,
             mosaicjson=scenes.mosaicjson, clip=True, progress=False)  # fmt: skip
    _valid(out)
    grid = load_grid("EuropeanETRS89_LAEAQuad")
    plan = plan_tiles(AOI.from_geojson(poly), 8, 256, grid=grid)
    full = plan_tiles(AOI.from_bbox(*shape(poly).bounds), 8, 256, grid=grid)
    assert 0 < len(plan.tiles) < len(full.tiles)  # a burn, not the bbox's rectangle
    projected = project_aoi(shape(poly), grid.crs)
    with rasterio.open(out) as src:
        inside = geometry_mask([mapping(projected)], src.shape, src.transform, invert=True)
        mask = src.dataset_mask() > 0
        assert mask.any()
        assert not (mask & ~inside).any()  # nothing outside the polygon
        # every planned tile lies where the polygon is (all_touched burn)
        for tile in plan.tiles:
            r0, c0 = plan.offset(tile)
            assert inside[max(0, r0 - 1) : r0 + 257, max(0, c0 - 1) : c0 + 257].any()


def _phase(a, b, res=30.0):
    """Where a lies between pixel corners of a grid through b, in pixels, rounded."""
    return round(((a - b) / res) % 1.0, 6) % 1.0


def test_native_snap_from_items_proj_fields(tmp_path):
    """`proj:epsg` + `proj:transform` of the items decide the native grid (no header read)."""
    scene = make_scene(tmp_path / "s.tif", "EPSG:32631", (3.0, 45.0), 300, 30.0, seed=9)
    items = make_items([scene], tmp_path / "items.json", ("red",))
    doc = json.loads(items.read_text())
    with rasterio.open(scene) as src:
        t = src.transform
        bbox = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    inner = (bbox[0] + 0.01, bbox[1] + 0.01, bbox[2] - 0.01, bbox[3] - 0.01)
    common = dict(bbox=inner, crs="EPSG:32631", resolution=30.0, assets="red", progress=False)
    doc["features"][0]["properties"].update({"proj:epsg": 32631, "proj:transform": list(t)[:6]})
    items.write_text(json.dumps(doc))
    out = tmp_path / "native.tif"
    assemble(out, items=items, snap="native", **common)
    with rasterio.open(out) as o:
        assert _phase(o.transform.c, t.c) == 0 and _phase(o.transform.f, t.f) == 0
    # items saying another pixel phase (15 m off) than the header are believed, and refused
    # under `snap` native only if they disagree with each other: here the grid moves with them
    shifted = [t.a, 0.0, t.c + 15.0, 0.0, t.e, t.f]
    doc["features"][0]["properties"]["proj:transform"] = shifted
    items.write_text(json.dumps(doc))
    moved = tmp_path / "moved.tif"
    assemble(moved, items=items, **common)
    with rasterio.open(moved) as o:
        assert _phase(o.transform.c, t.c) == 0.5 and _phase(o.transform.f, t.f) == 0
    # two items on grids of different phase: native is refused, the default falls back
    other = make_scene(tmp_path / "o.tif", "EPSG:32631", (3.05, 45.0), 300, 30.0, seed=10)
    items2 = make_items([scene, other], tmp_path / "items2.json", ("red",))
    doc2 = json.loads(items2.read_text())
    with rasterio.open(other) as src:
        t2 = src.transform
    doc2["features"][0]["properties"].update({"proj:epsg": 32631, "proj:transform": list(t)[:6]})
    doc2["features"][1]["properties"].update(
        {"proj:epsg": 32631, "proj:transform": [30.0, 0.0, t2.c + 7.0, 0.0, -30.0, t2.f]}
    )
    items2.write_text(json.dumps(doc2))
    with pytest.raises(ConfigError, match="`snap` native needs every source"):
        assemble(tmp_path / "x.tif", items=items2, snap="native", **common)
    fallback = tmp_path / "fallback.tif"
    assemble(fallback, items=items2, **common)
    with rasterio.open(fallback) as o:
        assert _phase(o.transform.c, 0) == 0 and _phase(o.transform.f, 0) == 0  # at k·R


@pytest.mark.parametrize(("tms_id", "zoom"), GRIDS)
def test_fast_reads_equal_rio_tiler_on_any_tms(scenes, tms_id, zoom):
    """`_fastread.reader_tile(tms=)` (its own warp, not a fallback) == `Reader(tms=).tile`."""
    from mosaic_assembler.tilers import _fastread

    tms = morecantile.tms.get(tms_id)
    plan = plan_tiles(AOI.from_bbox(*scenes.bbox), zoom, 512, grid=load_grid(tms_id))
    fast_reads = 0
    for path in scenes.paths:
        href = str(path)
        source = _fastread._open(href, tms)
        with rasterio.open(href) as src:
            expect_fast = src.nodata is not None and src.crs != tms.rasterio_crs
        assert source.fast == expect_fast, href
        for tile in plan.tiles:
            with Reader(href, tms=tms) as r:
                try:
                    exp = r.tile(*tile, tilesize=512)
                except Exception as e:  # TileOutsideBounds
                    with pytest.raises(type(e)):
                        _fastread.reader_tile(href, *tile, tilesize=512, tms=tms)
                    continue
            got = _fastread.reader_tile(href, *tile, tilesize=512, tms=tms)
            numpy.testing.assert_array_equal(got.array.mask, exp.array.mask)
            numpy.testing.assert_array_equal(got.array.data, exp.array.data)
            fast_reads += int(source.fast)
    assert fast_reads >= 3


def test_custom_grid_resumes_and_runs_on_dask(scenes, tmp_path):
    """A custom grid's run directory is found again (same hash) and Dask gives the same COG."""
    common = dict(
        bbox=scenes.bbox, crs="EPSG:32631", resolution=90.0, mosaicjson=scenes.mosaicjson,
        pixel_selection="median", progress=False, tilesize=256, chunk_tiles=2,
    )  # fmt: skip
    run_dir = tmp_path / "run"
    first = assemble(tmp_path / "a.tif", run_dir=run_dir, keep_run_dir=True, **common)
    assert first.chunks >= 2
    again = assemble(tmp_path / "b.tif", run_dir=run_dir, keep_run_dir=True, **common)
    assert again.chunks_resumed == first.chunks
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    on_dask = assemble(tmp_path / "d.tif", dask_local=1, **common)
    assert on_dask.tiles_done == first.tiles_done
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "d.tif") as d:
        assert a.transform == d.transform and a.crs == d.crs
        numpy.testing.assert_array_equal(a.read(), d.read())
        numpy.testing.assert_array_equal(a.dataset_mask(), d.dataset_mask())


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        (dict(zoom=11), (8, 11)),
        (dict(zoom=1), (0, 1)),
        (dict(crs="EPSG:32631", resolution=30.0), (9, 12)),  # 156,543 / 256 / 30 m = 2^12.3
        (dict(crs="auto-utm", resolution=10.0), (11, 14)),
        (dict(crs="EPSG:4326", resolution=0.00025), (9, 12)),  # ~27.8 m
        (dict(crs="EPSG:3035", resolution=1.0e7), (0, 0)),  # coarser than zoom 0
    ],
)
def test_saved_mosaicjson_zooms_follow_the_grid(grid, expected):
    """--save-mosaicjson on a custom grid gets the Web Mercator zoom of its pixel size, not 0."""
    from mosaic_assembler.resolve import mosaicjson_zooms

    opts = build_options(bbox=(5, 45, 6, 46), mosaicjson="m.json", **grid)
    assert mosaicjson_zooms(opts) == expected
