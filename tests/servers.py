"""Real servers on 127.0.0.1 for tests and benchmarks: TiTiler, a fault-injecting proxy, and a
static file server with HTTP range requests (for /vsicurl/ reads of COGs)."""

from __future__ import annotations

import http.server
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server process (SIGTERM, then SIGKILL after 10 s) and reap it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until `url` answers 200, or raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


class TiTiler:
    """titiler.application served by uvicorn in a subprocess on a free loopback port."""

    def __init__(self, workers: int = 1, log: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.setdefault("GDAL_CACHEMAX", "128")
        env.setdefault("MOSAIC_CONCURRENCY", "1")
        self._log = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "titiler.application.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
            ],
            stdout=self._log,
            stderr=self._log,
            env=env,
        )
        try:
            wait_http(f"{self.url}/healthz", proc=self.proc)
        except Exception:
            self.stop()
            raise

    def mosaic_template(self, mosaicjson: Path | str) -> str:
        """The mosaic tile endpoint for a mosaicJSON file."""
        return f"{self.url}/mosaicjson/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.tif?url={mosaicjson}"

    def stop(self) -> None:
        """Terminate the server."""
        stop_process(self.proc)
        if self._log is not subprocess.DEVNULL:
            self._log.close()


class FaultProxy:
    """An HTTP proxy in front of an upstream server that injects seeded faults.

    Faults (probabilities): 500, 503, 429 with Retry-After, a delay past the client's timeout,
    a dropped connection, a truncated body. `mode="always-503"` fails every request;
    `mode="pass"` forwards everything (and counts). Bounded: it serves only loopback clients
    and stops with `stop()`.
    """

    FAULTS = ("500", "503", "429", "delay", "drop", "truncate")

    def __init__(
        self,
        upstream: str,
        seed: int = 0,
        rate: float = 0.35,
        delay: float = 3.0,
        mode: str = "faults",
    ):
        self.upstream = upstream.rstrip("/")
        self.rng = random.Random(seed)
        self.rate = rate
        self.delay = delay
        self.mode = mode
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                proxy._handle(self)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _pick(self) -> str:
        with self.lock:
            if self.mode == "always-503":
                fault = "503"
            elif self.mode == "pass" or self.rng.random() >= self.rate:
                fault = "ok"
            else:
                fault = self.rng.choice(self.FAULTS)
            self.counts[fault] += 1
            return fault

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        fault = self._pick()
        if fault in ("500", "503", "429"):
            body = b'{"detail": "injected fault"}'
            h.send_response(int(fault))
            if fault == "429":
                h.send_header("Retry-After", "1")
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault == "delay":
            time.sleep(self.delay)
        resp = requests.get(self.upstream + h.path, timeout=300)
        body = resp.content
        h.send_response(resp.status_code)
        for k in ("Content-Type", "Retry-After"):
            if k in resp.headers:
                h.send_header(k, resp.headers[k])
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if fault == "truncate" and len(body) > 10:
            h.wfile.write(body[: len(body) // 2])
            h.close_connection = True
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(body)

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def _declared_huge_tiff(size: int = 28000) -> bytes:
    """A GeoTIFF of a few hundred KB that declares `size` x `size` px x 2 bands (sparse)."""
    import rasterio
    from rasterio.io import MemoryFile

    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=2,
        dtype="uint8",
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        sparse_ok=True,
        crs="EPSG:3857",
        transform=rasterio.transform.from_origin(0, 0, 10, 10),
    )
    with MemoryFile() as mem:
        with mem.open(**profile):
            pass  # no block written: the file holds only the header and offsets
        return mem.read()


class RecordingServer:
    """Answers 204 to every GET and keeps the headers of every request it got."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        rec = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                rec.seen.append(dict(self.headers.items()))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class HostileTiler:
    """A tiler on 127.0.0.1 that lies; the first path segment picks how.

    `/huge/{z}/{x}/{y}.tif`: 200 with a small GeoTIFF declaring 28000 x 28000 px;
    `/endless/…`: 200 with a chunked body that never ends; `/drip/…`: 200 declaring 10 MB,
    then one byte a second; `/redirect/…`: 302 to `redirect_to` (another port); `/echo/…`:
    400 whose JSON `detail` echoes the request line and headers. Requests are counted by mode.
    """

    MODES = ("huge", "endless", "drip", "redirect", "echo")

    def __init__(self, redirect_to: str = "") -> None:
        self.redirect_to = redirect_to.rstrip("/")
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._huge_body = _declared_huge_tiff()
        self._stop = threading.Event()
        tiler = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                mode = self.path.strip("/").split("/")[0]
                with tiler.lock:
                    tiler.counts[mode] += 1
                try:
                    getattr(tiler, f"_{mode}")(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def template(self, mode: str, query: str = "") -> str:
        """The tile URL template of a mode (`query` appended after `?`)."""
        return f"{self.url}/{mode}/{{z}}/{{x}}/{{y}}.tif" + (f"?{query}" if query else "")

    @staticmethod
    def _head(h: http.server.BaseHTTPRequestHandler, status: int, **headers: str) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k.replace("_", "-"), v)
        h.end_headers()

    def _huge(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self._head(h, 200, Content_Type="image/tiff", Content_Length=str(len(self._huge_body)))
        h.wfile.write(self._huge_body)

    def _endless(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self._head(h, 200, Content_Type="image/tiff", Transfer_Encoding="chunked")
        chunk = b"%x\r\n%s\r\n" % (65536, b"\0" * 65536)
        while not self._stop.is_set():
            h.wfile.write(chunk)

    def _drip(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self._head(h, 200, Content_Type="image/tiff", Content_Length=str(10_000_000))
        while not self._stop.is_set():
            h.wfile.write(b"\0")
            h.wfile.flush()
            time.sleep(1.0)

    def _redirect(self, h: http.server.BaseHTTPRequestHandler) -> None:
        self._head(h, 302, Location=self.redirect_to + h.path, Content_Length="0")

    def _echo(self, h: http.server.BaseHTTPRequestHandler) -> None:
        import json

        echoed = f"GET {h.path} " + " ".join(f"{k}: {v}" for k, v in h.headers.items())
        body = json.dumps({"detail": f"cannot serve {echoed}"}).encode()
        self._head(h, 400, Content_Type="application/json", Content_Length=str(len(body)))
        h.wfile.write(body)

    def stop(self) -> None:
        """Stop serving (and end the endless bodies)."""
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


#: The range server's process: `mosaic_assembler.render.rangeserver`'s handler, plus names that
#: always fail (`FAIL_STATUS` for paths containing `FAIL_MARK`) and per-path first requests that
#: fail once (`FLAKY_STATUS`, to see GDAL's retries), with one access-log line per request.
_RANGE_SERVER = r"""
import functools, os, sys, threading
from http.server import ThreadingHTTPServer
from mosaic_assembler.render.rangeserver import RangeRequestHandler

root, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fail_mark, fail_status = os.environ.get("FAIL_MARK", ""), int(os.environ.get("FAIL_STATUS", "500"))
flaky = int(os.environ.get("FLAKY_STATUS", "0"))
seen, lock = set(), threading.Lock()
out = open(log, "a", buffering=1)

class Handler(RangeRequestHandler):
    def send_head(self):
        with lock:
            first = (self.command, self.path) not in seen
            seen.add((self.command, self.path))
        status = 0
        if fail_mark and fail_mark in self.path:
            status = fail_status
        elif flaky and first:
            status = flaky
        out.write(f"{self.command} {self.path} {self.headers.get('Range', '-')} {status or 'ok'}\n")
        if status:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return super().send_head()

server = ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=root))
server.daemon_threads = True
server.serve_forever()
"""


class RangeServer:
    """A directory served over HTTP with range requests, in its own process on 127.0.0.1.

    Its own process, not a thread of the test's: GDAL holds the GIL while it opens a dataset
    (rasterio's `open` does not release it), so an in-process server thread cannot answer the
    HEAD and range GETs of that open: the reads stall until curl's timeout (measured: each
    sidecar probe waited the full GDAL_HTTP_TIMEOUT, 50 s for one COG with a 5 s timeout).

    Args:
        directory: what is served.
        fail_mark: requests whose path contains it are answered `fail_status`, always.
        flaky_status: the first request of each (method, path) is answered this status.
    """

    def __init__(
        self,
        directory: Path,
        fail_mark: str = "",
        fail_status: int = 500,
        flaky_status: int = 0,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(directory).parent / f"range-{self.port}.log"
        self.log_path.write_text("")
        env = {**os.environ, "FAIL_MARK": fail_mark, "FAIL_STATUS": str(fail_status),
               "FLAKY_STATUS": str(flaky_status)}  # fmt: skip
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RANGE_SERVER, str(directory), str(self.port),
             str(self.log_path)],
            env=env,
        )  # fmt: skip
        try:
            wait_http(self.url + "/", timeout=60, proc=self.proc)
        except Exception:
            self.stop()
            raise

    def requests(self) -> list[tuple[str, str, str, str]]:
        """(method, path, Range header or '-', status or 'ok') of every request so far."""
        lines = self.log_path.read_text().splitlines()
        return [tuple(line.split(" ", 3)) for line in lines]  # type: ignore[misc]

    def stop(self) -> None:
        """Terminate the server."""
        stop_process(self.proc)
