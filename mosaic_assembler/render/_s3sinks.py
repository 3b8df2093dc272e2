"""Pyramids on S3: a prefix of `{z}/{x}/{y}.{ext}` objects, or one `.pmtiles` object.

`S3FolderSink` lists the prefix once: the tiles there are skipped (a rerun renders and puts
nothing), and `tiles.json`, the previewer's page and its scripts are put only when their
bytes differ from the object's (its ETag is the MD5 of a single-PUT object). Tiles go up as
create-only PUTs (`If-None-Match: *`) from a few threads while the next ones render; each
object appears complete. A prefix that holds objects but no `tiles.json` is refused, even
with `overwrite` (the tool replaces only what it wrote).

`S3PMTilesSink` builds the archive locally with `PMTilesSink`, in a scratch directory of
this machine named after the URL (so an interrupted run resumes from its parts there), then
uploads it in one create-only put. An existing archive is downloaded first: one of other
options is refused unless `overwrite`; one of the same options counts as tiles already
there (a rerun puts nothing; more zooms replace it, after checking that its ETag did not
change in between). The scratch directory is removed once the archive is up.

Every S3 call goes through `storage._s3` (create-only puts, error lines without credentials).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import OutputError
from mosaic_assembler.render._sinks import MARKER, PMTilesSink
from mosaic_assembler.render._spec import Tile
from mosaic_assembler.storage import S3Url, _s3

logger = logging.getLogger(__name__)

#: Concurrent tile PUTs: an S3 PUT is ~10-50 ms of latency and little CPU.
UPLOAD_THREADS = 8

_TILE_KEY = re.compile(r"(\d+)/(\d+)/(\d+)\.(\w+)")


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _etag(obj: dict[str, Any]) -> str:
    return str(obj.get("ETag", "")).strip('"')


class _Uploads:
    """Create-only PUTs on a small thread pool, with a bounded number in flight."""

    def __init__(self, create_only: bool):
        self.create_only = create_only
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[Future[None]] = set()

    def put(self, url: S3Url, data: bytes) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="tile-put")
        if len(self._pending) >= 4 * UPLOAD_THREADS:
            done, self._pending = wait(self._pending, return_when=FIRST_COMPLETED)
            for fut in done:
                fut.result()
        self._pending.add(self._pool.submit(self._put, url, data))

    def _put(self, url: S3Url, data: bytes) -> None:
        try:
            _s3.put_bytes(url, data, self.create_only, "tile")
        except _s3.ExistsError:  # another run of the same pyramid wrote it meanwhile
            logger.debug("%s appeared meanwhile; kept", url.url)

    def drain(self) -> None:
        """Wait for every PUT; raise the first failure."""
        try:
            for fut in self._pending:
                fut.result()
        finally:
            self._pending.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None


class S3FolderSink:
    """`{z}/{x}/{y}.{ext}` objects under an s3:// prefix, listed once for resume.

    Raises:
        ConfigError: not an s3://bucket/prefix URL.
        OutputError: the bucket is missing or unreachable, the prefix names only a bucket,
            holds objects that are not a pyramid of this tool, or one of other options.
    """

    def __init__(self, url: str, ext: str, fingerprint: str, overwrite: bool = False):
        self.url = S3Url.parse(url, "OUT")
        if not self.url.key:
            raise OutputError(f"OUT {url!r} names a bucket; give a prefix (s3://bucket/pyramid)")
        self.path = self.url.url
        self.ext, self.fingerprint, self.overwrite = ext, fingerprint, overwrite
        start = len(self.url.key) + 1
        self._etags = {
            o["Key"][start:]: _etag(o) for o in _s3.list_objects(self.url, "OUT") if o["Key"]
        }
        self._tiles: set[Tile] = set()
        for name in self._etags:
            m = _TILE_KEY.fullmatch(name)
            if m and m.group(4) == ext:
                z, x, y = (int(v) for v in m.groups()[:3])
                self._tiles.add((x, y, z))
        self._lock = threading.Lock()
        self._uploads = _Uploads(create_only=not overwrite)
        if not self._etags:
            self._put_small(MARKER, json.dumps({"fingerprint": fingerprint}).encode())
            return
        if MARKER not in self._etags:
            raise OutputError(
                f"OUT {self.path} holds objects but no pyramid of this tool (no {MARKER}); "
                "choose another prefix"
            )
        marker = _s3.get_bytes(self.url.child(MARKER), "OUT", limit=16 * 1024 * 1024)
        try:
            old = json.loads(marker).get("fingerprint")
        except (ValueError, AttributeError):
            old = None
        if old != fingerprint:
            if not overwrite:
                raise OutputError(
                    f"{self.path} holds a pyramid of other options or of an older source; "
                    "rerun with --overwrite to render every tile again"
                )
            self._put_small(MARKER, json.dumps({"fingerprint": fingerprint}).encode())

    def _put_small(self, name: str, data: bytes) -> None:
        """Put a companion object (marker, page, script) unless it holds these bytes."""
        if self._etags.get(name) == _md5(data):
            return
        _s3.put_bytes(self.url.child(name), data, create_only=False, what="OUT")
        self._etags[name] = _md5(data)

    def has(self, tile: Tile) -> bool:  # noqa: D102
        return not self.overwrite and tile in self._tiles

    def put(self, tile: Tile, data: bytes) -> None:  # noqa: D102
        x, y, z = tile
        self._uploads.put(self.url.child(f"{z}/{x}/{y}.{self.ext}"), data)
        with self._lock:
            self._tiles.add(tile)

    def finish(self, meta: dict[str, Any]) -> None:
        """Wait for the tile PUTs, then put `tiles.json` (if its bytes changed)."""
        self._uploads.drain()
        doc = {**meta, "fingerprint": self.fingerprint}
        self._put_small(MARKER, json.dumps(doc, indent=1).encode())

    def present(self) -> Iterator[Tile]:  # noqa: D102
        yield from sorted(self._tiles)

    def write_files(self, files: dict[str, bytes]) -> str:
        """Put the previewer's files under the prefix (in order: the page last); its URL."""
        for name, data in files.items():
            self._put_small(name, data)
        return self.url.child(list(files)[-1]).url


