"""A static file server that answers HTTP range requests, for the PMTiles previewer.

pmtiles.js reads an archive with `Range: bytes=a-b` requests and refuses a server that
answers them with the whole file, which Python's `http.server` does. This is that server
plus single byte ranges, bound to 127.0.0.1 unless told otherwise:

    python -m mosaic_assembler.render.rangeserver DIR [--port 8000] [--bind 127.0.0.1]

Any static server with byte serving (nginx, caddy, `npx http-server`) works as well.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """`SimpleHTTPRequestHandler` plus `Range: bytes=START-END` (one range) on files."""

    def send_head(self) -> Any:  # noqa: D102
        self._range: tuple[int, int] | None = None
        header = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not header or not os.path.isfile(path):
            return super().send_head()
        m = _RANGE.match(header.strip())
        size = os.path.getsize(path)
        if m is None or (not m.group(1) and not m.group(2)):
            return super().send_head()
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        else:  # the last N bytes
            start, end = max(0, size - int(m.group(2))), size - 1
        if start >= size or start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f = open(path, "rb")  # noqa: SIM115 (closed by copyfile's caller, as in the base class)
        self._range = (start, end)
        self.send_response(HTTPStatus.PARTIAL_CONTENT)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return f

    def copyfile(self, source: Any, outputfile: Any) -> None:  # noqa: D102
        rng = getattr(self, "_range", None)
        if rng is None:
            shutil.copyfileobj(source, outputfile)
            return
        start, end = rng
        source.seek(start)
        left = end - start + 1
        while left > 0:
            buf = source.read(min(left, 1 << 16))
            if not buf:
                break
            outputfile.write(buf)
            left -= len(buf)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002, D102
        pass  # quiet: one line per tile request is noise


def make_server(directory: str, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server of `directory` (call `serve_forever()`; port 0 picks a free one)."""
    handler = functools.partial(RangeRequestHandler, directory=directory)
    return ThreadingHTTPServer((host, port), handler)


def main(argv: list[str] | None = None) -> None:
    """Serve a directory until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m mosaic_assembler.render.rangeserver")
    parser.add_argument("directory", nargs="?", default=".")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args(argv)
    server = make_server(args.directory, args.bind, args.port)
    host, port = str(args.bind), server.server_address[1]
    print(f"serving {args.directory} at http://{host}:{port}/ (Ctrl-C stops)")  # noqa: T201
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
