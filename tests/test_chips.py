"""chips (issue 15, item 2): chips, composites and values over the demo sample.

Oracles: rasterio boundless windowed reads of the sources around each point, the seed's
byte_scale in numpy, odc-stac's solar-day conversion.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import Window
from s3_fixtures import FAKE_KEY_ID, FAKE_SECRET

from mosaic_assembler.chips import extract_chips, solar_date
from mosaic_assembler.cli import main
from mosaic_assembler.demo_data import make_demo_sample

ASSETS = ("blue", "green", "red", "nir08")
ASSETS_ARG = ",".join(ASSETS)
SIZE = 63  # small chips keep the test fast; the windows logic is size-agnostic


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    sample = make_demo_sample(tmp_path_factory.mktemp("demo"))
    doc = json.loads(sample.items_path.read_text())
    return {"sample": sample, "items": doc["features"], "root": sample.root}


def _href(demo: dict, item: dict, key: str) -> str:
    return str(demo["root"] / item["assets"][key]["href"])


def _write_points(path: Path, pts: list[tuple[float, float]]) -> Path:
    with path.open("w") as f:
        f.write("project_id,plot_id,x,y\n")
        for n, (x, y) in enumerate(pts):
            f.write(f"prj,{n},{x:.6f},{y:.6f}\n")
    return path


def _random_points(demo: dict, n: int, seed: int = 3) -> list[tuple[float, float]]:
    w, s, e, nn = demo["sample"].bbox
    rng = numpy.random.default_rng(seed)
    # 6 decimals: the points as written to the CSV
    return [
        (round(rng.uniform(w - 0.15, e + 0.15), 6), round(rng.uniform(s, nn), 6)) for _ in range(n)
    ]


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "values.csv").read_text().splitlines()))


def _reference(href: str, lon: float, lat: float, size: int) -> tuple[numpy.ma.MaskedArray, Window]:
    """The oracle: rasterio's boundless masked read around the point's pixel."""
    with rasterio.open(href) as ds:
        x, y = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True).transform(lon, lat)
        row, col = ds.index(x, y)
        win = Window(col - size // 2, row - size // 2, size, size)
        return ds.read(1, window=win, boundless=True, masked=True), win


def _centre_valid(demo: dict, item: dict, lon: float, lat: float) -> bool:
    c = SIZE // 2
    for key in ASSETS:
        ref, _ = _reference(_href(demo, item, key), lon, lat, SIZE)
        if ref.mask[c, c]:
            return False
    qa, _ = _reference(_href(demo, item, "qa_pixel"), lon, lat, SIZE)
    return not qa.mask[c, c] and not int(qa.data[c, c]) & 1


@pytest.fixture(scope="module")
def run(demo, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("run")
    pts = _random_points(demo, 36)
    points = _write_points(tmp / "plots.csv", pts)
    result = extract_chips(
        points,
        tmp / "out",
        items=demo["sample"].items_path,
        assets=ASSETS_ARG,
        size=SIZE,
        mask_band="qa_pixel",
        mask_bits="landsat",
        composites=("b432",),
        rescale="c1",
        batch_points=8,
    )
    return {"pts": pts, "out": tmp / "out", "result": result}


def test_every_chip_equals_a_boundless_read(demo, run):
    items = {f["id"]: f for f in demo["items"]}
    rows = _rows(run["out"])
    assert len(rows) > 30 and run["result"].failed == 0
    for row in rows:
        lon, lat = run["pts"][int(row["plot_id"])]
        item = items[row["item_id"]]
        tif = run["out"] / "chips" / f"prj_{row['plot_id']}" / f"{row['date']}_{row['item_id']}.tif"
        with rasterio.open(tif) as chip:
            data, mask = chip.read(), chip.read_masks(1) > 0
            transform, crs = chip.transform, chip.crs
        valid = numpy.ones_like(mask)
        for b, key in enumerate(ASSETS):
            ref, win = _reference(_href(demo, item, key), lon, lat, SIZE)
            assert (data[b][~ref.mask] == ref.data[~ref.mask]).all(), (row["plot_id"], key)
            valid &= ~ref.mask
            with rasterio.open(_href(demo, item, key)) as ds:
                assert crs == ds.crs
                assert transform == rasterio.windows.transform(win, ds.transform)
        assert (mask == valid).all()


def test_values_equal_direct_reads_and_fill_centres_are_absent(demo, run):
    c = SIZE // 2
    got = {(int(r["plot_id"]), r["item_id"]): r for r in _rows(run["out"])}
    expected = set()
    for n, (lon, lat) in enumerate(run["pts"]):
        for item in demo["items"]:
            if _centre_valid(demo, item, lon, lat):
                expected.add((n, item["id"]))
    assert set(got) == expected  # fill-centre observations are absent, the others present
    for (n, item_id), row in got.items():
        item = next(f for f in demo["items"] if f["id"] == item_id)
        lon, lat = run["pts"][n]
        for key in ASSETS:
            ref, _ = _reference(_href(demo, item, key), lon, lat, SIZE)
            c1 = int((float(ref.data[c, c]) * 0.0000275 - 0.2) * 10000)  # the seed's convert_sr
            assert int(row[key]) == c1
        qa, _ = _reference(_href(demo, item, "qa_pixel"), lon, lat, SIZE)
        assert int(row["qa"]) == int(bool(int(qa.data[c, c]) & 0b111110))
        assert row["rescale"] == "c1"
        assert row["doy"] == str(
            __import__("datetime").date.fromisoformat(row["date"]).timetuple().tm_yday
        )


def _byte_scale(array, lo, hi):
    """The seed's byte_scale."""
    out = (255 / (hi - lo)) * (array - lo)
    return numpy.maximum(numpy.minimum(out, 255), 0).astype(numpy.uint8)


