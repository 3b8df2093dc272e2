"""mosaic_assembler.ledger: append-only JSON-lines logs that survive `kill -9`.

One line per event, written with one `write` and then `fsync`ed, so a line is either whole
or (the last one, after a kill) torn and ignored. The run directory's manifest and the
ledgers of batch runs are such logs; `last_by` folds them into the latest event per key.
`FileLedger` and `S3Ledger` give a batch one interface over a local file and over an s3://
prefix of one object per event (object storage has no append).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["FileLedger", "S3Ledger", "append_line", "append_lines", "last_by", "read_lines"]


def append_line(path: Path, entry: dict[str, Any]) -> None:
    """Append one event (with its time `t`) to the log at `path`, durably."""
    line = (json.dumps({**entry, "t": round(time.time(), 3)}) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def append_lines(path: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Append several events (one time `t`) with one `write` and one `fsync`.

    A kill during the write leaves a prefix of the lines whole and at most the last one
    torn (ignored by `read_lines`): each whole line stands on its own.
    """
    t = round(time.time(), 3)
    data = b"".join((json.dumps({**e, "t": t}) + "\n").encode() for e in entries)
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:  # a regular file takes the whole buffer; loop on a short write anyway
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of the log (a torn last line from a kill is ignored)."""
    if not path.exists():
        return []
    entries = []
    with path.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                logger.warning("ignoring a corrupt line in %s", path)
    return entries


def last_by(entries: Iterable[dict[str, Any]], key: str, event: str | None = None) -> dict:
    """The latest entry for each value of `key` (only entries of `event`, when given)."""
    last: dict[Any, dict[str, Any]] = {}
    for e in entries:
        if key in e and (event is None or e.get("event") == event):
            last[e[key]] = e
    return last


class FileLedger:
    """A ledger in a local file (`append_line` / `read_lines`)."""

    def __init__(self, path: Path):
        self.path = path

    @property
    def location(self) -> Path:
        """Where the ledger is."""
        return self.path

    def exists(self) -> bool:
        """Whether any event was written."""
        return self.path.exists()

    def append(self, entry: dict[str, Any]) -> None:
        """Append one event durably."""
        append_line(self.path, entry)

    def read(self) -> list[dict[str, Any]]:
        """Every whole event, in order."""
        return read_lines(self.path)


class S3Ledger:
    """A ledger on object storage: one create-only object per event under a prefix.

    Objects are never appended to, so each event is its own object, written in one PUT
    with `If-None-Match: *` (it is whole or absent, as a fsync'ed line); its key starts with
    the time in nanoseconds, so the listing's order is the events' (one driver writes them).
    `start` events are not kept (a rerun needs only the ends, and each would cost a PUT now
    and a GET on every resume): reading costs one LIST per 1,000 events and a GET each.
    """

    SKIPPED_EVENTS = frozenset({"start"})

    def __init__(self, prefix: Any):
        self.prefix = prefix  # storage._url.S3Url

    @property
    def location(self) -> str:
        """Where the ledger is (its prefix, s3://…/ledger/)."""
        return f"{self.prefix.url}/"

    def _keys(self) -> list[str]:
        from mosaic_assembler.storage import _s3

        return sorted(
            o["Key"] for o in _s3.list_objects(self.prefix, "batch ledger")
            if o["Key"].endswith(".json")
        )  # fmt: skip

    def exists(self) -> bool:
        """Whether any event was written."""
        return bool(self._keys())

    def append(self, entry: dict[str, Any]) -> None:
        """Write one event as its own object (create-only)."""
        if entry.get("event") in self.SKIPPED_EVENTS:
            return
        import uuid

        from mosaic_assembler.storage import _s3

        record = {**entry, "t": round(time.time(), 3)}
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        _s3.put_bytes(self.prefix.child(name), json.dumps(record).encode(), True, "ledger record")

    def read(self) -> list[dict[str, Any]]:
        """Every event, in order (an unreadable record is skipped with a warning)."""
        from concurrent.futures import ThreadPoolExecutor

        from mosaic_assembler.errors import OutputError
        from mosaic_assembler.storage import _s3
        from mosaic_assembler.storage._url import S3Url

        def get(key: str) -> dict[str, Any] | None:
            try:
                doc = json.loads(_s3.get_bytes(S3Url(self.prefix.bucket, key), "ledger record"))
            except (OutputError, ValueError) as e:
                logger.warning("ignoring ledger record s3://%s/%s: %s", self.prefix.bucket, key, e)
                return None
            return doc if isinstance(doc, dict) else None

        with ThreadPoolExecutor(16, thread_name_prefix="ledger") as pool:
            return [e for e in pool.map(get, self._keys()) if e is not None]
