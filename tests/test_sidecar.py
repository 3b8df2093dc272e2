"""The STAC Item beside every output (OUT.json), the split collection, and the manifest.

Validated with pystac's core schemas (they ship with it: offline); the Item's grid is
compared with the COG's own; secrets planted in a header and a URL must appear nowhere.
"""

from __future__ import annotations

import json

import pytest
import rasterio
from click.testing import CliRunner
from servers import FaultProxy

from mosaic_assembler import __version__, assemble
from mosaic_assembler.cli import cli
from mosaic_assembler.demo_data import make_demo_sample
from mosaic_assembler.grid import AOI, plan_tiles
from mosaic_assembler.sidecar import MAX_IDS, items_summary, redact_command
from mosaic_assembler.sources import open_mosaicjson, open_stac_items
from mosaic_assembler.state import read_manifest

BANDS = ("blue", "green", "red", "nir08")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"))


def _validate(doc):
    import pystac
    from pystac.validation import validate_dict

    # the core schema, which pystac ships; the extensions' schemas would be fetched online
    # (tests reach nothing beyond 127.0.0.1), so their fields are checked by the tests
    validate_dict(doc, extensions=[])
    return (pystac.Item if doc["type"] == "Feature" else pystac.Collection).from_dict(doc)


def test_sidecar_describes_the_cog_and_its_inputs(demo, tmp_path):
    out = tmp_path / "first.tif"
    res = CliRunner().invoke(cli, [
        "--bbox", *map(str, demo.bbox), "--zoom", str(demo.zoom), "--items",
        str(demo.items_path), "--assets", ",".join(BANDS), "--pixel-selection", "first",
        "--group-by", "solar_day", "--provenance", "date", "--provenance", "count", str(out),
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "first.json").read_text())
    item = _validate(doc)
    props = doc["properties"]
    with rasterio.open(out) as src:
        epsg = src.crs.to_epsg()
        assert props["proj:code"] == f"EPSG:{epsg}"
        assert props["proj:shape"] == [src.height, src.width]
        assert props["proj:transform"] == list(src.transform)[:6]
        assert props["proj:bbox"] == list(src.bounds)
        bands = doc["assets"]["data"]["raster:bands"]
        assert [b["data_type"] for b in bands] == list(src.dtypes)
    feats = json.loads(demo.items_path.read_text())["features"]
    plan = plan_tiles(AOI.from_bbox(*demo.bbox), demo.zoom, 512)
    src_items = open_stac_items(demo.items_path, BANDS)
    used = sorted({i.id for t in plan.tiles for i in src_items.assets_for_tile(*t)})
    assert props["mosaic:items"] == used and props["mosaic:items_count"] == len(used)
    times = sorted(f["properties"]["datetime"] for f in feats if f["id"] in used)
    assert props["start_datetime"] == times[0] and props["end_datetime"] == times[-1]
    assert props["datetime"] is None and item.datetime is None
    assert props["mosaic:method"] == "first" and props["mosaic:group_by"] == "solar_day"
    assert props["mosaic:grid"]["zoom"] == demo.zoom
    assert props["processing:software"] == {"mosaic-assembler": __version__}
    assert props["mosaic:command"][:2] == ["assemble-mosaic", "assemble"]
    assert "--provenance" in props["mosaic:command"]
    assert doc["assets"]["data"]["href"] == "./first.tif"
    for kind in ("count", "date"):
        href = doc["assets"][kind]["href"]
        assert href == f"./first.{kind}.tif" and (tmp_path / href).exists()


def test_split_items_and_their_collection(demo, tmp_path):
    out = tmp_path / "split"
    r = assemble(out, bbox=demo.bbox, zoom=demo.zoom, items=demo.items_path, assets=BANDS,
                 split_zoom=9, progress=False)  # fmt: skip
    src_items = open_stac_items(demo.items_path, BANDS)
    coll = json.loads((out / "collection.json").read_text())
    _validate(coll)
    assert len([link for link in coll["links"] if link["rel"] == "item"]) == len(r.outputs)
    for cog in r.outputs:
        doc = json.loads(cog.with_suffix(".json").read_text())
        _validate(doc)
        with rasterio.open(cog) as src:
            assert doc["properties"]["proj:shape"] == [src.height, src.width]
            left, bottom, right, top = src.bounds
        # the items of the split's own tiles
        plan = plan_tiles(AOI.from_bbox(*demo.bbox), demo.zoom, 512)
        ids = set()
        for t in plan.tiles:
            row, col = plan.offset(t)
            x, y = plan.transform * (col + 1, row + 1)
            if left < x < right and bottom < y < top:
                ids |= {i.id for i in src_items.assets_for_tile(*t)}
        assert doc["properties"]["mosaic:items"] == sorted(ids)