def test_png_composite_equals_the_seed_stretch(run):
    rows = _rows(run["out"])[:6]
    for row in rows:
        name = f"prj_{row['plot_id']}/{row['date']}_{row['item_id']}"
        with rasterio.open(run["out"] / "chips" / f"{name}.tif") as chip:
            raw, invalid = chip.read(), chip.read_masks(1) == 0
            grid = (chip.crs, chip.transform)
        c1 = ((raw.astype(float) * 0.0000275 - 0.2) * 10000).astype(numpy.int16)
        bands = {k: c1[i] for i, k in enumerate(ASSETS)}
        ranges = [(151, 4951), (-300, 2500), (50, 1150)]
        ref = numpy.stack(
            [
                _byte_scale(bands[k], *r)
                for k, r in zip(("nir08", "red", "green"), ranges, strict=True)
            ]
        )
        ref[:, invalid] = 0
        with rasterio.open(run["out"] / "b432" / f"{name}.png") as png:
            assert png.count == 3 and png.dtypes[0] == "uint8"
            assert (png.read() == ref).all()
            # georeferenced as the chip (GDAL reads it from the .aux.xml beside the PNG)
            assert (png.crs, png.transform) == grid


def test_png_encoder_decodes_to_its_pixels_and_pam_reads_back(tmp_path):
    from PIL import Image
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    from mosaic_assembler.chips._outputs import encode_png, pam_xml

    rng = numpy.random.default_rng(3)
    for shape in ((3, 255, 255), (3, 1, 7), (3, 16, 1)):
        rgb = rng.integers(0, 256, shape, dtype=numpy.uint8)
        rgb[:, :2] = 0  # a fill corner
        path = tmp_path / "a.png"
        path.write_bytes(encode_png(rgb))
        t = from_origin(500000.5, 4000000.25, 30, 30)
        (tmp_path / "a.png.aux.xml").write_text(pam_xml(CRS.from_epsg(32631), t))
        assert (numpy.asarray(Image.open(path)).transpose(2, 0, 1) == rgb).all()  # Pillow
        with rasterio.open(path) as png:  # GDAL's PNG driver
            assert (png.read() == rgb).all()
            assert png.crs.to_epsg() == 32631 and png.transform == t


def test_points_in_one_block_share_reads(demo, tmp_path):
    item = demo["items"][0]
    with rasterio.open(_href(demo, item, "red")) as ds:
        to_ll = Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True)
        # 30 points in a 100-px square of block (1, 1), away from the collar
        rng = numpy.random.default_rng(0)
        cols, rows = rng.uniform(300, 400, 30), rng.uniform(300, 400, 30)
        pts = [to_ll.transform(*(ds.transform * (c, r))) for c, r in zip(cols, rows, strict=True)]
        pts = [(round(x, 6), round(y, 6)) for x, y in pts]
    items = tmp_path / "one.json"
    items.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        **item,
                        "assets": {
                            k: {**v, "href": _href(demo, item, k)}
                            for k, v in item["assets"].items()
                        },
                    }
                ],
            }
        )
    )
    reads = {}
    for n in (1, 30):
        points = _write_points(tmp_path / f"p{n}.csv", pts[:n])
        r = extract_chips(
            points, tmp_path / f"out{n}", items=items, assets="red,nir08", size=255, batch_points=64
        )
        assert r.done + r.empty == n and r.done > 0
        reads[n] = r.reads
    assert reads[30]["opens"] == reads[1]["opens"] == 2
    assert reads[30]["blocks"] < 2 * reads[1]["blocks"]
    assert reads[30]["reads"] < 2 * reads[1]["reads"]
    # the seed's loop opens every asset per plot and reads its window: 30 x the opens