class S3PMTilesSink:
    """A `.pmtiles` object: built locally by `PMTilesSink`, uploaded once at the end.

    Raises:
        ConfigError: not an s3://bucket/key URL.
        OutputError: the bucket is missing or unreachable, or the object is no archive of
            this tool or one of other options (without `overwrite`).
    """

    def __init__(
        self, url: str, ext: str, tile_type: str, fingerprint: str, overwrite: bool = False
    ):
        self.url = S3Url.parse(url, "OUT")
        self.path = self.url.url
        self.overwrite = overwrite
        name = self.url.key.rsplit("/", 1)[-1]
        if not self.url.key or name.startswith("."):
            raise OutputError(f"OUT {url!r} names no archive (s3://bucket/NAME.pmtiles)")
        digest = hashlib.sha256(self.path.encode()).hexdigest()[:16]
        self.work = Path(tempfile.gettempdir()) / f"mosaic-assembler-pmtiles-{digest}"
        self.work.mkdir(exist_ok=True)
        self.local = self.work / name
        self._head = _s3.head(self.url, "OUT")
        self.local.unlink(missing_ok=True)  # a copy left by an interrupted run
        try:
            if self._head is not None and not overwrite:
                self._download()
            self.inner = PMTilesSink(self.local, ext, tile_type, fingerprint, overwrite)
        except BaseException:
            self.local.unlink(missing_ok=True)  # the copy downloaded; parts stay (resume)
            with contextlib.suppress(OSError):
                self.work.rmdir()  # only when empty
            raise

    def _download(self) -> None:
        tmp = self.local.with_name(f".{self.local.name}.download")
        try:
            _s3.client().download_file(self.url.bucket, self.url.key, str(tmp))
        except _s3._errors() as e:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot read OUT {self.path!r}: {_s3.describe(e)}") from e
        tmp.replace(self.local)

    def has(self, tile: Tile) -> bool:  # noqa: D102
        return self.inner.has(tile)

    def put(self, tile: Tile, data: bytes) -> None:  # noqa: D102
        self.inner.put(tile, data)

    def present(self) -> Iterator[Tile]:  # noqa: D102
        return self.inner.present()

    def finish(self, meta: dict[str, Any]) -> None:
        """Build the archive locally; upload it if it is new or holds new tiles."""
        before = _stat(self.local)
        self.inner.finish(meta)
        if self._head is not None and _stat(self.local) == before and not self.overwrite:
            logger.info("%s already holds every tile; not uploaded again", self.path)
            shutil.rmtree(self.work, ignore_errors=True)
            return
        old = self._head
        replace = old is not None
        if old is not None and not self.overwrite:
            now = _s3.head(self.url, "OUT")
            if now is None or _etag(now) != _etag(old):
                raise OutputError(f"OUT {self.path!r} changed during the run; not replaced")
        try:
            _s3.put_file(self.local, self.url, create_only=not replace, what="OUT")
        except _s3.ExistsError as e:
            raise OutputError(f"OUT {self.path!r} appeared during the run; not replaced") from e
        shutil.rmtree(self.work, ignore_errors=True)

    def write_files(self, files: dict[str, bytes]) -> str:
        """Put the previewer's files beside the archive (the page last); its URL."""
        parent = self.url.key.rsplit("/", 1)[0] if "/" in self.url.key else ""
        for name, data in files.items():
            url = S3Url(self.url.bucket, f"{parent}/{name}" if parent else name)
            head = _s3.head(url, "OUT")
            if head is None or _etag(head) != _md5(data):
                _s3.put_bytes(url, data, create_only=False, what="OUT")
        last = list(files)[-1]
        return S3Url(self.url.bucket, f"{parent}/{last}" if parent else last).url


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns
