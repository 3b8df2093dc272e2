"""mosaic_assembler.state: the run directory, its manifest, and resuming.

Layout of a run directory (default: next to the output, `OUT.tif.run/`):

    run.json         the marker: {"format": "mosaic-assembler-run/1", "hash": …,
                     "created": time, "created_dirs": n, "output": …, "tiles": …, "chunks": …}
                     (written once; created_dirs: how many of the run directory and its
                     parents this tool created, 0 when the directory existed)
    manifest.jsonl   one JSON line per event, appended and fsync'ed by the driver only:
                     {"event": "submit", "chunk": key, "t": …} when a chunk is handed out,
                     {"event": "end", "chunk": key, "status": …, "done": …, …} when it ends
    chunks/KEY.tif   finished chunk GeoTIFFs (a file there is complete: written then renamed)

    search.json, search.items.json   a STAC search pinned for resuming (pipeline)

Resuming re-reads the manifest: a chunk whose last "end" is done/empty (or partial, when
partial output is allowed) and whose file checks out is skipped; anything else is redone.

Safety: a directory is a run directory only when its run.json carries RUN_FORMAT. Anything
else that is not empty is refused, with or without restart, and left untouched. Restart and
cleanup remove only the names above (regular files, never through a symlink) and then only
the directories this tool created, once they are empty.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from mosaic_assembler.chunks import ChunkResult
from mosaic_assembler.errors import OutputError, StateMismatchError
from mosaic_assembler.grid import Chunk
from mosaic_assembler.ledger import append_line, read_lines
from mosaic_assembler.types import RUN_FORMAT, ChunkStatus

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
MANIFEST = "manifest.jsonl"
CHUNK_DIR = "chunks"

#: The format tag of run.json: what makes a directory a run directory of this tool.

#: Files of a run directory this tool writes (pipeline pins a STAC search in the last four).
OWN_FILES = (
    MANIFEST,
    "run.tmp",
    "search.items.json",
    ".search.items.json.tmp",
    "search.json",
    ".search.json.tmp",
    RUN_FILE,  # last: a directory keeps its marker until everything else is gone
)

#: Chunk files (see chunks.py): KEY.tif, its provenance KEY.count.tif / KEY.date.tif, and
#: the temporary KEY[.KIND].partial-PID.tif and KEY.overviews-PID.tif.
_CHUNK_FILE = re.compile(
    r"r\d+-c\d+(\.(count|date))?(\.(partial|overviews)-\d+)?\.tif(\.aux\.xml)?"
)


def config_hash(parts: dict[str, Any]) -> str:
    """A stable hash of everything that affects the output's pixels."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def asset_token(asset: Any) -> str:
    """A short identity of an asset for the configuration hash."""
    item_json = getattr(asset, "item_json", None)
    if item_json is not None:
        return f"{asset.id}:{hashlib.sha1(item_json.encode()).hexdigest()[:12]}"
    return str(asset)