def test_resume_after_an_interruption_skips_finished_points(demo, tmp_path):
    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 12, seed=5))
    kw = dict(
        items=demo["sample"].items_path,
        assets="red,nir08",
        size=31,
        batch_points=3,
        concurrency=1,
        mask_band="qa_pixel",
    )
    full = extract_chips(points, tmp_path / "full", **kw)
    seen = []

    def stop_after_two(p):
        seen.append(p)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_chips(points, tmp_path / "cut", progress=stop_after_two, **kw)
    ledger = [json.loads(x) for x in (tmp_path / "cut" / "ledger.jsonl").read_text().splitlines()]
    finished = {e["point"] for e in ledger if e.get("event") == "point"}
    assert len(finished) == 6
    stamps = {f: f.stat().st_mtime_ns for f in (tmp_path / "cut" / "chips").rglob("*.tif")}
    again = extract_chips(points, tmp_path / "cut", **kw)
    assert again.skipped == 6 and again.done + again.empty == 6
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items())  # not recomputed
    assert (tmp_path / "cut" / "values.csv").read_text() == (
        tmp_path / "full" / "values.csv"
    ).read_text()
    assert full.rows == again.rows


def _files(out: Path) -> dict[str, bytes]:
    return {str(f.relative_to(out)): f.read_bytes() for f in sorted(out.rglob("*"))
            if f.suffix in (".tif", ".png", ".csv")}  # fmt: skip


def test_append_lines_is_one_write_and_a_torn_line_is_ignored(tmp_path):
    from mosaic_assembler.ledger import append_lines, read_lines

    log = tmp_path / "ledger.jsonl"
    append_lines(log, [{"point": "a"}, {"point": "b"}])
    append_lines(log, [])
    assert [e["point"] for e in read_lines(log)] == ["a", "b"]
    with log.open("ab") as f:  # a kill in the middle of the next batch's write
        f.write(b'{"point": "c", "t": 1}\n{"point": "d", "t"')
    assert [e["point"] for e in read_lines(log)] == ["a", "b", "c"]


def test_a_kill_mid_batch_leaves_a_consistent_ledger(demo, tmp_path, monkeypatch):
    """One fsync'ed write per batch: a kill inside it leaves whole lines (done) and a torn
    one (not done); a done point whose values part is lost is recomputed; the rerun's
    outputs equal an uninterrupted run's, byte for byte."""
    import mosaic_assembler.chips._run as chips_run
    from mosaic_assembler.ledger import read_lines

    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 12, seed=8))
    kw = dict(items=demo["sample"].items_path, assets=ASSETS_ARG, size=SIZE, batch_points=4,
              concurrency=1, mask_band="qa_pixel", composites=("b432",), rescale="c1")  # fmt: skip
    full = extract_chips(points, tmp_path / "full", **kw)
    real, calls = chips_run.append_lines, []

    def killed_in_second_batch(path, entries):
        calls.append(entries)
        if len(calls) < 2:
            return real(path, entries)
        data = b"".join(json.dumps({**e, "t": 0}).encode() + b"\n" for e in entries)
        cut = data.index(b"\n", data.index(b"\n") + 1) + 10  # two whole lines and a bit
        with open(path, "ab") as f:
            f.write(data[:cut])
        raise KeyboardInterrupt  # the kill

    monkeypatch.setattr(chips_run, "append_lines", killed_in_second_batch)
    with pytest.raises(KeyboardInterrupt):
        extract_chips(points, tmp_path / "cut", **kw)
    monkeypatch.undo()
    cut = tmp_path / "cut"
    lines = [e for e in read_lines(cut / "ledger.jsonl") if e.get("event") == "point"]
    assert len(lines) == 6  # batch 1 and two whole lines of batch 2; the third is torn
    assert (cut / "ledger.jsonl").read_bytes()[-1:] != b"\n"
    lost = lines[-1]["point"]  # its part lost with the machine: the point is not finished
    (cut / "values" / f"{lost}.csv").unlink()
    again = extract_chips(points, cut, **kw)
    assert again.skipped == 5 and again.done + again.empty == 7 and again.failed == 0
    assert again.rows == full.rows
    assert _files(cut) == _files(tmp_path / "full")