def test_many_items_are_counted_and_hashed():
    class Asset:
        def __init__(self, n):
            self.id, self.datetime = f"item-{n:05d}", f"2024-01-{n % 28 + 1:02d}T00:00:00Z"

    small = items_summary([Asset(n) for n in range(MAX_IDS)])
    assert len(small["mosaic:items"]) == MAX_IDS
    big = items_summary([Asset(n) for n in range(MAX_IDS + 1)])
    again = items_summary([Asset(n) for n in reversed(range(MAX_IDS + 1))])
    assert "mosaic:items" not in big and big["mosaic:items_count"] == MAX_IDS + 1
    assert big["mosaic:items_sha256"] == again["mosaic:items_sha256"]
    assert big["start_datetime"].startswith("2024-01-01") and big["end_datetime"][:10] == (
        "2024-01-28"
    )


def test_redact_command():
    argv = ["assemble-mosaic", "--header", "Authorization=Bearer abc123xyz", "--header=X-Key=k3y",
            "--tiler-param", "token=t0ken", "--tiler-param", "rescale=0,1",
            "--tiler", "http://h/{z}/{x}/{y}.tif?url=a&signature=s1gn"]  # fmt: skip
    out = redact_command(argv, [("Authorization", "Bearer abc123xyz")])
    text = " ".join(out)
    for secret in ("abc123xyz", "k3y", "t0ken", "s1gn"):
        assert secret not in text
    assert "Authorization=***" in out and "rescale=0,1" in out and "url=a" in text


def test_tiler_run_manifest_and_sidecar_keep_no_secret(demo, scenes, titiler, tmp_path):
    proxy = FaultProxy(titiler.url, seed=3, rate=0.5, delay=0.05)
    try:
        template = (
            f"{proxy.url}/mosaicjson/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.tif"
            f"?url={scenes.mosaicjson}&access_token=url-secret-456"
        )
        out, run_dir = tmp_path / "t.tif", tmp_path / "run"
        res = CliRunner().invoke(cli, [
            "--bbox", *map(str, scenes.bbox), "--zoom", str(scenes.zoom), "--mosaicjson",
            str(scenes.mosaicjson), "--tiler", template, "--header",
            "Authorization=Bearer header-secret-123", "--retries", "10",
            "--timeout", "30", "--run-dir", str(run_dir), "--keep-run-dir", "--chunk-tiles", "1",
            "-v", str(out),
        ])  # fmt: skip
        assert res.exit_code == 0, res.output
    finally:
        proxy.stop()
    texts = [
        res.output,
        (tmp_path / "t.json").read_text(),
        (run_dir / "manifest.jsonl").read_text(),
    ]
    for text in texts:
        assert "header-secret-123" not in text and "url-secret-456" not in text
    doc = json.loads(texts[1])
    _validate(doc)
    assert "Authorization=***" in doc["properties"]["mosaic:command"]
    # the manifest: per chunk, the items (here asset hrefs) the index gives its tiles
    index = open_mosaicjson(scenes.mosaicjson)
    ends = {e["chunk"]: e for e in read_manifest(run_dir) if e["event"] == "end"}
    plan = plan_tiles(AOI.from_bbox(*scenes.bbox), scenes.zoom, 512)
    assert ends
    retried = []
    for key, e in ends.items():
        row, col = (int(v[1:]) for v in key.split("-"))
        tiles = [t for t in plan.tiles if plan.offset(t) == (row * 512, col * 512)]
        assert e["items"] == sorted({str(a) for t in tiles for a in index.assets_for_tile(*t)})
        retried += [tuple(t) for t in e["retried"]]
        assert all(t[0] == plan.zoom for t in e["retried"])
    assert retried, proxy.counts  # half the requests failed once: some tiles were retried
    assert sum(v for k, v in proxy.counts.items() if k != "ok") >= len(retried)
