"""`batch`: one COG per feature, equal to its own `assemble`; ledger, resume, index, inputs.

The features are polygons over the demo sample: six cells of its bbox (one a triangle, one a
pentagon, to exercise --clip), one far away (no asset: empty) and one beyond Web Mercator's
latitudes (fails), plus a duplicate id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
import rasterio
from click.testing import CliRunner
from s3_fixtures import FAKE_KEY_ID, FAKE_SECRET
from shapely.geometry import Polygon, box, mapping, shape

from mosaic_assembler import assemble
from mosaic_assembler._features import read_features, sanitise_id, unique_ids
from mosaic_assembler.batch import assemble_batch
from mosaic_assembler.cli import cli
from mosaic_assembler.demo_data import make_demo_sample
from mosaic_assembler.ledger import last_by, read_lines

ZOOM, TILESIZE = 11, 256


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"), n_scenes=4, size=256, resolution=120.0)


def _options(demo, **extra):
    return dict(
        zoom=ZOOM, tilesize=TILESIZE, items=str(demo.items_path), assets="red,green,blue",
        pixel_selection="median", chunk_tiles=1, **extra,
    )  # fmt: skip


def _cli_options(demo, *extra):
    return [
        "--zoom", str(ZOOM), "--tilesize", str(TILESIZE), "--items", str(demo.items_path),
        "--assets", "red,green,blue", "--pixel-selection", "median", "--chunk-tiles", "1",
        *extra,
    ]  # fmt: skip


def _polygons(demo) -> list[tuple[str, dict]]:
    """(name, lon/lat geometry): 6 cells of the demo bbox, then empty, failing, duplicate."""
    w, s, e, n = demo.bbox
    dx, dy = (e - w) / 3, (n - s) / 2
    out = []
    for i in range(3):
        for j in range(2):
            x0, y0 = w + i * dx, s + j * dy
            cell = box(x0, y0, x0 + dx, y0 + dy)
            if len(out) == 1:  # a triangle
                cell = Polygon([(x0, y0), (x0 + dx, y0), (x0 + dx / 2, y0 + dy)])
            elif len(out) == 4:  # a pentagon
                cell = Polygon(
                    [(x0, y0 + dy / 2), (x0 + dx / 2, y0), (x0 + dx, y0 + dy / 3),
                     (x0 + dx * 0.8, y0 + dy), (x0 + dx * 0.1, y0 + dy * 0.9)]
                )  # fmt: skip
            out.append((f"cell {len(out) + 1}/a", mapping(cell)))
    out.append(("far away", mapping(box(20.0, 45.0, 20.1, 45.1))))
    out.append(("pole", mapping(box(10.0, 86.0, 11.0, 87.0))))
    out.append(("cell 1/a", mapping(box(w, s, w + dx / 3, s + dy / 3))))  # a duplicate id
    return [(name, json.loads(json.dumps(g))) for name, g in out]


def _write_geojson(path: Path, polygons) -> Path:
    features = [
        {"type": "Feature", "properties": {"name": name, "n": k}, "geometry": g}
        for k, (name, g) in enumerate(polygons)
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


#: The sanitised, unique ids of `_polygons`, in order.
IDS = ["cell_1_a", "cell_2_a", "cell_3_a", "cell_4_a", "cell_5_a", "cell_6_a", "far_away", "pole",
       "cell_1_a_2"]  # fmt: skip
DONE = [i for i in IDS if i not in ("far_away", "pole")]


@pytest.fixture(scope="module")
def features(demo, tmp_path_factory) -> Path:
    return _write_geojson(tmp_path_factory.mktemp("features") / "f.geojson", _polygons(demo))


@pytest.fixture(scope="module")
def batch(demo, features, tmp_path_factory):
    """One batch of every feature, clipped (Python API), with the progress it reported."""
    out = tmp_path_factory.mktemp("batch") / "out"
    seen = []
    result = assemble_batch(
        features, out, id_field="name", clip=True, progress=seen.append, **_options(demo)
    )
    return result, out, seen


def _same_cog(a: Path, b: Path) -> None:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert (x.crs, x.transform, x.shape, x.count, x.dtypes) == (
            y.crs, y.transform, y.shape, y.count, y.dtypes,
        )  # fmt: skip
        assert numpy.array_equal(x.read(), y.read())
        assert numpy.array_equal(x.read_masks(), y.read_masks())


def test_each_cog_equals_the_single_assemble_of_its_feature(batch, demo, tmp_path):
    result, out, _ = batch
    assert [f.id for f in result.done] == DONE
    for (_, geom), fid in zip(_polygons(demo), IDS, strict=True):
        if fid not in DONE:
            continue
        ref = tmp_path / f"{fid}.tif"
        assemble(ref, aoi=geom, clip=True, progress=False, **_options(demo))
        _same_cog(out / f"{fid}.tif", ref)
    assert not (out / ".runs").exists()  # every run directory was cleaned up
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{i}.tif" for i in DONE]
        + [f"{i}.json" for i in DONE]  # each COG's STAC Item (sidecar)
        + ["ledger.jsonl", "index.json", "mosaic.json"]
    )


def test_empty_and_failed_features_do_not_stop_the_others(batch):
    result, out, seen = batch
    last = last_by(read_lines(out / "ledger.jsonl"), "feature")
    assert {k: e["event"] for k, e in last.items()} == {
        **{i: "done" for i in DONE}, "far_away": "empty", "pole": "failed",
    }  # fmt: skip
    assert [f.id for f in result.empty] == ["far_away"]
    assert [f.id for f in result.failed] == ["pole"]
    assert "no tile" in result.failed[0].message and last["pole"]["message"]
    assert last["cell_1_a_2"]["value"] == "cell 1/a"
    assert seen[-1].total == len(IDS) and seen[-1].done == len(DONE)
    assert (seen[-1].empty, seen[-1].failed, seen[-1].skipped) == (1, 1, 0)


def test_index_is_a_valid_stac_item_collection_of_the_cogs(batch, demo):
    import pystac
    from pystac.extensions.projection import ProjectionExtension
    from pystac.validation import validate_dict

    _, out, _ = batch
    doc = json.loads((out / "index.json").read_text())
    items = pystac.ItemCollection.from_dict(doc)
    assert [i.id for i in items] == DONE
    geoms = dict(zip(IDS, (g for _, g in _polygons(demo)), strict=True))
    for item in items:
        # the core schemas ship with pystac; the projection extension's would be fetched
        # online (tests reach nothing beyond 127.0.0.1): its fields are checked below
        validate_dict(item.to_dict(), extensions=[])
        assert shape(item.geometry).equals_exact(shape(geoms[item.id]), 1e-12)
        href = item.assets["data"].get_absolute_href() or item.assets["data"].href
        cog = out / Path(href).name
        assert item.assets["data"].href == f"./{item.id}.tif" and cog.exists()
        proj = ProjectionExtension.ext(item)
        with rasterio.open(cog) as src:
            assert proj.code == "EPSG:3857" and src.crs.to_epsg() == 3857
            assert tuple(proj.shape or ()) == src.shape
            assert numpy.allclose(proj.transform or (), list(src.transform)[:6])
    mosaic = json.loads((out / "mosaic.json").read_text())
    listed = {Path(p).name for paths in mosaic["tiles"].values() for p in paths}
    assert listed == {f"{i}.tif" for i in DONE} and mosaic["maxzoom"] == ZOOM


def _cli_batch(features, out, demo, *extra):
    return [
        sys.executable, "-m", "mosaic_assembler.cli", "batch", str(features), str(out),
        "--id-field", "name", "--clip", "--feature-workers", "1", "--concurrency", "1",
        *_cli_options(demo, *extra),
    ]  # fmt: skip


def test_sigkill_mid_batch_then_rerun_recomputes_no_finished_feature(
    batch, features, demo, tmp_path
):
    _, reference, _ = batch
    out = tmp_path / "out"
    ledger = out / "ledger.jsonl"

    def finished():
        entries = read_lines(ledger) if ledger.exists() else []
        return {e["feature"] for e in entries if e.get("event") in ("done", "empty")}

    proc = subprocess.Popen(
        _cli_batch(features, out, demo, "-q"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not finished() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the batch ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = finished()
    assert before and set(IDS) - before, "kill mid-batch: some finished, some not"
    stats = {i: os.stat(out / f"{i}.tif") for i in before if i in DONE}

    r = subprocess.run(_cli_batch(features, out, demo), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # `pole` fails
    lines = r.stderr.strip().splitlines()
    assert any(line.startswith("failed: pole: ") for line in lines)
    assert lines[-1].startswith("Error: 1 of 9 feature(s) failed (pole)")
    for i, st in stats.items():  # not recomputed: same file, untouched
        now = os.stat(out / f"{i}.tif")
        assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns)
    entries = read_lines(ledger)
    rerun = [e for e in entries if e["event"] == "batch"][-1]
    assert set(rerun["skipped"]) == before
    started_again = {e["feature"] for e in entries[entries.index(rerun) :] if "feature" in e}
    assert not started_again & before
    for i in DONE:
        _same_cog(out / f"{i}.tif", reference / f"{i}.tif")
    assert json.loads((out / "index.json").read_text())["features"]
    assert not (out / ".runs").exists()


def test_geopackage_shapefile_and_csv_features(demo, tmp_path):
    from pyogrio.raw import write
    from rasterio.warp import transform_geom
    from shapely import normalize, to_wkb

    polygons = _polygons(demo)[:3] + [_polygons(demo)[6]]
    names = numpy.array([n for n, _ in polygons], dtype=object)
    mercator = [shape(transform_geom("EPSG:4326", "EPSG:3857", g)) for _, g in polygons]
    wkb = numpy.array([to_wkb(g) for g in mercator], dtype=object)
    gpkg, shp = tmp_path / "f.gpkg", tmp_path / "f.shp"
    write(gpkg, wkb, [names], fields=["name"], geometry_type="Polygon", crs="EPSG:3857",
          driver="GPKG")  # fmt: skip
    write(shp, wkb, [names], fields=["name"], geometry_type="Polygon", crs="EPSG:3857",
          driver="ESRI Shapefile")  # fmt: skip
    for path in (gpkg, shp):  # reprojected back to lon/lat
        got = read_features(path, "name")
        assert [f.id for f in got] == ["cell_1_a", "cell_2_a", "cell_3_a", "far_away"]
        for f, (_, g) in zip(got, polygons, strict=True):
            # (a Shapefile stores outer rings clockwise: compare normalised)
            assert normalize(shape(f.geometry)).equals_exact(normalize(shape(g)), 1e-7)
    csv = tmp_path / "f.csv"
    rows = ["id,WKT"] + [f'{k},"{shape(g).wkt}"' for k, (_, g) in enumerate(polygons)]
    csv.write_text("\n".join(rows) + "\n")
    # small runs: zoom 9 tiles of 512 px
    fast = ["--zoom", "9", "--items", str(demo.items_path), "--assets", "red", "-q"]
    r = CliRunner().invoke(cli, ["batch", str(gpkg), str(tmp_path / "g"), "--id-field", "name",
                                 *fast])  # fmt: skip
    assert r.exit_code == 0, r.output
    done = {e["feature"]: e["event"] for e in read_lines(tmp_path / "g" / "ledger.jsonl")
            if "value" in e}  # fmt: skip
    assert done == {"cell_1_a": "done", "cell_2_a": "done", "cell_3_a": "done",
                    "far_away": "empty"}  # fmt: skip
    res = assemble_batch(csv, tmp_path / "c", id_field="id", zoom=9, items=str(demo.items_path),
                         assets="red")  # fmt: skip
    assert [f.id for f in res.done] == ["0", "1", "2"] and [f.id for f in res.empty] == ["3"]
    with rasterio.open(res.done[0].path) as a, rasterio.open(tmp_path / "g" / "cell_1_a.tif") as b:
        assert numpy.array_equal(a.read(), b.read())


def test_ids_are_sanitised_and_made_unique():
    assert sanitise_id("Côte-d'Or / 21") == "C_te-d_Or_21"
    assert sanitise_id("../etc/passwd") == "etc_passwd"
    assert sanitise_id(None) == "" and sanitise_id(" .. ") == ""
    assert unique_ids(["a", "A", "a_2", "", None, "b"]) == ["a", "A_3", "a_2", "feature",
                                                            "feature_2", "b"]  # fmt: skip
    # the batch's own files and an output's companions are not ids
    assert unique_ids(["index", "Mosaic", "index_2", "a", "a.count", "b.Date"]) == [
        "index_3", "Mosaic_2", "index_2", "a", "a_count", "b_Date",
    ]  # fmt: skip


def test_features_named_index_or_mosaic_overwrite_no_batch_file(demo, tmp_path):
    cells = _polygons(demo)[:2]
    features = _write_geojson(tmp_path / "f.geojson", [("index", cells[0][1]),
                                                       ("mosaic", cells[1][1])])  # fmt: skip
    out = tmp_path / "out"
    res = assemble_batch(features, out, id_field="name", zoom=9, items=str(demo.items_path),
                         assets="red")  # fmt: skip
    assert [f.id for f in res.done] == ["index_2", "mosaic_2"]
    assert sorted(p.name for p in out.iterdir()) == [
        "index.json", "index_2.json", "index_2.tif", "ledger.jsonl", "mosaic.json",
        "mosaic_2.json", "mosaic_2.tif",
    ]  # fmt: skip
    index = json.loads((out / "index.json").read_text())
    assert index["type"] == "FeatureCollection" and len(index["features"]) == 2
    assert "tiles" in json.loads((out / "mosaic.json").read_text())  # the mosaicJSON
    for fid in ("index_2", "mosaic_2"):  # each COG's own STAC Item sidecar, untouched
        item = json.loads((out / f"{fid}.json").read_text())
        assert item["type"] == "Feature" and item["assets"]


@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "garbage.geojson").write_text("{not json")
    points = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "p"},
         "geometry": {"type": "Point", "coordinates": [6, 45]}}]}  # fmt: skip
    (tmp_path / "points.geojson").write_text(json.dumps(points))
    (tmp_path / "nowkt.csv").write_text("name,x\na,1\n")
    (tmp_path / "badwkt.csv").write_text("name,WKT\na,POLYGON((0 0, 1\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("not a batch")
    return tmp_path


@pytest.mark.parametrize(
    ("given", "out", "extra", "needle"),
    [
        ("missing.geojson", "o", (), "FEATURES missing.geojson is not a file"),
        ("garbage.geojson", "o", (), "cannot read FEATURES"),
        ("FEATURES", "o", ("--id-field", "nope"), "--id-field 'nope' is not a field"),
        ("points.geojson", "o", (), "has a Point; every feature must be a Polygon"),
        ("nowkt.csv", "o", (), "has no WKT column"),
        ("badwkt.csv", "o", (), "line 2: column 'WKT' is not WKT"),
        ("FEATURES", "gs://bucket/prefix", (), "give a local directory or an s3://bucket/prefix"),
        ("FEATURES", "s3://bucket", (), "names a bucket: give a prefix"),
        ("FEATURES", "o", ("--split-zoom", "8"), "--split-zoom is not an option of a batch"),
        ("FEATURES", "full", (), "is not empty and holds no batch ledger"),
        ("FEATURES", "BATCH", ("--pixel-selection", "first"), "made with other options"),
    ],
)
def test_cli_bad_inputs_are_one_error_line_and_exit_2(
    given, out, extra, needle, bad_files, batch, features, demo, monkeypatch
):
    monkeypatch.chdir(bad_files)
    feats = str(features) if given == "FEATURES" else given
    out = str(batch[1]) if out == "BATCH" else out
    args = ["batch", feats, out, "--zoom", "9", "--items", str(demo.items_path)]
    if "--id-field" not in extra:
        args += ["--id-field", "name"]
    r = CliRunner().invoke(cli, [*args, *extra])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert needle in lines[0]
    assert not (bad_files / "o").exists()


def test_features_as_dask_tasks_equal_the_threaded_batch(batch, demo, tmp_path):
    pytest.importorskip("distributed")
    _, reference, _ = batch
    subset = [_polygons(demo)[k] for k in (0, 1, 6)]  # two cells and the empty one
    features = _write_geojson(tmp_path / "f.geojson", subset)
    res = assemble_batch(
        features, tmp_path / "out", id_field="name", clip=True, dask_local=1, **_options(demo)
    )
    assert [f.id for f in res.done] == ["cell_1_a", "cell_2_a"]
    assert [f.id for f in res.empty] == ["far_away"]
    for f in res.done:
        _same_cog(f.path, reference / f"{f.id}.tif")


# ------------------------------------------------------------------ OUT_DIR on S3
def _download(s3, prefix: str, dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    return {
        k[len(prefix) :]: s3.download(k, dest / k[len(prefix) :].replace("/", "_"))
        for k in s3.keys(prefix)
    }


def _assert_no_secret(texts: dict[str, str]) -> None:
    for name, text in texts.items():
        for secret in (FAKE_SECRET, FAKE_KEY_ID):
            assert secret not in text, f"{secret[:6]}… found in {name}"


def test_batch_to_s3_equals_the_local_batch(batch, demo, s3, tmp_path, caplog):
    _, reference, _ = batch
    polygons = [_polygons(demo)[k] for k in (0, 1, 4, 6, 7)]  # 3 cells, empty, failing
    features = _write_geojson(tmp_path / "f.geojson", polygons)
    caplog.set_level("DEBUG")
    res = assemble_batch(features, s3.url("b/out"), id_field="name", clip=True, **_options(demo))
    assert [f.id for f in res.done] == ["cell_1_a", "cell_2_a", "cell_5_a"]
    assert [f.id for f in res.empty] == ["far_away"] and [f.id for f in res.failed] == ["pole"]
    assert res.index == s3.url("b/out/index.json") and res.done[0].path == s3.url(
        "b/out/cell_1_a.tif"
    )
    got = _download(s3, "b/out/", tmp_path / "got")
    names = {n for n in got if not n.startswith("ledger/")}
    assert names == {"index.json", "mosaic.json"} | {
        f"{f.id}.{ext}" for f in res.done for ext in ("tif", "json")
    }  # no run directory left behind
    for f in res.done:
        _same_cog(got[f"{f.id}.tif"], reference / f"{f.id}.tif")
    index = json.loads(got["index.json"].read_text())
    assert [i["assets"]["data"]["href"] for i in index["features"]] == [
        s3.url(f"b/out/{f.id}.tif") for f in res.done
    ]
    mosaic = json.loads(got["mosaic.json"].read_text())
    listed = {p for paths in mosaic["tiles"].values() for p in paths}
    assert listed == {s3.url(f"b/out/{f.id}.tif") for f in res.done}
    records = [json.loads(got[n].read_text()) for n in sorted(got) if n.startswith("ledger/")]
    assert [r["event"] for r in records][0] == "batch"
    assert {r["feature"]: r["event"] for r in records if "feature" in r} == {
        "cell_1_a": "done", "cell_2_a": "done", "cell_5_a": "done", "far_away": "empty",
        "pole": "failed",
    }  # fmt: skip
    # a rerun skips the finished features (no PUT of theirs) and retries the failed one
    offset = s3.server.log_offset()
    again = assemble_batch(features, s3.url("b/out"), id_field="name", clip=True,
                           **_options(demo))  # fmt: skip
    assert {f.id for f in again.skipped} == {"cell_1_a", "cell_2_a", "cell_5_a", "far_away"}
    puts = [p for m, p, _ in s3.server.requests(offset) if m == "PUT"]
    assert not [p for p in puts if ".tif" in p or "/.runs/" in p and "pole" not in p], puts
    texts = {n: p.read_bytes().decode("latin-1") for n, p in got.items()}
    texts["log"] = caplog.text
    texts["result"] = res.to_json()
    _assert_no_secret(texts)


def test_s3_batch_sigkill_then_rerun_recomputes_no_finished_feature(
    batch, features, demo, s3, tmp_path
):
    _, reference, _ = batch
    url = s3.url("k/out")

    def finished() -> set[str]:
        ends = set()
        for key in s3.keys("k/out/ledger/"):
            e = json.loads(s3.get(key))
            if e.get("event") in ("done", "empty"):
                ends.add(e["feature"])
        return ends

    proc = subprocess.Popen(_cli_batch(features, url, demo, "-q"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 180
    while not finished() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the batch ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    _, killed_err = proc.communicate()
    before = finished()
    assert before and set(IDS) - before, "kill mid-batch: some finished, some not"
    offset = s3.server.log_offset()
    r = subprocess.run(_cli_batch(features, url, demo, "-v"), capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert r.returncode == 1, r.stderr  # `pole` fails
    assert r.stderr.strip().splitlines()[-1].startswith("Error: 1 of 9 feature(s) failed (pole)")
    puts = [p for m, p, _ in s3.server.requests(offset) if m == "PUT"]
    for i in before:  # nothing of a finished feature was written again
        assert not [p for p in puts if f"/{i}.tif" in p or f"/.runs/{i}/" in p], (i, puts)
    got = _download(s3, "k/out/", tmp_path / "got")
    for i in DONE:
        _same_cog(got[f"{i}.tif"], reference / f"{i}.tif")
    assert not [n for n in got if n.startswith(".runs/")]
    batches = [json.loads(got[n].read_text()) for n in sorted(got) if n.startswith("ledger/")]
    batches = [e for e in batches if e["event"] == "batch"]
    assert len(batches) == 2 and set(batches[-1]["skipped"]) == before
    texts = {n: p.read_bytes().decode("latin-1") for n, p in got.items()}
    texts["stderr"] = r.stderr + killed_err.decode(errors="replace")
    _assert_no_secret(texts)


def test_s3_batch_features_as_dask_tasks(batch, demo, s3, tmp_path):
    pytest.importorskip("distributed")
    _, reference, _ = batch
    subset = [_polygons(demo)[k] for k in (0, 1, 6)]
    features = _write_geojson(tmp_path / "f.geojson", subset)
    res = assemble_batch(features, s3.url("d/out"), id_field="name", clip=True, dask_local=1,
                         **_options(demo))  # fmt: skip
    assert [f.id for f in res.done] == ["cell_1_a", "cell_2_a"]
    got = _download(s3, "d/out/", tmp_path / "got")
    for f in res.done:  # uploaded by the worker; the driver wrote the ledger and the index
        _same_cog(got[f"{f.id}.tif"], reference / f"{f.id}.tif")
    assert len(json.loads(got["index.json"].read_text())["features"]) == 2


@pytest.mark.parametrize(
    "grid",
    [["--crs", "auto-utm", "--resolution", "240"], ["--tms", "EuropeanETRS89_LAEAQuad",
                                                    "--zoom", "9"]],
    ids=["auto-utm", "laea"],
)  # fmt: skip
def test_batch_on_another_grid_equals_single_runs_and_indexes_it(demo, tmp_path, grid):
    """`batch --crs/--tms` (every assemble option): each COG is the single run's on that grid;
    the index has the COGs' own proj:code; no mosaic.json (it indexes Web Mercator only)."""
    import pystac
    from pystac.extensions.projection import ProjectionExtension

    polygons = _polygons(demo)[:3]
    features = _write_geojson(tmp_path / "f.geojson", polygons)
    out = tmp_path / "out"
    common = ["--tilesize", str(TILESIZE), "--items", str(demo.items_path),
              "--assets", "red,green,blue", "--pixel-selection", "median"]  # fmt: skip
    r = CliRunner().invoke(
        cli, ["batch", str(features), str(out), "--id-field", "name", "--clip", "-q", *grid,
              *common],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    kwargs = dict(zip((g.lstrip("-") for g in grid[::2]), grid[1::2], strict=True))
    if "zoom" in kwargs:
        kwargs["zoom"] = int(kwargs["zoom"])
    if "resolution" in kwargs:
        kwargs["resolution"] = float(kwargs["resolution"])
    items = pystac.ItemCollection.from_dict(json.loads((out / "index.json").read_text()))
    assert [i.id for i in items] == IDS[:3]
    for (_, geom), item in zip(polygons, items, strict=True):
        ref = tmp_path / f"{item.id}.tif"
        assemble(ref, aoi=geom, clip=True, progress=False, tilesize=TILESIZE,
                 items=str(demo.items_path), assets="red,green,blue",
                 pixel_selection="median", **kwargs)  # fmt: skip
        _same_cog(out / f"{item.id}.tif", ref)
        with rasterio.open(ref) as src:
            assert src.crs.to_epsg() != 3857
            assert ProjectionExtension.ext(item).code == f"EPSG:{src.crs.to_epsg()}"
    assert not (out / "mosaic.json").exists()