def test_worker_processes_write_the_same_files_as_one_process(demo, tmp_path):
    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 16, seed=9))
    kw = dict(items=demo["sample"].items_path, assets=ASSETS_ARG, size=SIZE, batch_points=3,
              mask_band="qa_pixel", mask_bits="landsat", composites=("b432",),
              rescale="c1")  # fmt: skip
    one = extract_chips(points, tmp_path / "one", concurrency=1, **kw)
    two = extract_chips(points, tmp_path / "two", concurrency=2, **kw)
    assert (one.rows, one.done, one.empty, one.reads) == (two.rows, two.done, two.empty, two.reads)
    assert one.rows > 0 and _files(tmp_path / "one") == _files(tmp_path / "two")


def test_other_options_on_the_same_out_dir_are_refused(demo, tmp_path):
    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 2))
    kw = dict(items=demo["sample"].items_path, size=15)
    extract_chips(points, tmp_path / "out", assets="red", **kw)
    with pytest.raises(ValueError, match="other options"):
        extract_chips(points, tmp_path / "out", assets="red,nir08", **kw)
    again = extract_chips(points, tmp_path / "out", assets="red,nir08", restart=True, **kw)
    assert again.skipped == 0


def test_solar_day_fuses_the_scenes_of_a_date(demo, tmp_path):
    from shapely.geometry import Point, shape

    feats = demo["items"]
    pair = feats[0], feats[1]  # the two scenes of the first date
    overlap = shape(pair[0]["geometry"]).intersection(shape(pair[1]["geometry"]))
    rng = numpy.random.default_rng(1)
    pts = []
    while len(pts) < 4:
        b = overlap.bounds
        p = (rng.uniform(b[0], b[2]), rng.uniform(b[1], b[3]))
        p = (round(p[0], 6), round(p[1], 6))
        if overlap.contains(Point(p)) and all(_centre_valid(demo, f, *p) for f in pair):
            pts.append(p)
    points = _write_points(tmp_path / "plots.csv", pts)
    kw = dict(items=demo["sample"].items_path, assets="red,nir08", size=SIZE, mask_band="qa_pixel")
    by_item = extract_chips(points, tmp_path / "item", **kw)
    by_day = extract_chips(points, tmp_path / "day", group_by="solar_day", **kw)
    date = solar_date(
        __import__("datetime").datetime.fromisoformat(pair[0]["properties"]["datetime"]),
        shape(pair[0]["geometry"]).centroid.x,
    ).isoformat()
    item_rows = [r for r in _rows(tmp_path / "item") if r["date"] == date]
    day_rows = [r for r in _rows(tmp_path / "day") if r["date"] == date]
    assert len(item_rows) == 8 and len(day_rows) == 4 and by_day.rows < by_item.rows
    for r in day_rows:  # the first scene (item order) holding a valid centre gives the grid
        assert r["item_id"] == pair[0]["id"]
        name = f"prj_{r['plot_id']}/{r['date']}_{r['item_id']}.tif"
        with rasterio.open(tmp_path / "day" / "chips" / name) as fused:
            fused_valid = (fused.read_masks(1) > 0).sum()
        with rasterio.open(tmp_path / "item" / "chips" / name) as single:
            single_valid = (single.read_masks(1) > 0).sum()
        assert fused_valid >= single_valid


def test_solar_day_is_odc_stacs(demo):
    import datetime as dt

    from odc.stac.model import _convert_to_solar_time
    from shapely.geometry import shape

    for f in demo["items"]:
        utc = dt.datetime.fromisoformat(f["properties"]["datetime"].replace("Z", "+00:00"))
        for lon in (shape(f["geometry"]).centroid.x, -122.4, 179.9, -0.5, 14.99, 15.0):
            assert solar_date(utc, lon) == _convert_to_solar_time(utc, lon).date()


