"""Chunked runs: kill and resume, configuration changes, Dask, split outputs, status."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import numpy
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate
from test_http import assert_same_cog

from mosaic_assembler import assemble
from mosaic_assembler.cli import cli
from mosaic_assembler.state import read_manifest

ZOOM, TILESIZE = 11, 256


def _cmd(scenes, out, *extra, zoom=ZOOM):
    return [
        sys.executable,
        "-m",
        "mosaic_assembler.cli",
        "--bbox",
        *map(str, scenes.bbox),
        "--zoom",
        str(zoom),
        "--tilesize",
        str(TILESIZE),
        "--mosaicjson",
        str(scenes.mosaicjson),
        "--pixel-selection",
        "median",
        "--chunk-tiles",
        "1",
        "--concurrency",
        "1",
        "-q",
        *extra,
        str(out),
    ]


@pytest.fixture(scope="module")
def reference(scenes, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "ref.tif"
    assemble(
        out,
        bbox=scenes.bbox,
        zoom=ZOOM,
        tilesize=TILESIZE,
        mosaicjson=scenes.mosaicjson,
        pixel_selection="median",
        progress=False,
    )
    return out


def test_kill_and_resume_is_identical_and_never_redoes_done_chunks(scenes, tmp_path):
    zoom = 12  # ~120 chunks of one 256-px tile: a run of several seconds to kill
    reference = tmp_path / "ref.tif"
    ref = assemble(
        reference,
        bbox=scenes.bbox,
        zoom=zoom,
        tilesize=TILESIZE,
        mosaicjson=scenes.mosaicjson,
        pixel_selection="median",
        progress=False,
    )
    assert ref.tiles_total > 80
    out, run_dir = tmp_path / "o.tif", tmp_path / "run"
    rng = random.Random(1234)
    kills = 0

    def finished_chunks():
        return sum(e["event"] == "end" for e in read_manifest(run_dir)) if run_dir.exists() else 0

    for _ in range(8):
        before = finished_chunks()
        proc = subprocess.Popen(
            _cmd(scenes, out, "--run-dir", str(run_dir), "--keep-run-dir", zoom=zoom),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        # kill only after this run recorded progress, then at a seeded random moment
        while finished_chunks() <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.random() * 0.6)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert not out.exists()  # killed runs never leave an output
        if kills >= 4:
            break
    assert kills >= 3, "the run finished before it could be killed three times"
    ends = [e for e in read_manifest(run_dir) if e["event"] == "end"]
    assert ends, "no chunk finished between kills"
    st = CliRunner().invoke(cli, ["status", str(run_dir), "--json"])
    status = json.loads(st.stdout)
    assert status["chunks_done"] == len({e["chunk"] for e in ends if e["status"] != "failed"})
    assert status["chunks_pending"] > 0
    # resume to the end
    r = subprocess.run(
        _cmd(scenes, out, "--run-dir", str(run_dir), "--keep-run-dir", zoom=zoom),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert_same_cog(reference, out)
    assert cog_validate(str(out), quiet=True)[0]
    # no chunk was handed out again after it was recorded finished
    finished_at: dict[str, int] = {}
    for n, e in enumerate(read_manifest(run_dir)):
        if e["event"] == "end" and e["status"] in ("done", "empty"):
            assert e["chunk"] not in finished_at, f"{e['chunk']} computed twice"
            finished_at[e["chunk"]] = n
        if e["event"] == "submit":
            assert e["chunk"] not in finished_at, f"{e['chunk']} resubmitted after done"
    done_counts = Counter(
        e["chunk"] for e in read_manifest(run_dir) if e["event"] == "end" and e["status"] == "done"
    )
    assert max(done_counts.values()) == 1


def test_rerun_of_a_finished_run_computes_nothing(scenes, tmp_path):
    out, run_dir = tmp_path / "o.tif", tmp_path / "run"
    kw = dict(
        bbox=scenes.bbox,
        zoom=ZOOM,
        tilesize=TILESIZE,
        mosaicjson=scenes.mosaicjson,
        run_dir=run_dir,
        keep_run_dir=True,
        chunk_tiles=2,
        progress=False,
    )
    first = assemble(out, **kw)
    assert first.chunks_resumed == 0 and run_dir.exists()
    n = len(read_manifest(run_dir))
    again = assemble(out, overwrite=True, **kw)
    assert again.chunks_resumed == again.chunks
    assert not [e for e in read_manifest(run_dir)[n:] if e["event"] == "submit"]
    # a chunk file that went missing is redone
    victim = next((run_dir / "chunks").glob("*.tif"))
    victim.unlink()
    third = assemble(out, overwrite=True, **kw)
    assert third.chunks_resumed == third.chunks - 1
    assert_same_cog(out, out)


def test_config_change_is_refused_then_restart(scenes, tmp_path):
    out, run_dir = tmp_path / "o.tif", tmp_path / "run"
    base = [
        "--bbox",
        *map(str, scenes.bbox),
        "--zoom",
        "10",
        "--mosaicjson",
        str(scenes.mosaicjson),
        "--run-dir",
        str(run_dir),
        "--keep-run-dir",
    ]
    r = CliRunner().invoke(cli, [*base, "--pixel-selection", "first", str(out)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, [*base, "--pixel-selection", "median", "--overwrite", str(out)])
    assert r.exit_code == 2 and "different configuration" in r.output and "--restart" in r.output
    r = CliRunner().invoke(
        cli, [*base, "--pixel-selection", "median", "--overwrite", "--restart", str(out)]
    )
    assert r.exit_code == 0, r.output


def test_dask_local_cluster_equals_threads(scenes, reference, tmp_path):
    out = tmp_path / "dask.tif"
    r = assemble(
        out,
        bbox=scenes.bbox,
        zoom=ZOOM,
        tilesize=TILESIZE,
        mosaicjson=scenes.mosaicjson,
        pixel_selection="median",
        dask_local=2,
        chunk_tiles=2,
        progress=False,
    )
    assert r.tiles_done > 0
    assert_same_cog(reference, out)


def test_dask_worker_killed_mid_run_still_finishes_identically(scenes, reference, tmp_path):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    )
    client = Client(cluster)
    killed = []

    def kill_one():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until chunks are being computed
            if any(client.processing().values()):
                break
            time.sleep(0.05)
        time.sleep(0.5)
        pids = client.run(os.getpid)
        pid = sorted(pids.values())[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    try:
        t = threading.Thread(target=kill_one, daemon=True)
        t.start()
        out = tmp_path / "o.tif"
        assemble(
            out,
            bbox=scenes.bbox,
            zoom=ZOOM,
            tilesize=TILESIZE,
            mosaicjson=scenes.mosaicjson,
            pixel_selection="median",
            dask_scheduler=cluster.scheduler_address,
            chunk_tiles=1,
            concurrency=1,
            progress=False,
        )
        t.join(60)
    finally:
        client.close()
        cluster.close()
    assert killed, "no worker was killed"
    assert_same_cog(reference, out)


def test_split_zoom_tiles_the_output_exactly(scenes, reference, tmp_path):
    import pystac
    from cogeo_mosaic.backends import MosaicBackend

    out = tmp_path / "split"
    r = assemble(
        out,
        bbox=scenes.bbox,
        zoom=ZOOM,
        tilesize=TILESIZE,
        mosaicjson=scenes.mosaicjson,
        pixel_selection="median",
        split_zoom=9,
        progress=False,
    )
    assert out.is_dir() and len(r.outputs) >= 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p in r.outputs]
        + [f"{p.stem}.json" for p in r.outputs]  # each COG's STAC Item (sidecar)
        + ["items.json", "mosaic.json", "collection.json"]
    )
    with rasterio.open(reference) as ref:
        covered = numpy.zeros(ref.shape, dtype="uint8")
        ref_data, ref_mask = ref.read(), ref.dataset_mask()
        for path in r.outputs:
            assert cog_validate(str(path), quiet=True)[0]
            with rasterio.open(path) as part:
                assert part.res == ref.res
                col, row = ~ref.transform * (part.bounds.left, part.bounds.top)
                col, row = round(col), round(row)
                win = (slice(row, row + part.height), slice(col, col + part.width))
                covered[win] += 1
                m = part.dataset_mask()
                numpy.testing.assert_array_equal(m, ref_mask[win])
                numpy.testing.assert_array_equal(
                    part.read()[:, m > 0], ref_data[:, win[0], win[1]][:, m > 0]
                )
    assert covered.max() == 1  # no overlaps
    assert (covered[ref_mask > 0] == 1).all()  # no gaps where there is data
    backend = MosaicBackend(str(out / "mosaic.json"))
    qk = r.outputs[0].stem
    import mercantile

    t = mercantile.quadkey_to_tile(qk)
    assert backend.assets_for_tile(t.x, t.y, t.z) == [str(r.outputs[0])]
    items = pystac.ItemCollection.from_file(str(out / "items.json"))
    assert len(items) == len(r.outputs)
    from pystac.validation import validate_dict

    for item in items:
        validate_dict(item.to_dict(), extensions=[])  # core schema, offline
        assert (out / item.assets["data"].href).exists()


def test_status_of_a_non_run_dir(tmp_path):
    r = CliRunner().invoke(cli, ["status", str(tmp_path)])
    assert r.exit_code == 2 and "not a run directory" in r.output
