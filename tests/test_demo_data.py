"""Tests for mosaic_assembler.demo_data (synthetic multi-date Landsat-like sample)."""

from __future__ import annotations

import json
from pathlib import Path

import mercantile
import numpy
import pytest
import rasterio
from rasterio.features import geometry_mask
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_geom
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import LineString, box, shape
from shapely.ops import unary_union

from mosaic_assembler.demo_data import (
    LANDSAT_OFFSET,
    LANDSAT_SCALE,
    QA_CLEAR,
    QA_CLOUD,
    QA_CLOUD_SHADOW,
    QA_DILATED_CLOUD,
    QA_FILL,
    QA_WATER,
    DemoSample,
    make_demo_sample,
)

DATA_ASSETS = ("blue", "green", "red", "nir08")


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> DemoSample:
    return make_demo_sample(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def items(sample: DemoSample) -> list[dict]:
    return json.loads(sample.items_path.read_text())["features"]


def _href(sample: DemoSample, item: dict, asset: str) -> Path:
    return (sample.items_path.parent / item["assets"][asset]["href"]).resolve()


def _read(path: Path) -> numpy.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def _qa_and_stack(sample: DemoSample, item: dict) -> tuple[numpy.ndarray, numpy.ndarray]:
    return _read(_href(sample, item, "qa_pixel"))[0], _read(_href(sample, item, "stack"))


def _clear(qa: numpy.ndarray) -> numpy.ndarray:
    bad = QA_FILL | QA_DILATED_CLOUD | QA_CLOUD | QA_CLOUD_SHADOW
    return ((qa & QA_CLEAR) != 0) & ((qa & bad) == 0)


# ----------------------------------------------------------------------------- structure


def test_sample_fields(sample: DemoSample) -> None:
    assert sample.root.is_dir() and sample.root.is_absolute()
    assert sample.items_path == sample.root / "items.json" and sample.items_path.is_file()
    assert sample.mosaicjson_path == sample.root / "mosaic.json"
    assert sample.mosaicjson_path.is_file()
    assert len(sample.scene_paths) == 6
    assert all(p.is_file() and p.name.endswith("_stack.tif") for p in sample.scene_paths)
    assert sample.zoom == 10  # 512-px tile at z10 ~ 54 m at 45.5°N, closest to 60 m
    w, s, e, n = sample.bbox
    assert w < 6.0 < e and s < n
    n_tiles = len(list(mercantile.tiles(w, s, e, n, sample.zoom)))
    assert 6 <= n_tiles <= 20


def test_scene_directory_layout(sample: DemoSample, items: list[dict]) -> None:
    for item in items:
        sid = item["id"]
        names = sorted(p.name for p in (sample.root / sid).iterdir())
        assert names == sorted(
            f"{sid}_{s}"
            for s in (
                "SR_B2.TIF",
                "SR_B3.TIF",
                "SR_B4.TIF",
                "SR_B5.TIF",
                "QA_PIXEL.TIF",
                "stack.tif",
            )
        )


def test_every_file_is_a_valid_cog(sample: DemoSample) -> None:
    tifs = sorted(sample.root.glob("*/*.[tT][iI][fF]"))
    assert len(tifs) == 6 * 6
    for path in tifs:
        is_valid, errors, warnings = cog_validate(path, quiet=True)
        assert is_valid and not errors, (path, errors)
        assert not warnings, (path, warnings)
        with rasterio.open(path) as src:
            assert src.profile["compress"] == "deflate"
            assert src.block_shapes[0] in ((256, 256), (512, 512))
            assert src.overviews(1), f"{path} has no internal overview"
            assert src.dtypes[0] == "uint16"


def test_band_files_and_nodata(sample: DemoSample, items: list[dict]) -> None:
    item = items[0]
    stack_path = _href(sample, item, "stack")
    with rasterio.open(stack_path) as src:
        assert src.count == 4
        assert src.nodatavals == (0, 0, 0, 0)
        assert src.descriptions == DATA_ASSETS
        stack = src.read()
    for i, name in enumerate(DATA_ASSETS):
        with rasterio.open(_href(sample, item, name)) as src:
            assert src.count == 1 and src.nodata == 0
            numpy.testing.assert_array_equal(src.read(1), stack[i])
    with rasterio.open(_href(sample, item, "qa_pixel")) as src:
        assert src.count == 1 and src.nodata is None  # like real C2 QA_PIXEL


# ----------------------------------------------------------------------------- scenes & STAC


def test_crs_and_dates(sample: DemoSample, items: list[dict]) -> None:
    assert len(items) >= 6
    crss = set()
    for item, stack in zip(items, sample.scene_paths, strict=True):
        with rasterio.open(stack) as src:
            assert src.crs.to_epsg() == item["properties"]["proj:epsg"]
            assert item["properties"]["proj:code"] == f"EPSG:{src.crs.to_epsg()}"
            assert list(src.transform)[:6] == item["properties"]["proj:transform"]
            crss.add(src.crs.to_epsg())
    assert crss == {32631, 32632}
    dates = {item["properties"]["datetime"][:10] for item in items}
    assert len(dates) >= 3
    assert all("T10:" in item["properties"]["datetime"] for item in items)
    assert len({item["properties"]["datetime"] for item in items}) == len(items)


def test_items_load_with_pystac_and_hrefs_resolve(sample: DemoSample, items: list[dict]) -> None:
    pystac = pytest.importorskip("pystac")
    collection = pystac.ItemCollection.from_dict(json.loads(sample.items_path.read_text()))
    assert [it.id for it in collection] == [it["id"] for it in items]
    for item in collection:
        assert item.properties["platform"] == "landsat-8"
        assert set(item.assets) == {*DATA_ASSETS, "qa_pixel", "stack"}
        for key, asset in item.assets.items():
            assert asset.href.startswith("./"), asset.href
            assert (sample.root / asset.href).is_file(), asset.href
            assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert ("cloud" if key == "qa_pixel" else "data") in (asset.roles or [])
    stacks = [_href(sample, it, "stack") for it in items]
    assert stacks == [p.resolve() for p in sample.scene_paths]


def test_footprints_overlap_and_cross_the_zone_line(sample: DemoSample, items: list[dict]) -> None:
    shapes = [shape(it["geometry"]) for it in items]
    for it, geom in zip(items, shapes, strict=True):
        assert geom.is_valid and geom.exterior.is_ccw
        numpy.testing.assert_allclose(it["bbox"], geom.bounds, atol=1e-9)
    meridian = LineString([(6.0, -90), (6.0, 90)])
    crossing = [g for g in shapes if g.intersects(meridian)]
    assert len(crossing) >= 2
    # scenes of different zones overlap, and the overlap straddles 6°E
    epsg = [it["properties"]["proj:epsg"] for it in items]
    west = unary_union([g for g, code in zip(shapes, epsg, strict=True) if code == 32631])
    east = unary_union([g for g, code in zip(shapes, epsg, strict=True) if code == 32632])
    overlap = west.intersection(east)
    assert overlap.area > 0 and overlap.intersects(meridian)
    # every scene overlaps at least one scene of another date
    for i, gi in enumerate(shapes):
        others = [
            gj
            for j, gj in enumerate(shapes)
            if items[j]["properties"]["datetime"][:10] != items[i]["properties"]["datetime"][:10]
        ]
        assert any(gi.intersection(gj).area > 0.05 * gi.area for gj in others)
    union = unary_union(shapes)
    assert union.contains(box(*sample.bbox))


def test_geometry_is_the_valid_footprint(sample: DemoSample, items: list[dict]) -> None:
    for item in items:
        qa = _read(_href(sample, item, "qa_pixel"))[0]
        with rasterio.open(_href(sample, item, "stack")) as src:
            geom = transform_geom("EPSG:4326", src.crs, item["geometry"])
            inside = ~geometry_mask([geom], out_shape=src.shape, transform=src.transform)
        valid = qa != QA_FILL
        assert 0.5 < valid.mean() < 0.9  # a tilted footprint, not the whole raster
        assert (inside == valid).mean() > 0.995


def test_nodata_collar(sample: DemoSample, items: list[dict]) -> None:
    for item in items:
        qa, stack = _qa_and_stack(sample, item)
        for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
            assert (stack[:, r, c] == 0).all()
            assert qa[r, c] == 1
        fill = qa == 1
        assert (stack[:, fill] == 0).all()
        assert (stack[:, ~fill] > 0).all()
        h, w = qa.shape
        assert not fill[h // 2, w // 2]


def test_reflectance_range_and_cloud_cover(sample: DemoSample, items: list[dict]) -> None:
    cloudy = clear = 0
    for item in items:
        qa, stack = _qa_and_stack(sample, item)
        valid = qa != QA_FILL
        land = _clear(qa) & ((qa & QA_WATER) == 0)
        lo, hi = numpy.percentile(stack[:, land], [1, 99])
        assert 7000 <= lo and hi <= 30000
        refl = stack[:, land].astype(float) * LANDSAT_SCALE + LANDSAT_OFFSET
        assert 0.0 <= refl.mean() <= 0.35
        cover = 100.0 * ((qa & QA_CLOUD) != 0)[valid].mean()
        assert item["properties"]["eo:cloud_cover"] == pytest.approx(cover, abs=0.01)
        cloudy += cover > 0.5
        clear += cover == 0
    assert cloudy >= 1 and clear >= 1


def test_qa_bits_match_pixels(sample: DemoSample, items: list[dict]) -> None:
    seen_cloud = False
    for item in items:
        qa, stack = _qa_and_stack(sample, item)
        blue, nir = stack[0].astype(float), stack[3].astype(float)
        clear = _clear(qa)
        land = clear & ((qa & QA_WATER) == 0)
        water = clear & ((qa & QA_WATER) != 0)
        assert set(numpy.unique(qa)) <= {1, 21762, 21824, 21952, 22280, 23888}
        if water.any():
            assert nir[water].mean() < 0.5 * nir[land].mean()
        cloud = (qa & QA_CLOUD) != 0
        if cloud.sum() > 100:
            seen_cloud = True
            assert blue[cloud].mean() > blue[clear].mean() + 5000  # ~ +0.14 reflectance
            assert ((qa[cloud] & QA_CLEAR) == 0).all()
            shadow = ((qa & QA_CLOUD_SHADOW) != 0) & ~cloud
            if shadow.sum() > 100:
                assert nir[shadow].mean() < nir[land].mean()
    assert seen_cloud


def test_landscape_is_geographic_across_crs(sample: DemoSample, items: list[dict]) -> None:
    """Same date, two UTM zones: co-located clear pixels must agree."""
    first_date = items[0]["properties"]["datetime"][:10]
    pair = [it for it in items if it["properties"]["datetime"][:10] == first_date]
    assert len(pair) == 2
    assert pair[0]["properties"]["proj:epsg"] != pair[1]["properties"]["proj:epsg"]
    overlap = shape(pair[0]["geometry"]).intersection(shape(pair[1]["geometry"]))
    w, s, e, n = overlap.bounds
    rng = numpy.random.default_rng(1)
    lons = rng.uniform(w, e, 4000)
    lats = rng.uniform(s, n, 4000)
    values, masks = [], []
    for item in pair:
        with rasterio.open(_href(sample, item, "stack")) as src:
            xs, ys = warp_transform("EPSG:4326", src.crs, lons, lats)
            rows, cols = rasterio.transform.rowcol(src.transform, xs, ys)
            rows, cols = numpy.asarray(rows), numpy.asarray(cols)
            qa = _read(_href(sample, item, "qa_pixel"))[0]
            stack = src.read()
        inside = (rows >= 0) & (rows < qa.shape[0]) & (cols >= 0) & (cols < qa.shape[1])
        rows, cols = rows.clip(0, qa.shape[0] - 1), cols.clip(0, qa.shape[1] - 1)
        masks.append(inside & _clear(qa[rows, cols]))
        values.append(stack[:, rows, cols].astype(float))
    ok = masks[0] & masks[1]
    assert ok.sum() > 500
    for band in range(4):
        r = numpy.corrcoef(values[0][band, ok], values[1][band, ok])[0, 1]
        assert r > 0.6, (DATA_ASSETS[band], r)


# ----------------------------------------------------------------------------- mosaicJSON


def test_mosaicjson(sample: DemoSample, items: list[dict]) -> None:
    from cogeo_mosaic.backends import MosaicBackend
    from cogeo_mosaic.mosaic import MosaicJSON

    mosaic = MosaicJSON(**json.loads(sample.mosaicjson_path.read_text()))
    assert mosaic.maxzoom == sample.zoom and mosaic.minzoom <= mosaic.maxzoom
    order = {str(p): i for i, p in enumerate(sample.scene_paths)}
    assert all(Path(p).is_absolute() for p in order)
    used = set()
    for assets in mosaic.tiles.values():
        assert assets and set(assets) <= set(order)
        ranks = [order[a] for a in assets]
        assert ranks == sorted(ranks), "assets must follow the items order"
        used.update(assets)
    assert used == set(order)

    tiles = list(mercantile.tiles(*sample.bbox, sample.zoom))
    with MosaicBackend(str(sample.mosaicjson_path)) as backend:
        counts = []
        for t in tiles:
            assets = backend.assets_for_tile(t.x, t.y, t.z)
            assert assets and set(assets) <= set(order)
            assert [order[a] for a in assets] == sorted(order[a] for a in assets)
            counts.append(len(assets))
        assert max(counts) >= 3  # several dates over the same tile
        centre = mercantile.tile(6.0, (sample.bbox[1] + sample.bbox[3]) / 2, sample.zoom)
        img, used_assets = backend.tile(centre.x, centre.y, centre.z, tilesize=512)
        assert img.count == 4 and used_assets
        assert img.mask.any()


# ----------------------------------------------------------------------------- determinism


def _all_pixels(root: Path) -> dict[str, numpy.ndarray]:
    return {str(p.relative_to(root)): _read(p) for p in sorted(root.glob("*/*.[tT][iI][fF]"))}


def test_same_seed_same_pixels(sample: DemoSample, tmp_path: Path) -> None:
    again = make_demo_sample(tmp_path / "again")
    first, second = _all_pixels(sample.root), _all_pixels(again.root)
    assert first.keys() == second.keys()
    for key in first:
        numpy.testing.assert_array_equal(first[key], second[key], err_msg=key)
    assert again.items_path.read_bytes() == sample.items_path.read_bytes()
    assert again.bbox == sample.bbox and again.zoom == sample.zoom


def test_other_seed_other_pixels_and_small_sample(tmp_path: Path) -> None:
    a = make_demo_sample(tmp_path / "a", seed=1, n_scenes=3, size=128, resolution=240.0)
    b = make_demo_sample(tmp_path / "b", seed=2, n_scenes=3, size=128, resolution=240.0)
    assert len(a.scene_paths) == 3
    assert a.zoom == 8  # 512-px tile at z8 ~ 214 m at 45.5°N
    assert not numpy.array_equal(_read(a.scene_paths[0]), _read(b.scene_paths[0]))
    feats = json.loads(a.items_path.read_text())["features"]
    assert len({f["properties"]["datetime"][:10] for f in feats}) == 2
    assert unary_union([shape(f["geometry"]) for f in feats]).contains(box(*a.bbox))
    assert a.bbox[0] < 6.0 < a.bbox[2]


@pytest.mark.parametrize("kwargs", [{"n_scenes": 1}, {"size": 16}, {"resolution": 0.0}])
def test_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        make_demo_sample(tmp_path, **kwargs)


def test_public_names_are_importable_from_demo_data() -> None:
    # the generator lives in private modules (_demo_layout, _demo_landscape, _demo_stac);
    # demo_data stays the one place callers import from
    import mosaic_assembler.demo_data as demo_data

    missing = [name for name in demo_data.__all__ if not hasattr(demo_data, name)]
    assert missing == []
    assert demo_data.BAND_NAMES == DATA_ASSETS
    assert demo_data.suggested_zoom(240.0, 45.46) == 8
