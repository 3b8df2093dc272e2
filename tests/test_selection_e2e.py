"""Pixel selection through the pipeline: QA masking, latest-clear, expressions, percentiles."""

from __future__ import annotations

import json

import numpy
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate
from rio_tiler.errors import EmptyMosaicError
from rio_tiler.io import Reader
from rio_tiler.mosaic import mosaic_reader
from rio_tiler.mosaic.methods.defaults import LastBandHighMethod, MedianMethod
from test_oracle import compare_output

from mosaic_assembler import ConfigError, assemble
from mosaic_assembler.cli import cli
from mosaic_assembler.demo_data import make_demo_sample
from mosaic_assembler.grid import AOI, plan_tiles
from mosaic_assembler.selection import landsat_qa_mask
from mosaic_assembler.sources import open_stac_items

BANDS = ("blue", "green", "red", "nir08")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"))


def _items(demo):
    feats = json.loads(demo.items_path.read_text())["features"]
    for f in feats:
        for a in f["assets"].values():
            a["href"] = str((demo.items_path.parent / a["href"]).resolve())
    return feats


def _read(href, x, y, z, **kw):
    with Reader(href) as src:
        return src.tile(x, y, z, tilesize=512, **kw)


def _stack_reader(qa: bool):
    """Oracle reader: each item's bands stacked; with qa, Landsat-flagged pixels masked."""

    def reader(item, x, y, z, **kw):
        imgs = [_read(item["assets"][b]["href"], x, y, z) for b in BANDS]
        data = numpy.concatenate([i.array.data for i in imgs])
        mask = numpy.concatenate([i.array.mask for i in imgs])
        if qa:
            q = _read(item["assets"]["qa_pixel"]["href"], x, y, z, resampling_method="nearest")
            mask = mask | landsat_qa_mask(q.array.data[0])[None]
        img = imgs[0]
        img.array = numpy.ma.MaskedArray(data, mask=mask)
        return img

    return reader


def _oracle(demo, method_cls, qa=False, order=None):
    feats = _items(demo)
    src = open_stac_items(demo.items_path, BANDS)
    by_id = {f["id"]: f for f in feats}

    def oracle(tile):
        hits = [by_id[i.id] for i in src.assets_for_tile(*tile)]
        if order is not None:
            hits = order(hits)
        if not hits:
            return None
        try:
            img, _ = mosaic_reader(
                hits, _stack_reader(qa), *tile, pixel_selection=method_cls(), threads=1
            )
        except EmptyMosaicError:
            return None
        return img.array

    return oracle


def test_landsat_qa_mask_excludes_clouds_from_the_median(demo, tmp_path):
    plan = plan_tiles(AOI.from_bbox(*demo.bbox), demo.zoom, 512)
    masked, plain = tmp_path / "masked.tif", tmp_path / "plain.tif"
    common = dict(
        bbox=demo.bbox,
        zoom=demo.zoom,
        items=demo.items_path,
        assets=BANDS,
        pixel_selection="median",
        progress=False,
    )
    assemble(masked, mask_band="qa_pixel", mask_bits="landsat", **common)
    assemble(plain, **common)
    assert compare_output(masked, plan, _oracle(demo, MedianMethod, qa=True)) >= 4
    with rasterio.open(masked) as m, rasterio.open(plain) as p:
        # clouds are bright in blue: masking them lowers the bright tail
        assert numpy.percentile(m.read(1)[m.dataset_mask() > 0], 99.5) < numpy.percentile(
            p.read(1)[p.dataset_mask() > 0], 99.5
        )


def test_latest_clear_equals_a_brute_force_loop(demo, tmp_path):
    out = tmp_path / "latest.tif"
    assemble(
        out,
        bbox=demo.bbox,
        zoom=demo.zoom,
        items=demo.items_path,
        assets=BANDS,
        pixel_selection="latest-clear",
        mask_band="qa_pixel",
        progress=False,
    )
    plan = plan_tiles(AOI.from_bbox(*demo.bbox), demo.zoom, 512)
    feats = {f["id"]: f for f in _items(demo)}
    src = open_stac_items(demo.items_path, BANDS)
    reader = _stack_reader(qa=True)
    with rasterio.open(out) as o:
        for tile in plan.tiles:
            items = sorted(
                (feats[i.id] for i in src.assets_for_tile(*tile)),
                key=lambda f: f["properties"]["datetime"],
                reverse=True,
            )
            row, col = plan.offset(tile)
            win = rasterio.windows.Window(col, row, 512, 512)
            got, valid = o.read(window=win), o.dataset_mask(window=win) > 0
            expected = numpy.zeros((4, 512, 512), "uint16")
            filled = numpy.zeros((4, 512, 512), bool)
            for item in items:  # newest first: a pixel takes the first clear observation
                try:
                    a = reader(item, *tile).array
                except Exception:  # outside the item's footprint
                    continue
                take = ~a.mask & ~filled
                expected[take] = a.data[take]
                filled |= take
            numpy.testing.assert_array_equal(valid, filled.any(axis=0))
            numpy.testing.assert_array_equal(got[filled], expected[filled])