def read_manifest(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete line of the manifest (a torn last line from a kill is ignored)."""
    return read_lines(run_dir / MANIFEST)


@dataclass
class RunState:
    """An open run directory."""

    run_dir: Path
    hash: str
    summary: dict[str, Any]

    #: How many of run_dir and its parents this run created (removed when empty at the end).
    created_dirs: int = 0

    @classmethod
    def open(
        cls, run_dir: Path, hash: str, summary: dict[str, Any], restart: bool = False
    ) -> RunState:
        """Create the run directory, or reopen it for the same configuration.

        With restart, a run directory's own files are removed first (and nothing else);
        a directory that is not a run directory is refused either way.

        Raises:
            StateMismatchError: it is not a run directory and not empty, or it holds a run of a
                different configuration (and not restart).
            OutputError: it cannot be created.
        """
        run_dir = Path(run_dir)
        previous = _read_marker(run_dir)
        if previous is not None and restart:
            remove_own_files(run_dir)
        elif previous is not None and previous.get("hash") != hash:
            raise StateMismatchError(
                f"run directory {str(run_dir)!r} belongs to a different configuration "
                "(AOI, grid, sources, method, bands or tiler changed); use `restart` to "
                "discard it, or `run_dir` for another one"
            )
        created = int(previous.get("created_dirs", 0)) if previous else _missing_dirs(run_dir)
        chunks = run_dir / CHUNK_DIR
        if os.path.lexists(chunks) and not _is_dir(chunks):
            raise StateMismatchError(
                f"{str(chunks)!r} is not a directory (a symlink?); it is left untouched: "
                "choose a new or empty `run_dir`"
            )
        try:
            (run_dir / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
            if restart or previous is None:
                info = {"format": RUN_FORMAT, "hash": hash, "created": time.time()}
                _write_marker(run_dir, {**info, "created_dirs": created, **summary})
        except OSError as e:
            raise OutputError(f"cannot create run directory {str(run_dir)!r}: {e}") from e
        for partial in (run_dir / CHUNK_DIR).glob("*.partial-*.tif"):
            if _is_file(partial):
                partial.unlink(missing_ok=True)  # a chunk killed mid-write
        return cls(run_dir, hash, summary, created)

    @property
    def chunk_dir(self) -> Path:
        """Where chunk GeoTIFFs go."""
        return self.run_dir / CHUNK_DIR

    def record(self, entry: dict[str, Any]) -> None:
        """Append one event to the manifest, durably (one write, then fsync)."""
        append_line(self.run_dir / MANIFEST, entry)

    def record_result(self, result: ChunkResult) -> None:
        """Record a finished chunk."""
        self.record(result.to_record())

    def has_chunk_file(self, name: str) -> bool:
        """Whether the chunks directory holds the file `name`."""
        return (self.chunk_dir / name).exists()

    def end_records(self) -> list[dict[str, Any]]:
        """The manifest's chunk-end events, every attempt's (for the tiles that failed before)."""
        return [e for e in read_manifest(self.run_dir) if e.get("event") == "end"]

    def finished(self, chunks: Iterable[Chunk], accept_partial: bool) -> dict[str, ChunkResult]:
        """The chunks that need no work: last end event done/empty(/partial), file checked."""
        last: dict[str, ChunkResult] = {}
        for e in read_manifest(self.run_dir):
            if e.get("event") == "end":
                last[e["chunk"]] = ChunkResult.from_record(e)
        ok: dict[str, ChunkResult] = {}
        for chunk in chunks:
            r = last.get(chunk.key)
            if r is None:
                continue
            if r.status == ChunkStatus.EMPTY:
                ok[chunk.key] = r
            elif r.status == ChunkStatus.DONE or (
                r.status == ChunkStatus.PARTIAL and accept_partial
            ):
                if self._chunk_ok(chunk, r):
                    ok[chunk.key] = r
        return ok

    def _chunk_ok(self, chunk: Chunk, entry: ChunkResult) -> bool:
        path = self.chunk_dir / f"{chunk.key}.tif"
        try:
            with rasterio.open(path) as src:
                good = (src.height, src.width, src.count, src.dtypes[0]) == (
                    chunk.height,
                    chunk.width,
                    entry.count,
                    entry.dtype,
                )
        except (rasterio.errors.RasterioError, OSError):
            good = False
        if not good:
            logger.warning(
                "chunk %s is recorded done but its file is missing or wrong; redoing it", chunk.key
            )
        return good

    def remove(self) -> None:
        """Delete this tool's files, then the directories this run created once empty.

        User files, symlinks and directories that existed before the run stay.
        """
        remove_own_files(self.run_dir)
        _rmdir(self.run_dir / CHUNK_DIR)
        top = Path(os.path.abspath(self.run_dir))
        for d in [top, *top.parents][: self.created_dirs]:
            if not _rmdir(d):
                break


def _read_marker(run_dir: Path) -> dict[str, Any] | None:
    """run.json of a run directory; None when run_dir is missing or empty.

    Raises:
        StateMismatchError: run_dir exists and is not an empty directory or a run directory
            of this tool (its run.json is missing, unreadable or has no RUN_FORMAT).
    """
    if not run_dir.exists():
        return None
    where = f"{str(run_dir)!r} is not a run directory of this tool"
    if not run_dir.is_dir():
        raise StateMismatchError(f"{where} (not a directory); choose another `run_dir`")
    run_file = run_dir / RUN_FILE
    if not run_file.exists():
        if any(run_dir.iterdir()):
            raise StateMismatchError(
                f"{where} (no {RUN_FILE}) and is not empty; it is left untouched: "
                "choose a new or empty `run_dir`"
            )
        return None
    try:
        info = json.loads(run_file.read_text()) if _is_file(run_file) else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        info = None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise StateMismatchError(
            f"{where} (its {RUN_FILE} was not written by this version); it is left "
            "untouched: choose a new or empty `run_dir`"
        )
    return info


def _write_marker(run_dir: Path, info: dict[str, Any]) -> None:
    """Write run.json atomically."""
    tmp = run_dir / "run.tmp"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, run_dir / RUN_FILE)


def _missing_dirs(run_dir: Path) -> int:
    """How many of run_dir and its parents do not exist (mkdir(parents=True) creates them)."""
    n = 0
    for d in [Path(os.path.abspath(run_dir)), *Path(os.path.abspath(run_dir)).parents]:
        if os.path.lexists(d):
            break
        n += 1
    return n


def _is_file(path: Path) -> bool:
    """A regular file, not a symlink (lstat)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    """A real directory, not a symlink (lstat)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def remove_own_files(run_dir: Path) -> None:
    """Unlink the files this tool writes in a run directory (regular files only).

    A symlinked chunks directory is not entered; a symlink in place of one of the names is
    left, like every other name.
    """
    chunks = run_dir / CHUNK_DIR
    if _is_dir(chunks):
        for entry in os.scandir(chunks):
            if _CHUNK_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)
    for name in OWN_FILES:
        if _is_file(run_dir / name):
            (run_dir / name).unlink(missing_ok=True)


def _rmdir(path: Path) -> bool:
    """Remove a directory if it is empty (and a directory, not a symlink)."""
    if not _is_dir(path):
        return False
    try:
        path.rmdir()
    except OSError:
        return False
    return True


def run_status(run_dir: Path | str) -> dict[str, Any]:
    """Progress of a run directory, local or s3:// (for `assemble-mosaic status`).

    Raises:
        OutputError: not a run directory.
    """
    if str(run_dir).startswith("s3://"):
        from mosaic_assembler.storage._rundir import status_info

        info, entries = status_info(str(run_dir))
        entries = [{"t": info.get("created")}] + [{**e, "event": "end"} for e in entries]
    else:
        run_dir = Path(run_dir)
        run_file = run_dir / RUN_FILE
        if not run_file.exists():
            raise OutputError(f"{str(run_dir)!r} is not a run directory (no {RUN_FILE})")
        info = json.loads(run_file.read_text())
        entries = read_manifest(run_dir)
    last: dict[str, dict[str, Any]] = {}
    first_t = None
    for e in entries:
        first_t = first_t if first_t is not None else e.get("t")
        if e.get("event") == "end":
            last[e["chunk"]] = e
    statuses = [e["status"] for e in last.values()]
    total = int(info.get("chunks", 0))
    finished = sum(s in ("done", "empty") for s in statuses)
    failed = sum(s in ("failed", "partial") for s in statuses)
    pending = max(0, total - finished - failed)
    eta = None
    if finished and pending and first_t is not None:
        elapsed = max(e["t"] for e in last.values()) - first_t
        eta = elapsed / finished * pending
    return {
        "run_dir": str(run_dir),
        "output": info.get("output"),
        "chunks": total,
        "chunks_done": finished,
        "chunks_failed": failed,
        "chunks_pending": pending,
        "tiles": info.get("tiles"),
        "tiles_done": sum(e["done"] for e in last.values()),
        "tiles_empty": sum(e["empty"] for e in last.values()),
        "tiles_failed": sum(len(e["failed"]) for e in last.values()),
        "eta_seconds": eta,
    }
