"""mosaic_assembler.state: the run directory, its manifest, and resuming.

Layout of a run directory (default: next to the output, `OUT.tif.run/`):

    run.json         the configuration hash and the plan summary (written once)
    manifest.jsonl   one JSON line per event, appended and fsync'ed by the driver only:
                     {"event": "submit", "chunk": key, "t": …} when a chunk is handed out,
                     {"event": "end", "chunk": key, "status": …, "done": …, …} when it ends
    chunks/KEY.tif   finished chunk GeoTIFFs (a file there is complete: written then renamed)

Resuming re-reads the manifest: a chunk whose last "end" is done/empty (or partial, when
partial output is allowed) and whose file checks out is skipped; anything else is redone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio

from mosaic_assembler.chunks import ChunkResult
from mosaic_assembler.errors import OutputError, StateMismatchError
from mosaic_assembler.grid import Chunk

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
MANIFEST = "manifest.jsonl"
CHUNK_DIR = "chunks"


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
    path = run_dir / MANIFEST
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
                logger.warning("ignoring a corrupt manifest line in %s", path)
    return entries


@dataclass
class RunState:
    """An open run directory."""

    run_dir: Path
    hash: str
    summary: dict[str, Any]

    @classmethod
    def open(
        cls, run_dir: Path, hash: str, summary: dict[str, Any], restart: bool = False
    ) -> RunState:
        """Create the run directory, or reopen it for the same configuration.

        Raises:
            StateMismatchError: it holds a run of a different configuration (and not restart).
            OutputError: it cannot be created.
        """
        run_file = run_dir / RUN_FILE
        if run_dir.exists() and restart:
            shutil.rmtree(run_dir)
        if run_file.exists():
            try:
                previous = json.loads(run_file.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise StateMismatchError(
                    f"run directory {str(run_dir)!r} has an unreadable {RUN_FILE} ({e}); "
                    "use --restart to discard it"
                ) from e
            if previous.get("hash") != hash:
                raise StateMismatchError(
                    f"run directory {str(run_dir)!r} belongs to a different configuration "
                    "(AOI, grid, sources, method, bands or tiler changed); use --restart to "
                    "discard it, or --run-dir for another one"
                )
        elif run_dir.exists() and any(run_dir.iterdir()):
            raise StateMismatchError(
                f"{str(run_dir)!r} exists and is not a run directory; use --restart to "
                "discard it, or --run-dir for another one"
            )
        try:
            (run_dir / CHUNK_DIR).mkdir(parents=True, exist_ok=True)
            if not run_file.exists():
                tmp = run_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"hash": hash, "created": time.time(), **summary}))
                os.replace(tmp, run_file)
        except OSError as e:
            raise OutputError(f"cannot create run directory {str(run_dir)!r}: {e}") from e
        for partial in (run_dir / CHUNK_DIR).glob("*.partial-*.tif"):
            partial.unlink(missing_ok=True)  # a chunk killed mid-write
        return cls(run_dir, hash, summary)

    @property
    def chunk_dir(self) -> Path:
        """Where chunk GeoTIFFs go."""
        return self.run_dir / CHUNK_DIR

    def record(self, entry: dict[str, Any]) -> None:
        """Append one event to the manifest, durably (one write, then fsync)."""
        line = (json.dumps({**entry, "t": round(time.time(), 3)}) + "\n").encode()
        fd = os.open(self.run_dir / MANIFEST, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def record_result(self, result: ChunkResult) -> None:
        """Record a finished chunk."""
        self.record(
            {
                "event": "end",
                "chunk": result.key,
                "status": result.status,
                "done": result.done,
                "empty": result.empty,
                "failed": [[z, x, y, msg] for (x, y, z), msg in result.failed],
                "count": result.count,
                "dtype": result.dtype,
                "seconds": round(result.seconds, 3),
            }
        )

    def finished(self, chunks: Iterable[Chunk], accept_partial: bool) -> dict[str, dict[str, Any]]:
        """The chunks that need no work: last end event done/empty(/partial), file checked."""
        last: dict[str, dict[str, Any]] = {}
        for e in read_manifest(self.run_dir):
            if e.get("event") == "end":
                last[e["chunk"]] = e
        ok: dict[str, dict[str, Any]] = {}
        for chunk in chunks:
            entry = last.get(chunk.key)
            if entry is None:
                continue
            status = entry["status"]
            if status == "empty":
                ok[chunk.key] = entry
            elif status == "done" or (status == "partial" and accept_partial):
                if self._chunk_ok(chunk, entry):
                    ok[chunk.key] = entry
        return ok

    def _chunk_ok(self, chunk: Chunk, entry: dict[str, Any]) -> bool:
        path = self.chunk_dir / f"{chunk.key}.tif"
        try:
            with rasterio.open(path) as src:
                good = (src.height, src.width, src.count, src.dtypes[0]) == (
                    chunk.height,
                    chunk.width,
                    entry["count"],
                    entry["dtype"],
                )
        except (rasterio.errors.RasterioError, OSError):
            good = False
        if not good:
            logger.warning(
                "chunk %s is recorded done but its file is missing or wrong; redoing it", chunk.key
            )
        return good

    def remove(self) -> None:
        """Delete the run directory."""
        shutil.rmtree(self.run_dir, ignore_errors=True)


def run_status(run_dir: Path) -> dict[str, Any]:
    """Progress of a run directory (for `assemble-mosaic status`).

    Raises:
        OutputError: not a run directory.
    """
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