def test_expression_with_asset_names_greenest_pixel(demo, tmp_path):
    out = tmp_path / "green.tif"
    r = assemble(
        out,
        bbox=demo.bbox,
        zoom=demo.zoom,
        items=demo.items_path,
        expression="red,green,blue,(nir08-red)/(nir08+red)",
        pixel_selection="lastbandhigh",
        progress=False,
    )
    assert r.count == 3 and r.dtype == "uint16"  # pass-through bands keep the source dtype
    feats = {f["id"]: f for f in _items(demo)}
    src = open_stac_items(demo.items_path, ("red", "green", "blue", "nir08"))
    plan = plan_tiles(AOI.from_bbox(*demo.bbox), demo.zoom, 512)

    def reader(item, x, y, z, **kw):
        imgs = [
            _read(item["assets"][b]["href"], x, y, z) for b in ("red", "green", "blue", "nir08")
        ]
        from rio_tiler.models import ImageData

        img = ImageData.create_from_list(imgs)
        img.band_names = ["b1", "b2", "b3", "b4"]
        return img.apply_expression("b1;b2;b3;(b4-b1)/(b4+b1)")

    def oracle(tile):
        hits = [feats[i.id] for i in src.assets_for_tile(*tile)]
        if not hits:
            return None
        img, _ = mosaic_reader(hits, reader, *tile, pixel_selection=LastBandHighMethod(), threads=1)
        return img.array.astype("uint16")

    assert compare_output(out, plan, oracle) >= 4


def test_p50_equals_median_on_integers_and_other_methods_run(demo, tmp_path):
    common = dict(
        bbox=demo.bbox, zoom=demo.zoom, items=demo.items_path, assets=BANDS, progress=False
    )
    assemble(tmp_path / "median.tif", pixel_selection="median", **common)
    assemble(tmp_path / "p50.tif", pixel_selection="p50", **common)
    with rasterio.open(tmp_path / "median.tif") as a, rasterio.open(tmp_path / "p50.tif") as b:
        m = a.dataset_mask() > 0
        numpy.testing.assert_array_equal(m, b.dataset_mask() > 0)
        numpy.testing.assert_array_equal(a.read()[:, m], b.read()[:, m])
    for method in ("p10", "p90", "geomedian"):
        r = assemble(tmp_path / f"{method}.tif", pixel_selection=method, **common)
        assert r.tiles_done > 0 and cog_validate(str(r.path), quiet=True)[0]
    with rasterio.open(tmp_path / "p10.tif") as lo, rasterio.open(tmp_path / "p90.tif") as hi:
        m = lo.dataset_mask() > 0
        assert (lo.read()[:, m] <= hi.read()[:, m]).all()


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(pixel_selection="p0"), "unknown pixel selection 'p0'"),
        (dict(pixel_selection="latest-clear", mosaicjson="x"), "latest-clear needs STAC items"),
        (dict(mask_band="qa_pixel", mask_bits="landsat:clouds"), "invalid QA mask"),
        (dict(mask_band="qa_pixel", mask_bits="modis"), "unknown mask kind"),
        (dict(mask_bits="landsat"), "need `mask_band`"),
        (dict(mask_band="qa_pixel", mask_expression="__import__('os')"), "invalid QA mask"),
    ],
)
def test_bad_selection_options(demo, tmp_path, kwargs, msg):
    kw = dict(
        bbox=demo.bbox, zoom=demo.zoom, items=str(demo.items_path), assets=BANDS, progress=False
    )
    if "mosaicjson" in kwargs:
        kw.pop("items")
        kw.pop("assets")
    kw.update(kwargs)
    with pytest.raises(ConfigError, match=msg):
        assemble(tmp_path / "o.tif", **kw)


def test_cli_mask_expression_and_percentile(demo, tmp_path):
    out = tmp_path / "o.tif"
    r = CliRunner().invoke(
        cli,
        [
            "--bbox",
            *map(str, demo.bbox),
            "--zoom",
            str(demo.zoom),
            "--items",
            str(demo.items_path),
            "--assets",
            "red,green,blue",
            "--mask-band",
            "qa_pixel",
            "--mask-expression",
            "(qa & 0b11011) > 0",
            "--pixel-selection",
            "p25",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    assert cog_validate(str(out), quiet=True)[0]


def test_visual_output_rescale_and_color_ops(demo, tmp_path):
    from rio_color.operations import parse_operations

    common = dict(
        bbox=demo.bbox,
        zoom=demo.zoom,
        items=demo.items_path,
        assets=("red", "green", "blue"),
        pixel_selection="median",
        progress=False,
    )
    analytic, visual = tmp_path / "a.tif", tmp_path / "v.tif"
    assemble(analytic, **common)
    ops = "gamma RGB 1.5, saturation 1.2"
    r = assemble(visual, rescale="7000,20000", color_ops=ops, cog_profile="webp", **common)
    assert r.dtype == "uint8" and r.count == 3
    assert cog_validate(str(visual), quiet=True)[0]
    # the same post-step applied to the analytic output by hand (webp is lossy: compare a
    # lossless run too)
    lossless = tmp_path / "l.tif"
    assemble(lossless, rescale="7000,20000", color_ops=ops, **common)
    with rasterio.open(analytic) as a, rasterio.open(lossless) as v:
        m = a.dataset_mask() > 0
        numpy.testing.assert_array_equal(m, v.dataset_mask() > 0)
        x = numpy.clip((a.read().astype("float64") - 7000) / 13000, 0, 1)
        for op in parse_operations(ops):
            x = op(x)
        expected = numpy.clip(numpy.rint(x * 255), 0, 255).astype("uint8")
        numpy.testing.assert_array_equal(v.read()[:, m], expected[:, m])
    with pytest.raises(ConfigError, match="RGB"):
        assemble(
            tmp_path / "x.tif",
            rescale="7000,20000",
            color_ops=ops,
            **{**common, "assets": ("red", "green")},
        )
    with pytest.raises(ConfigError, match="MIN,MAX"):
        assemble(tmp_path / "y.tif", rescale="7000", **common)
