"""S3 inputs, outputs and run directories against a real S3-compatible server (moto server).

Oracle: the same run written locally, read back with rasterio (pixels and mask).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate
from s3_fixtures import FAKE_KEY_ID, FAKE_SECRET, MotoServer, S3Bucket, bucket_on

from mosaic_assembler import assemble
from mosaic_assembler.cli import cli
from mosaic_assembler.demo_data import make_demo_sample
from mosaic_assembler.storage import gdal_env

ZOOM, TILESIZE = 11, 256


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"), n_scenes=4, size=256, resolution=120.0)


@pytest.fixture(scope="module")
def oracle(demo, tmp_path_factory):
    """The local run: what every S3 run must equal."""
    out = tmp_path_factory.mktemp("oracle") / "local.tif"
    assemble(out, progress=False, **_options(str(demo.items_path)))
    return out


def _options(items: str, **extra):
    return dict(
        zoom=ZOOM, tilesize=TILESIZE, items=items, assets=("red", "green", "blue"),
        pixel_selection="median", chunk_tiles=1, **extra,
    )  # fmt: skip


def upload_demo(bucket, demo, prefix: str = "inputs") -> str:
    """The demo's items file and scenes on S3 (relative hrefs, so they become s3:// ones)."""
    for path in sorted(demo.root.rglob("*")):
        if path.is_file() and path.name != "mosaic.json":
            bucket.upload(path, f"{prefix}/{path.relative_to(demo.root)}")
    return bucket.url(f"{prefix}/items.json")


def read_all(path: Path) -> tuple[numpy.ndarray, numpy.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), src.dataset_mask(), dict(src.profile)


def assert_same(path: Path, oracle: Path) -> None:
    data, mask, profile = read_all(path)
    want_data, want_mask, want_profile = read_all(oracle)
    assert (profile["width"], profile["height"], profile["count"]) == (
        want_profile["width"], want_profile["height"], want_profile["count"],
    )  # fmt: skip
    assert profile["transform"] == want_profile["transform"]
    numpy.testing.assert_array_equal(mask, want_mask)
    numpy.testing.assert_array_equal(data, want_data)


def test_s3_inputs_output_and_run_dir_equal_the_local_run(s3, demo, oracle, tmp_path):
    items = upload_demo(s3, demo)
    s3.client.put_object(Bucket=s3.name, Key="results/notes.txt", Body=b"a user's file")
    r = assemble(s3.url("results/out.tif"), progress=False, **_options(items))
    assert r.path == s3.url("results/out.tif")
    got = s3.download("results/out.tif", tmp_path / "got.tif")
    assert cog_validate(str(got), quiet=True)[0]
    assert_same(got, oracle)
    # the run directory (default OUTPUT.run/) is gone; the user's file stays; the STAC
    # sidecar is beside the output and names it relatively
    assert sorted(s3.keys("results/")) == [
        "results/notes.txt", "results/out.json", "results/out.tif",
    ]  # fmt: skip
    assert json.loads(s3.get("results/out.json"))["assets"]["data"]["href"] == "./out.tif"


def test_provenance_companions_beside_an_s3_output(s3, demo, tmp_path):
    """OUT.count.tif and OUT.json are uploaded beside an s3:// output, equal to a local run's,
    and a rerun without overwrite is refused because they (and OUT) exist."""
    opts = _options(str(demo.items_path), provenance="count")
    local = tmp_path / "local" / "p.tif"
    local.parent.mkdir()
    assemble(local, progress=False, **opts)
    opts["run_dir"] = str(tmp_path / "run")
    assemble(s3.url("prov/p.tif"), progress=False, **opts)
    assert sorted(s3.keys("prov/")) == ["prov/p.count.tif", "prov/p.json", "prov/p.tif"]
    got = s3.download("prov/p.count.tif", tmp_path / "count.tif")
    assert cog_validate(str(got), quiet=True)[0]
    assert_same(got, local.with_name("p.count.tif"))
    item = json.loads(s3.get("prov/p.json"))
    assert item["assets"]["count"]["href"] == "./p.count.tif"
    s3.client.delete_object(Bucket=s3.name, Key="prov/p.tif")  # only the companions remain
    with pytest.raises(Exception, match="p.count.tif.*exists"):
        assemble(s3.url("prov/p.tif"), progress=False, **opts)
    assemble(s3.url("prov/p.tif"), progress=False, overwrite=True, **opts)
    assert "prov/p.tif" in s3.keys("prov/")


