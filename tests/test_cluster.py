"""A run on a real Dask cluster whose workers share no disk: `dask scheduler`, two `dask worker`s.

Inputs (the demo's items and scenes), the run directory and the output all live in the S3
server's bucket; each worker has its own cwd, HOME and TMPDIR. Oracle: the same run computed
locally with threads, read back with rasterio.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from cluster_fixtures import DaskCluster, isolated_env
from test_storage import assert_same, upload_demo

from mosaic_assembler import assemble
from mosaic_assembler.demo_data import make_demo_sample

pytest.importorskip("distributed")

ZOOM, TILESIZE = 12, 256


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_sample(tmp_path_factory.mktemp("demo"), n_scenes=4, size=256, resolution=120.0)


def _options(items: str) -> dict:
    return dict(
        zoom=ZOOM, tilesize=TILESIZE, items=items, assets=("red", "green", "blue"),
        pixel_selection="median", chunk_tiles=1,
    )  # fmt: skip


@pytest.fixture(scope="module")
def oracle(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("oracle") / "local.tif"
    result = assemble(out, progress=False, **_options(str(demo.items_path)))
    assert result.chunks >= 30  # enough chunks to kill something mid-run
    return out


@pytest.fixture
def cluster(s3, tmp_path):
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    c = DaskCluster(2, env, root=tmp_path / "cluster")
    yield c
    c.stop()


def _records(s3, prefix: str) -> list[str]:
    return [k for k in s3.keys(f"{prefix}/records/") if k.endswith(".json")]


def _wait_for(predicate, timeout: float = 300.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_cluster_run_equals_the_local_run_even_when_a_worker_dies(
    s3, demo, oracle, cluster, tmp_path
):
    items = upload_demo(s3, demo)
    run_dir = s3.url("run")
    outcome: dict = {}

    def drive() -> None:
        try:
            outcome["result"] = assemble(
                s3.url("out.tif"), progress=False, dask_scheduler=cluster.address,
                run_dir=run_dir, **_options(items),
            )  # fmt: skip
        except BaseException as e:  # reported below
            outcome["error"] = e

    driver = threading.Thread(target=drive)
    driver.start()
    _wait_for(lambda: len(_records(s3, "run")) >= 3 or not driver.is_alive(), what="3 records")
    assert driver.is_alive(), outcome
    cluster.kill_worker(0)  # mid-run: its chunk is rescheduled on the other worker
    driver.join(600)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.chunks_resumed == 0 and result.tiles_failed == 0
    assert_same(s3.download("out.tif", tmp_path / "out.tif"), oracle)
    assert s3.keys("run/") == []  # the run directory's objects are gone after success
    # the workers wrote nothing in the driver's directories, nor the driver in theirs
    assert not list(tmp_path.glob("*.run"))


def test_a_killed_driver_resumes_from_the_s3_run_dir_without_recomputing(
    s3, demo, oracle, cluster, tmp_path
):
    items = upload_demo(s3, demo)
    run_dir = s3.url("run")
    args = [
        sys.executable, "-m", "mosaic_assembler.cli", s3.url("out.tif"), "--zoom", str(ZOOM),
        "--tilesize", str(TILESIZE), "--items", items, "--assets", "red,green,blue",
        "--pixel-selection", "median", "--chunk-tiles", "1", "--dask-scheduler",
        cluster.address, "--run-dir", run_dir, "--json", "-q",
    ]  # fmt: skip
    home = tmp_path / "driver"
    env = isolated_env({k: v for k, v in os.environ.items() if k.startswith("AWS_")}, home)
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(args, cwd=home, env=env, stdout=log, stderr=log)
    _wait_for(lambda: len(_records(s3, "run")) >= 8 or first.poll() is not None, what="records")
    assert first.poll() is None, (tmp_path / "first.log").read_text()
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    # chunks already running on the workers still end (and record): wait until they have
    stable: list[int] = []

    def settled() -> bool:
        stable.append(len(_records(s3, "run")))
        return len(stable) > 30 and len(set(stable[-30:])) == 1

    _wait_for(settled, what="the workers to finish their chunks")
    recorded = {k.rsplit("/", 1)[-1][: -len(".json")] for k in _records(s3, "run")}
    assert not s3.keys("out.tif")  # no output yet
    offset = s3.server.log_offset()
    second = subprocess.run(args, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    result = json.loads(second.stdout)
    assert result["chunks_resumed"] == len(recorded) > 0
    writes = [p for m, p, _ in s3.server.requests(offset) if m in ("PUT", "POST")]
    again = [p for p in writes for key in recorded if f"/run/chunks/{key}.tif" in p]
    again += [p for p in writes for key in recorded if f"/run/records/{key}.json" in p]
    assert again == []  # no chunk with an end record was computed (uploaded) again
    assert any("/run/records/" in p for p in writes)  # the others were
    assert_same(s3.download("out.tif", tmp_path / "out.tif"), oracle)
    assert s3.keys("run/") == []
