"""A median run on a real Dask cluster with its run directory and output on S3 (moto server).

The same run (>= 1,000 tiles of 256 px over the demo sample) on 1, 2 and 4 `dask worker`
processes (one thread each), with `--run-dir s3://…` and an s3:// OUTPUT on a local moto
server. Printed per worker count: wall time, driver and worker peak RSS, object-store requests
per tile (counted at the server: moto's access log), and the bytes written to the store
against the output's size. The inputs are local files (the run directory's traffic is what is
measured).

    python scripts/bench_cluster.py [--workers 1,2,4] [--min-tiles 1000]
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from cluster_fixtures import DaskCluster, isolated_env  # noqa: E402
from s3_fixtures import MotoServer  # noqa: E402

from mosaic_assembler import assemble  # noqa: E402
from mosaic_assembler.demo_data import make_demo_sample  # noqa: E402

#: The CLI, reporting its own peak RSS on exit (stderr).
_DRIVER = (
    "import atexit, resource, sys; atexit.register(lambda: sys.stderr.write("
    "f'\\nPEAK_RSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')); "
    "from mosaic_assembler.cli import main; sys.argv[0] = 'assemble-mosaic'; main()"
)


def _plan(items: str, min_tiles: int) -> tuple[int, int]:
    """The first zoom whose plan has >= min_tiles tiles of 256 px: (zoom, tiles)."""
    for zoom in range(8, 18):
        r = assemble("/tmp/x.tif", progress=False, dry_run=True, zoom=zoom, tilesize=256,
                     items=items, assets=("red", "green", "blue"))  # fmt: skip
        if r.tiles_total >= min_tiles:
            return zoom, r.tiles_total
    raise SystemExit("no zoom gives enough tiles")


def _run(n: int, server: MotoServer, items: str, zoom: int, work: Path) -> dict:
    bucket = f"bench-{n}-{int(time.time())}"
    client = server.client()
    client.create_bucket(Bucket=bucket)
    env = server.env()
    cluster = DaskCluster(n, env, root=work / f"cluster-{n}")
    try:
        home = work / f"driver-{n}"
        args = [
            sys.executable, "-c", _DRIVER, f"s3://{bucket}/out.tif",
            "--zoom", str(zoom), "--tilesize", "256", "--items", items,
            "--assets", "red,green,blue", "--pixel-selection", "median",
            "--dask-scheduler", cluster.address, "--run-dir", f"s3://{bucket}/run",
            "--keep-run-dir", "--json", "-q",
        ]  # fmt: skip
        home.mkdir(parents=True)
        offset = server.log_offset()
        t0 = time.perf_counter()
        done = subprocess.run(
            args, cwd=home, env=isolated_env(env, home), capture_output=True, text=True
        )
        wall = time.perf_counter() - t0
        peak = [ln for ln in done.stderr.splitlines() if ln.startswith("PEAK_RSS_KB ")]
        driver_kb = int(peak[-1].split()[1]) if peak else 0
        if done.returncode != 0:
            raise SystemExit(f"run on {n} worker(s) failed: {done.stderr[-2000:]}")
        result = json.loads(done.stdout)
        workers_kb = cluster.peak_rss_kb()
    finally:
        cluster.stop()
    requests = server.requests(offset)
    methods = collections.Counter(m for m, _, _ in requests)
    objects = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    tiles = result["tiles_total"]
    return {
        "workers": n,
        "tiles": tiles,
        "chunks": result["chunks"],
        "wall_s": round(wall, 1),
        "driver_peak_mb": round(driver_kb / 1024, 1),
        "worker_peak_mb": round(max(workers_kb.values(), default=0) / 1024, 1),
        "requests": sum(methods.values()),
        "requests_by_method": dict(methods),
        "requests_per_tile": round(sum(methods.values()) / tiles, 3),
        "bytes_written": sum(objects.values()),
        "output_bytes": objects.get("out.tif", 0),
        "written_over_output": round(sum(objects.values()) / max(1, objects.get("out.tif", 1)), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--min-tiles", type=int, default=1000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    demo = make_demo_sample(work / "demo")
    zoom, tiles = _plan(str(demo.items_path), args.min_tiles)
    print(f"plan: zoom {zoom}, {tiles} tiles of 256 px, median of {len(demo.scene_paths)} scenes")
    server = MotoServer(log=work / "moto.log")
    try:
        for n in (int(v) for v in args.workers.split(",")):
            row = _run(n, server, str(demo.items_path), zoom, work)
            print(json.dumps(row), flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