def test_provenance_with_an_s3_run_dir(s3, demo, tmp_path):
    """--provenance count,date with an s3:// run directory: each chunk's provenance files go up
    with it, the finalize reads them through /vsis3/ (OUT.count.tif, OUT.date.tif equal a local
    run's), and a resumed run finds them and recomputes nothing."""
    opts = {
        **_options(str(demo.items_path), provenance=("count", "date")),
        "pixel_selection": "first",
    }  # date is defined for the pickers, not for median
    local = tmp_path / "local.tif"
    assemble(local, progress=False, **opts)
    run = s3.url("prun")
    first = assemble(tmp_path / "s.tif", progress=False, run_dir=run, keep_run_dir=True, **opts)
    keys = s3.keys("prun/chunks/")
    plain = sorted(k for k in keys if k.count(".") == 1)
    assert plain and sorted(k for k in keys if k.endswith(".count.tif")) == [
        k.replace(".tif", ".count.tif") for k in plain
    ]
    assert len([k for k in keys if k.endswith(".date.tif")]) == len(plain)
    for kind in ("count", "date"):
        assert_same(tmp_path / f"s.{kind}.tif", tmp_path / f"local.{kind}.tif")
    assert_same(tmp_path / "s.tif", local)
    # resumed: every chunk and its provenance is found; nothing is uploaded to the run again
    offset = s3.server.log_offset()
    again = assemble(tmp_path / "t.tif", progress=False, run_dir=run, **opts)
    assert again.chunks_resumed == first.chunks
    puts = [p for m, p, _ in s3.server.requests(offset) if m in ("PUT", "POST")]
    assert not [p for p in puts if "/prun/chunks/" in p or "/prun/records/" in p], puts
    assert_same(tmp_path / "t.count.tif", tmp_path / "local.count.tif")
    assert s3.keys("prun/") == []  # removed, provenance chunks included