def test_geojson_points_and_id_fields(demo, tmp_path):
    pts = _random_points(demo, 3)
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": f"n{i}", "site": "s"},
                "geometry": {"type": "Point", "coordinates": list(p)},
            }
            for i, p in enumerate(pts)
        ],
    }
    (tmp_path / "p.geojson").write_text(json.dumps(fc))
    r = extract_chips(
        tmp_path / "p.geojson",
        tmp_path / "out",
        items=demo["sample"].items_path,
        assets="red",
        size=15,
        id_fields="site,name",
    )
    header = (tmp_path / "out" / "values.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["site", "name", "item_id"] and r.points == 3
    assert header[-2:] == ["red", "rescale"]


def _cli(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        main(["chips", *args])
    return e.value.code, capsys.readouterr().err


def test_cli_writes_chips_and_composites(demo, tmp_path, capsys):
    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 4))
    code, err = _cli(
        capsys,
        str(points),
        str(tmp_path / "out"),
        "--items",
        str(demo["sample"].items_path),
        "--assets",
        ASSETS_ARG,
        "--size",
        "31",
        "--mask-band",
        "qa_pixel",
        "--mask-bits",
        "landsat",
        "--composite",
        "b432",
        "--composite",
        "ndvi=(nir08-red)/(nir08+red):-1-1",
        "--rescale-c1",
        "--group-by",
        "solar_day",
    )
    assert code == 0, err
    assert "wrote" in err and "values.csv" in err
    assert list((tmp_path / "out" / "ndvi").rglob("*.png"))
    assert {"qa", "rescale"} <= set(_rows(tmp_path / "out")[0])


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.csv", "out", "--items", "ITEMS", "--assets", "red"], "cannot read POINTS"),
        (["NOXY", "out", "--items", "ITEMS", "--assets", "red"], "needs x and y"),
        (["POINTS", "out", "--items", "ITEMS"], "--assets is required"),
        (["POINTS", "out", "--assets", "red"], "exactly one source"),
        (
            [
                "POINTS",
                "out",
                "--items",
                "ITEMS",
                "--stac",
                "http://x",
                "--collections",
                "c",
                "--assets",
                "red",
            ],
            "exactly one source",
        ),
        (
            ["POINTS", "out", "--items", "ITEMS", "--assets", "red", "--composite", "b99"],
            "unknown --composite",
        ),
        (
            ["POINTS", "out", "--items", "ITEMS", "--assets", "red", "--composite", "b432"],
            "reads nir08, green, not in --assets",
        ),
        (
            ["POINTS", "out", "--items", "ITEMS", "--assets", "red", "--composite", "x=red:1"],
            "NAME=EXPR",
        ),
        (["POINTS", "gs://bucket/x", "--items", "ITEMS", "--assets", "red"], "or an s3://"),
        (
            ["POINTS", "out", "--items", "ITEMS", "--assets", "red", "--points-crs", "EPSG:0"],
            "--points-crs",
        ),
        (
            ["POINTS", "out", "--items", "ITEMS", "--assets", "red", "--id-fields", "nope"],
            "--id-fields",
        ),
        (["POINTS", "out", "--items", "ITEMS", "--assets", "nope"], "nope"),
        (
            ["POINTS", "out", "--items", "ITEMS", "--assets", "red", "--mask-bits", "landsat"],
            "need --mask-band",
        ),
    ],
)
def test_cli_bad_inputs(demo, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    _write_points(tmp_path / "POINTS", [(6.0, 45.5)])
    (tmp_path / "NOXY").write_text("id,lon,lat\n1,6,45\n")
    args = [str(demo["sample"].items_path) if a == "ITEMS" else a for a in args]
    code, err = _cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error:"), err
    assert message in lines[0], lines[0]
    assert not (tmp_path / "out").exists() or message == "nope"


def test_dask_local_gives_the_threads_values(demo, tmp_path):
    pytest.importorskip("distributed")
    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 8, seed=9))
    kw = dict(items=demo["sample"].items_path, assets="red,nir08", size=15, batch_points=3)
    on_dask = extract_chips(points, tmp_path / "dask", dask_local=1, **kw)
    on_threads = extract_chips(points, tmp_path / "threads", **kw)
    assert on_dask.rows == on_threads.rows > 0
    assert (tmp_path / "dask" / "values.csv").read_text() == (
        tmp_path / "threads" / "values.csv"
    ).read_text()


# ------------------------------------------------------------------ OUT_DIR on S3
def _s3_files(s3, prefix: str) -> dict[str, bytes]:
    return {k[len(prefix) :]: s3.get(k) for k in s3.keys(prefix)}


def _local_files(out: Path) -> dict[str, bytes]:
    return {f.relative_to(out).as_posix(): f.read_bytes() for f in sorted(out.rglob("*"))
            if f.is_file() and f.suffix in (".tif", ".png", ".xml")}  # fmt: skip


def _no_secret(texts: dict[str, str]) -> None:
    for name, text in texts.items():
        for secret in (FAKE_SECRET, FAKE_KEY_ID):
            assert secret not in text, f"{secret[:6]}… found in {name}"


