"""The real CLI against a tiler that lies (tests/servers.py `HostileTiler`), in a subprocess.

Each run must end within a bounded time and peak RSS, with one clear `Error:` line, and a
secret planted in a `--header` value and in a `?token=` of the template must appear in none
of stderr, stdout (`--json`) or the `-vv` log. A redirect to another origin must not carry
the custom headers there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servers import HostileTiler, RecordingServer

import mosaic_assembler

SECRET_HEADER = "hdr-Pl4nted-S3cret"
SECRET_TOKEN = "tok-Pl4nted-S3cret"
# 4 x 4 tiles at zoom 10 (and a few more at the edges): more tiles than --concurrency 16
BBOX = ("0.01", "0.01", "1.39", "1.39")
RSS_LIMIT_MB = 500
TIME_LIMIT_S = 60

# Runs the CLI as a child and reports the child's peak RSS: only the CLI's own memory counts.
# An address-space limit keeps a regression from taking the machine down with it.
_WRAPPER = """
import json, resource, subprocess, sys
def limit():
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
rc = subprocess.call(sys.argv[2:], preexec_fn=limit)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
open(sys.argv[1], "w").write(json.dumps({"rc": rc, "peak_kb": peak}))
"""


@pytest.fixture(scope="module")
def servers():
    rec = RecordingServer()
    tiler = HostileTiler(redirect_to=rec.url)
    yield tiler, rec
    tiler.stop()
    rec.stop()


def run_cli(tmp_path: Path, template: str, *extra: str, timeout: float = 180) -> dict:
    """Run `assemble-mosaic` on the hostile tiler; rc, stdout, stderr, peak MB, seconds."""
    report = tmp_path / "report.json"
    cli = [sys.executable, "-c", "from mosaic_assembler.cli import main; main()"]
    args = [
        str(tmp_path / "out.tif"),
        "--bbox",
        *BBOX,
        "--zoom",
        "10",
        "--tiler",
        template,
        "--header",
        f"X-Api-Key={SECRET_HEADER}",
        "--header",
        f"Authorization=Bearer {SECRET_HEADER}",
        "--concurrency",
        "16",
        "--json",
        "-vv",
        *extra,
    ]
    # the child imports the package this test imported (the worktree's, not an installed one)
    root = Path(mosaic_assembler.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(report), *cli, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )
    seconds = time.monotonic() - t0
    r = json.loads(report.read_text())
    return dict(
        rc=r["rc"], out=p.stdout, err=p.stderr, peak_mb=r["peak_kb"] / 1024, seconds=seconds
    )


def error_lines(r: dict) -> list[str]:
    return [ln for ln in r["err"].splitlines() if ln.startswith("Error:")]


def assert_no_secret(r: dict, tmp_path: Path) -> None:
    for where in ("out", "err"):
        for secret in (SECRET_HEADER, SECRET_TOKEN):
            assert secret not in r[where], f"{secret} in {where}:\n{r[where][-3000:]}"


def assert_bounded(r: dict) -> None:
    assert r["peak_mb"] < RSS_LIMIT_MB, f"peak RSS {r['peak_mb']:.0f} MB"
    assert r["seconds"] < TIME_LIMIT_S, f"{r['seconds']:.0f} s"
    lines = error_lines(r)
    assert r["rc"] != 0 and len(lines) == 1, r["err"][-3000:]


@pytest.mark.parametrize(
    "mode,extra,says",
    [
        ("huge", ("--retries", "1"), "28000"),
        ("endless", ("--retries", "1", "--timeout", "20"), "exceeds"),
        ("drip", ("--retries", "1", "--timeout", "3"), "deadline"),
    ],
)
def test_lying_tiles_are_bounded(servers, tmp_path, mode, extra, says):
    tiler, _ = servers
    r = run_cli(tmp_path, tiler.template(mode, f"token={SECRET_TOKEN}"), *extra)
    assert_bounded(r)
    assert says in error_lines(r)[0], error_lines(r)[0]
    assert_no_secret(r, tmp_path)


def test_error_body_echoing_the_request_is_redacted(servers, tmp_path):
    tiler, _ = servers
    r = run_cli(tmp_path, tiler.template("echo", f"token={SECRET_TOKEN}&tilesize=512"))
    assert_bounded(r)
    line = error_lines(r)[0]
    assert "HTTP 400" in line and "cannot serve" in line, line
    assert_no_secret(r, tmp_path)


def test_cross_origin_redirect_drops_the_headers(servers, tmp_path):
    tiler, rec = servers
    rec.seen.clear()
    r = run_cli(tmp_path, tiler.template("redirect"), "--allow-empty")
    assert rec.seen, r["err"][-2000:]  # the redirect was followed
    for headers in rec.seen:
        assert not {k.lower() for k in headers} & {"x-api-key", "authorization"}, headers
        assert SECRET_HEADER not in json.dumps(headers)
    assert_no_secret(r, tmp_path)