def test_s3_output_is_refused_when_it_exists_unless_overwrite(s3, demo, oracle, tmp_path):
    s3.client.put_object(Bucket=s3.name, Key="out.tif", Body=b"not mine")
    runner = CliRunner()
    args = ["--bbox", *map(str, demo.bbox), "--zoom", str(ZOOM), "--tilesize", str(TILESIZE),
            "--items", str(demo.items_path), "--assets", "red,green,blue", "-q"]  # fmt: skip
    res = runner.invoke(cli, [s3.url("out.tif"), *args])
    assert res.exit_code == 2
    assert "exists" in res.output and "--overwrite" in res.output
    assert "Traceback" not in res.output
    assert s3.get("out.tif") == b"not mine"
    res = runner.invoke(cli, [s3.url("out.tif"), *args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert s3.get("out.tif")[:4] in (b"II*\x00", b"II+\x00")


def test_split_zoom_to_an_s3_prefix(s3, demo, oracle, tmp_path):
    r = assemble(s3.url("split"), progress=False, split_zoom=9, **_options(str(demo.items_path)))
    keys = sorted(s3.keys("split/"))
    cogs = [k for k in keys if k.endswith(".tif")]
    sidecars = {k.removesuffix(".tif") + ".json" for k in cogs}
    assert cogs and set(keys) == {
        *cogs, *sidecars, "split/items.json", "split/mosaic.json", "split/collection.json",
    }  # fmt: skip
    assert sorted(r.outputs) == sorted(s3.url(k) for k in cogs)
    mosaic = json.loads(s3.get("split/mosaic.json"))
    hrefs = sorted(h for hs in mosaic["tiles"].values() for h in hs)
    assert hrefs == sorted(s3.url(k) for k in cogs)
    items = json.loads(s3.get("split/items.json"))
    assert len(items["features"]) == len(cogs)
    # the split COGs, mosaicked back through their s3:// hrefs, are the local run's pixels
    with rasterio.open(oracle) as ref:
        for k in cogs:
            with rasterio.open(s3.url(k)) as part:
                window = rasterio.windows.from_bounds(*part.bounds, transform=ref.transform)
                window = window.round_offsets().round_lengths()
                numpy.testing.assert_array_equal(part.read(), ref.read(window=window))
    # mosaic.json is readable by the tool itself (an s3:// source document)
    again = assemble(
        s3.url("again.tif"), progress=False, mosaicjson=s3.url("split/mosaic.json"),
        zoom=ZOOM, tilesize=TILESIZE, pixel_selection="first", bbox=demo.bbox,
    )  # fmt: skip
    assert again.tiles_done > 0


def test_s3_run_dir_resumes_and_status_reads_it(s3, demo, oracle, tmp_path):
    run_dir = s3.url("runs/one")
    opts = _options(str(demo.items_path), run_dir=run_dir, keep_run_dir=True)
    first = assemble(tmp_path / "a.tif", progress=False, **opts)
    records = sorted(s3.keys("runs/one/records/"))
    assert len(records) == first.chunks
    assert len(s3.keys("runs/one/chunks/")) == first.chunks - sum(
        json.loads(s3.get(k))["status"] == "empty" for k in records
    )
    res = CliRunner().invoke(cli, ["status", run_dir, "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["chunks"] == first.chunks and st["chunks_done"] == first.chunks
    assert st["tiles_done"] == first.tiles_done
    # a second run recomputes nothing: every chunk is resumed from the bucket
    stamps = {k: s3.client.head_object(Bucket=s3.name, Key=k)["ETag"] for k in records}
    offset = s3.server.log_offset()
    second = assemble(tmp_path / "b.tif", progress=False, **opts)
    assert second.chunks_resumed == first.chunks
    puts = [p for m, p, _ in s3.server.requests(offset) if m == "PUT"]
    assert not [p for p in puts if "/runs/one/" in p], puts
    assert stamps == {k: s3.client.head_object(Bucket=s3.name, Key=k)["ETag"] for k in records}
    assert_same(tmp_path / "b.tif", oracle)
    # a different configuration is refused; restart discards the run's own objects only
    s3.client.put_object(Bucket=s3.name, Key="runs/one/mine.txt", Body=b"keep")
    with pytest.raises(Exception, match="different configuration"):
        assemble(tmp_path / "c.tif", progress=False, **{**opts, "pixel_selection": "first"})
    assemble(tmp_path / "c.tif", progress=False, **{**opts, "keep_run_dir": False})
    assert s3.keys("runs/") == ["runs/one/mine.txt"]


def test_a_prefix_that_is_not_a_run_directory_is_refused_and_left(s3, demo, tmp_path):
    s3.client.put_object(Bucket=s3.name, Key="other/data.bin", Body=b"x")
    res = CliRunner().invoke(cli, [str(tmp_path / "o.tif"), "--bbox", *map(str, demo.bbox),
                                   "--zoom", str(ZOOM), "--items", str(demo.items_path),
                                   "--assets", "red", "--run-dir", s3.url("other"),
                                   "--restart"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "not a run directory" in res.output and "Traceback" not in res.output
    assert s3.keys("other/") == ["other/data.bin"]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("s3://", "not an s3://bucket/key URL"),
        ("s3://Bad_Bucket/out.tif", "not a valid S3 bucket name"),
        ("s3://no-such-bucket-here/out.tif", "bucket does not exist"),
        ("s3://{bucket}", "names a bucket, not an object key"),
    ],
)
def test_bad_s3_outputs_are_one_line_and_exit_2(s3, demo, output, expected):
    args = [output.format(bucket=s3.name), "--bbox", *map(str, demo.bbox), "--zoom", str(ZOOM),
            "--items", str(demo.items_path)]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert expected in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_no_credentials_is_one_line_and_exit_2(s3, demo, monkeypatch):
    from mosaic_assembler.storage import reset_clients

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    reset_clients()
    args = [s3.url("o.tif"), "--bbox", *map(str, demo.bbox), "--zoom", str(ZOOM), "--items",
            str(demo.items_path)]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert "no AWS credentials" in res.output and "Traceback" not in res.output


def test_a_missing_s3_asset_is_a_failed_tile_with_its_reason(s3, demo, tmp_path):
    items = json.loads(demo.items_path.read_text())
    upload_demo(s3, demo)
    for item in items["features"]:
        for asset in item["assets"].values():
            asset["href"] = s3.url("inputs/" + asset["href"].lstrip("./"))
    items["features"][0]["assets"]["red"]["href"] = s3.url("inputs/gone.tif")
    path = tmp_path / "items.json"
    path.write_text(json.dumps(items))
    r = assemble(tmp_path / "o.tif", progress=False, allow_partial=True, **_options(str(path)))
    assert r.tiles_failed > 0 and r.tiles_done > 0
    res = CliRunner().invoke(cli, [str(tmp_path / "p.tif"), "--zoom", str(ZOOM), "--tilesize",
                                   str(TILESIZE), "--items", str(path), "--assets",
                                   "red,green,blue", "--chunk-tiles", "1", "-q"])  # fmt: skip
    assert res.exit_code == 1
    assert "gone.tif" in res.output and "Traceback" not in res.output


def test_aws_endpoint_url_alone_reaches_gdal(s3, demo, oracle, tmp_path, monkeypatch):
    for name in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"):
        monkeypatch.delenv(name)
    config = gdal_env()
    assert config["AWS_S3_ENDPOINT"] == f"127.0.0.1:{s3.server.port}"
    assert config["AWS_HTTPS"] == "NO" and config["AWS_VIRTUAL_HOSTING"] == "FALSE"
    items = upload_demo(s3, demo)
    assemble(s3.url("e.tif"), progress=False, **_options(items))
    assert_same(s3.download("e.tif", tmp_path / "e.tif"), oracle)


def test_gdal_env_keeps_what_the_environment_sets():
    env = {"AWS_ENDPOINT_URL": "https://s3.example.com", "GDAL_HTTP_MAX_RETRY": "9"}
    config = gdal_env(env)
    assert config["AWS_S3_ENDPOINT"] == "s3.example.com" and config["AWS_HTTPS"] == "YES"
    assert "GDAL_HTTP_MAX_RETRY" not in config and config["GDAL_HTTP_RETRY_DELAY"]
    assert "AWS_S3_ENDPOINT" not in gdal_env({**env, "AWS_S3_ENDPOINT": "other:9000"})
    names = gdal_env({**env, "AWS_SECRET_ACCESS_KEY": "x", "AWS_ACCESS_KEY_ID": "y"})
    assert not any("KEY" in k or "SECRET" in k for k in names)


def test_credentials_are_never_written_or_printed(s3, demo, tmp_path, capfd):
    items = upload_demo(s3, demo)
    run_dir = s3.url("secret-check/run")
    res = CliRunner().invoke(cli, [s3.url("secret-check/out.tif"), "--zoom", str(ZOOM),
                                   "--tilesize", str(TILESIZE), "--items", items, "--assets",
                                   "red,green,blue", "--chunk-tiles", "1", "--run-dir", run_dir,
                                   "--keep-run-dir", "--json", "-vv"])  # fmt: skip
    assert res.exit_code == 0, res.output
    status = CliRunner().invoke(cli, ["status", run_dir, "--json"])
    bad = CliRunner().invoke(cli, [s3.url("secret-check/out.tif"), "--zoom", str(ZOOM),
                                   "--items", items, "-vv"])  # fmt: skip
    assert bad.exit_code == 2
    captured = capfd.readouterr()
    texts = {"stdout": res.output, "status": status.output, "error": bad.output,
             "captured": captured.out + captured.err}  # fmt: skip
    for key in s3.keys("secret-check/"):
        texts[key] = s3.get(key).decode("latin-1")
    assert any(k.endswith("run.json") for k in texts) and any("/records/" in k for k in texts)
    for name, text in texts.items():
        for secret in (FAKE_SECRET, FAKE_KEY_ID):
            assert secret not in text, f"{secret[:6]}… found in {name}"


def test_s3_chunk_files_are_compressed_losslessly(s3, demo, tmp_path):
    """Chunk files of an S3 run directory go up ZSTD-compressed; a local one's stay raw; both
    hold the same pixels and mask, and the S3 ones are smaller."""
    opts = _options(str(demo.items_path), keep_run_dir=True)
    assemble(tmp_path / "a.tif", progress=False, run_dir=str(tmp_path / "run"), **opts)
    assemble(tmp_path / "b.tif", progress=False, run_dir=s3.url("zrun"), **opts)
    local = sorted((tmp_path / "run" / "chunks").glob("r*-c*.tif"))
    remote = sorted(k for k in s3.keys("zrun/chunks/"))
    assert [p.name for p in local] == [k.rsplit("/", 1)[1] for k in remote] and local
    local_bytes = remote_bytes = 0
    for path, key in zip(local, remote, strict=True):
        got = s3.download(key, tmp_path / "got.tif")
        with rasterio.open(path) as want, rasterio.open(got) as have:
            assert want.compression is None
            assert have.compression is not None and have.compression.name == "zstd"
            assert have.overviews(1) == want.overviews(1)
            numpy.testing.assert_array_equal(have.read(), want.read())
            numpy.testing.assert_array_equal(have.read_masks(1), want.read_masks(1))
        local_bytes += path.stat().st_size
        remote_bytes += got.stat().st_size
    assert remote_bytes < local_bytes / 2, (remote_bytes, local_bytes)
    assert_same(tmp_path / "b.tif", tmp_path / "a.tif")


@pytest.fixture(scope="module")
def recording_moto(tmp_path_factory):
    """A moto server that keeps each request's x-amz-request-payer header."""
    server = MotoServer(record=tmp_path_factory.mktemp("moto") / "requests.jsonl")
    yield server
    server.stop()


def _bucket_of(server: MotoServer, monkeypatch) -> S3Bucket:
    return bucket_on(server, monkeypatch)


@pytest.mark.parametrize("payer", ["requester", None])
def test_requester_pays_is_sent_on_every_request(recording_moto, demo, oracle, tmp_path,
                                                 monkeypatch, payer):  # fmt: skip
    """With AWS_REQUEST_PAYER=requester, GDAL's /vsis3/ reads (inputs, the finalize's chunk
    reads) and every boto3 request of the run (run directory, output) carry
    x-amz-request-payer: requester, as the server saw them; without it, none does."""
    bucket = _bucket_of(recording_moto, monkeypatch)
    items = upload_demo(bucket, demo)
    if payer:
        monkeypatch.setenv("AWS_REQUEST_PAYER", payer)
    start = len(recording_moto.recorded())
    opts = _options(items, run_dir=bucket.url("rp/run"), keep_run_dir=True)
    assemble(bucket.url("rp/out.tif"), progress=False, **opts)
    assert CliRunner().invoke(cli, ["status", bucket.url("rp/run")]).exit_code == 0
    seen = [r for r in recording_moto.recorded()[start:] if r["path"].startswith(f"/{bucket.name}")]
    assert_same(bucket.download("rp/out.tif", tmp_path / "out.tif"), oracle)  # (the test's GET)
    head_bucket = [
        r for r in seen if r["method"] == "HEAD" and r["path"].rstrip("/").count("/") == 1
    ]
    inputs = [r for r in seen if r["method"] == "GET" and r["path"].upper().endswith(".TIF")
              and "/inputs/" in r["path"]]  # fmt: skip
    chunks = [r for r in seen if r["method"] == "GET" and "/rp/run/chunks/" in r["path"]]
    writes = [r for r in seen if r["method"] in ("PUT", "POST")]
    assert inputs and chunks and writes  # GDAL's input and chunk reads, boto3's writes
    others = [r for r in seen if r not in head_bucket]  # HeadBucket takes no RequestPayer
    if payer:
        assert [r for r in others if r["payer"] != "requester"] == []
    else:
        leaked = [r for r in seen if r["payer"] is not None]
        assert leaked == [], (len(leaked), len(seen), leaked[:3])


@pytest.mark.parametrize("where", ["local", "s3"])
def test_retried_tile_history_survives_in_the_run_dir(s3, demo, tmp_path, where):
    """Tiles that failed in a first attempt (an s3:// asset missing) and succeeded on the rerun
    (the asset uploaded) are the chunk's `retried` tiles in its end record, read back from an
    S3 run directory as from a local one."""
    upload_demo(s3, demo)
    items = json.loads(demo.items_path.read_text())
    for item in items["features"]:
        for asset in item["assets"].values():
            asset["href"] = s3.url("inputs/" + asset["href"].lstrip("./"))
    red = items["features"][0]["assets"]["red"]
    original = red["href"].removeprefix(f"s3://{s3.name}/")
    red["href"] = s3.url("inputs/late/red.tif")
    path = tmp_path / "items.json"
    path.write_text(json.dumps(items))
    run = s3.url("hist/run") if where == "s3" else str(tmp_path / "run")
    opts = _options(str(path), run_dir=run, keep_run_dir=True)

    def end_records() -> list[dict]:
        if where == "s3":
            return [json.loads(s3.get(k)) for k in s3.keys("hist/run/records/")]
        last = {}
        for e in map(json.loads, (tmp_path / "run" / "manifest.jsonl").read_text().splitlines()):
            if e.get("event") == "end":
                last[e["chunk"]] = e
        return list(last.values())

    with pytest.raises(Exception, match="tiles failed"):
        assemble(tmp_path / "o.tif", progress=False, **opts)
    first = end_records()
    failed = {tuple(t[:3]) for e in first for t in e["failed"]}
    assert failed and any(e["done"] for e in first)  # some tiles failed, others did not
    s3.client.copy_object(Bucket=s3.name, Key="inputs/late/red.tif",
                          CopySource={"Bucket": s3.name, "Key": original})  # fmt: skip
    # the rerun in a new process, as a resume is (this one's GDAL remembers the 404)
    args = [str(tmp_path / "o.tif"), "--zoom", str(ZOOM), "--tilesize", str(TILESIZE),
            "--items", str(path), "--assets", "red,green,blue", "--pixel-selection", "median",
            "--chunk-tiles", "1", "--run-dir", run, "--keep-run-dir", "--json", "-q"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", "from mosaic_assembler.cli import main; main()", *args],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert r["tiles_failed"] == 0 and 0 < r["chunks_resumed"] < r["chunks"]
    ends = end_records()
    assert all(e["status"] == "done" and not e["failed"] for e in ends)
    retried = {tuple(t) for e in ends for t in e["retried"]}
    assert retried == failed
    # the chunks that had no failure kept their record as the worker wrote it
    calm = {e["chunk"] for e in first if not e["failed"]}
    assert calm and all(not e["retried"] for e in ends if e["chunk"] in calm)