S3_KW = dict(assets=ASSETS_ARG, size=SIZE, mask_band="qa_pixel", mask_bits="landsat",
             composites=("b432",), rescale="c1")  # fmt: skip


@pytest.mark.parametrize("concurrency", [1, 2])
def test_chips_to_s3_equal_the_local_run(demo, s3, tmp_path, caplog, concurrency):
    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 14, seed=11))
    kw = dict(items=demo["sample"].items_path, batch_points=4, concurrency=concurrency, **S3_KW)
    local = extract_chips(points, tmp_path / "local", **kw)
    caplog.set_level("DEBUG")
    remote = extract_chips(points, s3.url("c/out"), **kw)
    assert (remote.rows, remote.done, remote.empty) == (local.rows, local.done, local.empty) != (
        0, 0, 0,
    )  # fmt: skip
    assert remote.values_path == s3.url("c/out/values.csv")
    got = _s3_files(s3, "c/out/")
    assert got.pop("values.csv") == (tmp_path / "local" / "values.csv").read_bytes()
    records = {k: v for k, v in got.items() if k.startswith("ledger/")}
    files = {k: v for k, v in got.items() if not k.startswith("ledger/")}
    assert files == _local_files(tmp_path / "local")  # every chip, PNG and aux.xml, same bytes
    # a rerun computes nothing: no PUT but its ledger record and values.csv
    offset = s3.server.log_offset()
    again = extract_chips(points, s3.url("c/out"), **kw)
    assert again.skipped == 14 and again.rows == local.rows
    puts = [p for m, p, _ in s3.server.requests(offset) if m == "PUT"]
    assert all("/ledger/" in p or p.endswith("/values.csv") for p in puts), puts
    texts = {k: v.decode("latin-1") for k, v in {**records, **files}.items()}
    texts["log"] = caplog.text
    _no_secret(texts)


def test_chips_to_s3_sigkill_then_rerun_recomputes_no_finished_point(demo, s3, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 30, seed=12))
    kw = dict(items=demo["sample"].items_path, batch_points=2, concurrency=1, **S3_KW)
    local = extract_chips(points, tmp_path / "local", **kw)
    cmd = [sys.executable, "-m", "mosaic_assembler.cli", "chips", str(points), s3.url("k/out"),
           "--items", str(demo["sample"].items_path), "--assets", ASSETS_ARG, "--size",
           str(SIZE), "--mask-band", "qa_pixel", "--mask-bits", "landsat", "--composite", "b432",
           "--rescale-c1", "--batch-points", "2", "--concurrency", "1"]  # fmt: skip

    def finished() -> set[str]:
        keys = set()
        for k in s3.keys("k/out/ledger/"):
            e = json.loads(s3.get(k))
            keys |= {p["point"] for p in e.get("points", ()) if p["status"] != "failed"}
        return keys

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(finished()) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    _, killed_err = proc.communicate()
    before = finished()
    assert 4 <= len(before) < 30
    offset = s3.server.log_offset()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    puts = [p for m, p, _ in s3.server.requests(offset) if m == "PUT"]
    for key in before:  # none of a finished point's files was written again
        assert not [p for p in puts if f"/{key}/" in p], (key, puts)
    got = _s3_files(s3, "k/out/")
    assert got.pop("values.csv") == (tmp_path / "local" / "values.csv").read_bytes()
    files = {k: v for k, v in got.items() if not k.startswith("ledger/")}
    assert files == _local_files(tmp_path / "local") and local.rows > 0
    _no_secret({"stderr": r.stderr + killed_err.decode(errors="replace"),
                **{k: v.decode("latin-1") for k, v in got.items()}})  # fmt: skip


def test_chips_to_s3_on_dask(demo, s3, tmp_path):
    pytest.importorskip("distributed")
    points = _write_points(tmp_path / "plots.csv", _random_points(demo, 8, seed=13))
    kw = dict(items=demo["sample"].items_path, batch_points=3, **S3_KW)
    local = extract_chips(points, tmp_path / "local", concurrency=1, **kw)
    extract_chips(points, s3.url("d/out"), dask_local=1, **kw)  # the worker uploads
    got = _s3_files(s3, "d/out/")
    assert got.pop("values.csv") == (tmp_path / "local" / "values.csv").read_bytes()
    assert {k: v for k, v in got.items() if not k.startswith("ledger/")} == _local_files(
        tmp_path / "local"
    ) and local.rows > 0
