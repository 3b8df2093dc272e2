"""A real S3-compatible server on 127.0.0.1 for tests and benchmarks: moto in server mode.

`MotoServer` runs `python -m moto.server` in a subprocess on a free loopback port and keeps
its access log (werkzeug's, one line per request) in a file, so tests and
`scripts/bench_cluster.py` count the requests at the server. The `s3` fixture gives each test
a fresh bucket and points boto3 (AWS_ENDPOINT_URL) and GDAL (AWS_S3_ENDPOINT, AWS_HTTPS,
AWS_VIRTUAL_HOSTING) at it, with planted fake keys (FAKE_KEY_ID, FAKE_SECRET) that tests grep
for in everything the tool writes.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import stop_process

#: Planted credentials: moto accepts any; no file, log or message may ever show them.
FAKE_KEY_ID = "AKIAPLANTEDKEY7QX2ZW"
FAKE_SECRET = "planted/Secret+Key9vT3nQ8rW2xY5zA1bC4dE6fG"

#: One access-log line (werkzeug colours some statuses with ANSI codes around the request).
_ANSI = r"(?:\x1b\[[\d;]*m)*"
_REQUEST = re.compile(rf'"{_ANSI}(GET|PUT|POST|DELETE|HEAD) (\S+) HTTP/[\d.]+{_ANSI}" (\d+)')


#: moto's server with a WSGI wrapper that appends, per request, its method, path and the one
#: header a test asks about (`x-amz-request-payer`) to a file: what reached the server. No
#: other header is kept (Authorization carries the access key id).
_RECORDING_SERVER = r"""
import json, os, signal, sys, threading
from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

host, port, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.environ.setdefault("MOTO_PORT", str(port))
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
out = open(record, "a", buffering=1)

def recording(environ, start_response):
    line = json.dumps({"method": environ["REQUEST_METHOD"], "path": environ.get("PATH_INFO", ""),
                       "query": environ.get("QUERY_STRING", ""),
                       "payer": environ.get("HTTP_X_AMZ_REQUEST_PAYER")})
    with lock:
        out.write(line + "\n")
    return app(environ, start_response)

signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
run_simple(host, port, recording, threaded=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 server in a subprocess on a free loopback port, with an access log."""

    def __init__(self, log: Path | None = None, record: Path | None = None):
        """Start the server (`record`: also keep each request's x-amz-request-payer there)."""
        self.port = _free_port()
        self.record_path = record
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        command = ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        if record is not None:
            record.write_text("")
            command = ["-c", _RECORDING_SERVER, "127.0.0.1", str(self.port), str(record)]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            stdout=self._log,
            stderr=self._log,
            env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto server did not start within 60 s") from None
                time.sleep(0.1)

    def env(self) -> dict[str, str]:
        """The environment that points boto3 and GDAL at this server, with the fake keys."""
        return {
            "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.url,
            "AWS_S3_ENDPOINT": f"127.0.0.1:{self.port}",
            "AWS_HTTPS": "NO",
            "AWS_VIRTUAL_HOSTING": "FALSE",
            # never ask an instance-metadata service (it is not on 127.0.0.1)
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def client(self):
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=FAKE_KEY_ID,
            aws_secret_access_key=FAKE_SECRET,
        )

    def log_offset(self) -> int:
        """The access log's current size (count requests from here with `requests`)."""
        self._log.flush()
        return self.log_path.stat().st_size

    def requests(self, since: int = 0) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request logged after byte `since`."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return [(m, p, int(s)) for m, p, s in _REQUEST.findall(text)]

    def recorded(self) -> list[dict[str, str | None]]:
        """Each request so far: method, path, query and its x-amz-request-payer (or None)."""
        import json

        assert self.record_path is not None, "start the server with record="
        return [json.loads(line) for line in self.record_path.read_text().splitlines()]

    def stop(self) -> None:
        """Terminate the server."""
        stop_process(self.proc)
        self._log.close()


@dataclass
class S3Bucket:
    """A fresh bucket on the test server."""

    server: MotoServer
    name: str
    client: object

    def url(self, key: str) -> str:
        """s3://bucket/key."""
        return f"s3://{self.name}/{key}"

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix`."""
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        ):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def get(self, key: str) -> bytes:
        """An object's bytes."""
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def download(self, key: str, path: Path) -> Path:
        """An object saved to a local file."""
        path.write_bytes(self.get(key))
        return path

    def upload(self, path: Path, key: str) -> str:
        """A local file put at `key`; its s3:// URL."""
        self.client.upload_file(str(path), self.name, key)
        return self.url(key)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    yield server
    server.stop()


def bucket_on(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh bucket on `server`, the environment pointing boto3 and GDAL at it (only)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    # no credentials or config files of the machine
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    from mosaic_assembler.storage import reset_clients

    reset_clients()
    client = server.client()
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return S3Bucket(server, name, client)


@pytest.fixture
def s3(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    """A fresh bucket, with the environment pointing boto3 and GDAL at the server."""
    from mosaic_assembler.storage import reset_clients

    yield bucket_on(moto_server, monkeypatch)
    reset_clients()
