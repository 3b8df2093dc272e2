"""mosaic_assembler.ledger: append-only JSON-lines logs that survive `kill -9`.

One line per event, written with one `write` and then `fsync`ed, so a line is either whole
or (the last one, after a kill) torn and ignored. The run directory's manifest and the
ledgers of batch runs are such logs; `last_by` folds them into the latest event per key.
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

__all__ = ["append_line", "append_lines", "last_by", "read_lines"]


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
