"""A run directory on object storage: `--run-dir s3://bucket/prefix` (see `state` for local).

Layout under the prefix:

    run.json            the marker, as a local run directory's (created once, create-only)
    chunks/KEY.tif      finished chunk GeoTIFFs, uploaded by the worker that computed them
    chunks/KEY.KIND.tif  its provenance files (--provenance count|date), uploaded before it
    records/KEY.json    the chunk's end record (ChunkResult.to_record), written after its file
    search.items.json, search.json   a STAC search's pinned items (sources.pinning)

No object is ever appended to: instead of the local manifest, the worker that computed a chunk
uploads its file (one PUT: the object is complete or absent) and then writes the chunk's end
record create-only (If-None-Match: *). Two workers that both finish a retried chunk wrote the
same pixels; the second record finds the first and keeps it when it is final (done/empty).
A record of a failed or partial attempt is replaced by the next attempt's. Resuming lists
`records/` and `chunks/` (one LIST request per 1,000 objects) and reads the records.

Workers need only the bucket: each computes its chunk into its own TMPDIR (one chunk file of
local scratch) and uploads it. The finalize reads the chunks through /vsis3/ (a VRT over them),
never downloading them. Cleanup deletes only the names above, run.json last.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Any

from mosaic_assembler.errors import OutputError, StateMismatchError
from mosaic_assembler.grid import Chunk
from mosaic_assembler.storage import _s3
from mosaic_assembler.storage._records import RECORD_DIR
from mosaic_assembler.storage._url import S3Url
from mosaic_assembler.types import RUN_FORMAT, ChunkStatus

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
CHUNK_DIR = "chunks"
_CHUNK_NAME = re.compile(r"r\d+-c\d+(\.(count|date))?\.tif")
_RECORD_NAME = re.compile(r"(r\d+-c\d+)\.json")


def _marker(prefix: S3Url) -> dict[str, Any] | None:
    """run.json under the prefix; None when the prefix is empty.

    Raises:
        StateMismatchError: the prefix holds objects and no run.json of this tool.
    """
    where = f"{prefix.url!r} is not a run directory of this tool"
    keys = [o["Key"] for o in _s3.list_objects(prefix)]
    if not keys:
        return None
    if prefix.child(RUN_FILE).key not in keys:
        raise StateMismatchError(
            f"{where} (no {RUN_FILE}) and is not empty; it is left untouched: choose a new "
            "or empty `run_dir`"
        )
    try:
        info = json.loads(_s3.get_bytes(prefix.child(RUN_FILE), "run directory marker"))
    except (ValueError, UnicodeDecodeError):
        info = None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise StateMismatchError(
            f"{where} (its {RUN_FILE} was not written by this version); it is left "
            "untouched: choose a new or empty `run_dir`"
        )
    return info


@dataclasses.dataclass
class S3RunState:
    """An open run directory on S3 (the interface of `state.RunState`)."""

    prefix: S3Url
    hash: str
    summary: dict[str, Any]
    #: the end records `finished` read (reused by `end_records`: one listing and one GET a
    #: chunk per run, not two)
    _records: dict[str, dict[str, Any]] | None = dataclasses.field(default=None, repr=False)
    #: the names under chunks/ that `finished` listed (for `has_chunk_file`)
    _files: dict[str, int] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def run_dir(self) -> str:
        """The run directory's URL."""
        return self.prefix.url

    @classmethod
    def open(
        cls, run_dir: str | S3Url, hash: str, summary: dict[str, Any], restart: bool = False
    ) -> S3RunState:
        """Create the run directory, or reopen it for the same configuration.

        Raises:
            StateMismatchError: not a run directory and not empty, or a run of another
                configuration (and not restart).
            OutputError: the bucket is missing or cannot be written.
        """
        prefix = run_dir if isinstance(run_dir, S3Url) else S3Url.parse(run_dir, "`run_dir`")
        previous = _marker(prefix)
        state = cls(prefix, hash, summary)
        if previous is not None and restart:
            state.remove()
            previous = None
        elif previous is not None and previous.get("hash") != hash:
            raise StateMismatchError(
                f"run directory {prefix.url!r} belongs to a different configuration "
                "(AOI, grid, sources, method, bands or tiler changed); use `restart` to "
                "discard it, or `run_dir` for another one"
            )
        if previous is None:
            info = {"format": RUN_FORMAT, "hash": hash, "created": time.time(), **summary}
            try:
                _s3.put_bytes(prefix.child(RUN_FILE), json.dumps(info).encode(), True, "run.json")
            except _s3.ExistsError as e:  # another driver created it just now
                raise StateMismatchError(
                    f"run directory {prefix.url!r} was created by another run meanwhile"
                ) from e
        return state

    @property
    def chunk_dir(self) -> PurePosixPath:
        """GDAL's path of the chunks (/vsis3/…): workers upload there, finalize reads there."""
        return PurePosixPath(self.prefix.child(CHUNK_DIR).vsi)

    def record(self, entry: dict[str, Any]) -> None:
        """Driver events (submit) are not kept on S3: only the workers' end records."""

    def record_result(self, result: Any) -> None:
        """Keep the tiles that failed in earlier attempts in the chunk's end record.

        The worker that computed the chunk wrote its end record, but it knows only its own
        attempt; the driver adds the tiles that failed before (`retried`, from the records
        `finished` read) and rewrites the record then, and only then: one PUT per chunk that
        had failed tiles, none otherwise.
        """
        before = (self._records or {}).get(result.key) or {}
        if not before.get("failed"):
            return
        from mosaic_assembler.storage._records import replace_record

        replace_record(self.prefix, result.to_record())

    def records(self) -> dict[str, dict[str, Any]]:
        """The end record of every chunk that has one."""
        keys = [
            o["Key"]
            for o in _s3.list_objects(self.prefix.child(RECORD_DIR))
            if _RECORD_NAME.fullmatch(o["Key"].rsplit("/", 1)[-1])
        ]

        def read(key: str) -> dict[str, Any] | None:
            try:
                return dict(json.loads(_s3.get_bytes(S3Url(self.prefix.bucket, key), "record")))
            except (OutputError, ValueError):
                return None

        with ThreadPoolExecutor(16, thread_name_prefix="records") as pool:
            found = [r for r in pool.map(read, keys) if r is not None and "chunk" in r]
        return {r["chunk"]: r for r in found}

    def end_records(self) -> list[dict[str, Any]]:
        """The chunks' end records (S3 keeps the last attempt's), as `finished` read them."""
        if self._records is None:
            self._records = self.records()
        return list(self._records.values())

    def finished(self, chunks: Iterable[Chunk], accept_partial: bool) -> dict[str, Any]:
        """The chunks that need no work: a done/empty(/partial) record, and its file listed."""
        from mosaic_assembler.chunks import ChunkResult

        records = self._records = self.records()
        files = self._files = {
            o["Key"].rsplit("/", 1)[-1]: o["Size"]
            for o in _s3.list_objects(self.prefix.child(CHUNK_DIR))
        }
        ok: dict[str, Any] = {}
        for chunk in chunks:
            record = records.get(chunk.key)
            if record is None:
                continue
            r = ChunkResult.from_record(record)
            if r.status == ChunkStatus.EMPTY:
                ok[chunk.key] = r
            elif r.status == ChunkStatus.DONE or (
                r.status == ChunkStatus.PARTIAL and accept_partial
            ):
                if files.get(f"{chunk.key}.tif", 0) > 0:
                    ok[chunk.key] = r
                else:
                    logger.warning(
                        "chunk %s is recorded done but has no file; redoing it", chunk.key
                    )
        return ok

    def has_chunk_file(self, name: str) -> bool:
        """Whether chunks/`name` was there when `finished` listed the chunks."""
        return self._files.get(name, 0) > 0

    def remove(self) -> None:
        """Delete this tool's objects under the prefix (run.json last); nothing else."""
        from mosaic_assembler.sources.pinning import PINNED_ITEMS, PINNED_SEARCH

        base = f"{self.prefix.key}/" if self.prefix.key else ""
        names = {CHUNK_DIR: _CHUNK_NAME, RECORD_DIR: _RECORD_NAME}
        own = []
        for o in _s3.list_objects(self.prefix):
            rel = o["Key"][len(base) :]
            sub, _, name = rel.partition("/")
            pattern = names.get(sub)
            if (pattern is not None and pattern.fullmatch(name)) or rel in (
                PINNED_SEARCH,
                PINNED_ITEMS,
            ):
                own.append(o["Key"])
        _s3.delete_keys(self.prefix.bucket, own)
        _s3.delete_keys(self.prefix.bucket, [self.prefix.child(RUN_FILE).key])


def status_info(run_dir: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """run.json and the end records of an S3 run directory (for `assemble-mosaic status`).

    Raises:
        OutputError: not a run directory.
    """
    prefix = S3Url.parse(run_dir, "run directory")
    try:
        info = _marker(prefix)
    except StateMismatchError as e:
        raise OutputError(str(e)) from e
    if info is None:
        raise OutputError(f"{prefix.url!r} is not a run directory (no {RUN_FILE})")
    state = S3RunState(prefix, str(info.get("hash")), {})
    return info, sorted(state.records().values(), key=lambda r: r.get("t", 0))
