"""A worker's side of an S3 run directory: compute a chunk in TMPDIR, upload it, record it.

Apart from `_rundir` (the driver's side: open, resume, list, clean) so that `chunks`, which
calls it on the workers, imports nothing that imports `chunks` back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import OutputError
from mosaic_assembler.storage import _s3
from mosaic_assembler.storage._url import S3Url

logger = logging.getLogger(__name__)

RECORD_DIR = "records"

__all__ = ["RECORD_DIR", "compute_remote_chunk", "replace_record", "write_record"]


def compute_remote_chunk(
    spec: Any, job: Any, on_tile: Callable[[str], None] | None, compute: Callable[..., Any]
) -> Any:
    """Compute a chunk of an S3 run directory: locally in TMPDIR, then upload, then record.

    The chunk's provenance files (`KEY.count.tif`, `KEY.date.tif`) and then its file
    (ZSTD-compressed: S3_CHUNK_CODEC) go up first (one PUT each, replacing an earlier
    attempt's), then the end record create-only: a record means its files are complete.
    """
    from mosaic_assembler.writer._chunkfile import S3_CHUNK_CODEC, chunk_compression

    chunks = S3Url.parse(spec.chunk_dir, "`run_dir`")
    run_prefix = S3Url(chunks.bucket, chunks.key.rsplit("/", 1)[0])
    with tempfile.TemporaryDirectory(prefix="mosaic-assembler-chunk-") as tmp:
        with chunk_compression(S3_CHUNK_CODEC):  # uploaded and read back: bytes cost more
            result = compute(dataclasses.replace(spec, chunk_dir=tmp), job, on_tile)
        if result.status.has_file:
            # provenance files first: a chunk file on the store has its provenance beside it
            for kind in spec.provenance:
                name = f"{job.key}.{kind}.tif"
                if (Path(tmp) / name).exists():
                    _s3.put_file(Path(tmp) / name, chunks.child(name), False, "chunk provenance")
            _s3.put_file(
                Path(tmp) / f"{job.key}.tif", chunks.child(f"{job.key}.tif"), False, "chunk"
            )
    write_record(run_prefix, result.to_record())
    return result


def write_record(run_prefix: S3Url, record: dict[str, Any]) -> None:
    """Write a chunk's end record create-only; keep an existing final one, replace another."""
    url = run_prefix.child(RECORD_DIR).child(f"{record['chunk']}.json")
    data = json.dumps({**record, "t": round(time.time(), 3)}).encode()
    try:
        _s3.put_bytes(url, data, create_only=True, what="chunk record")
    except _s3.ExistsError:
        try:
            existing = json.loads(_s3.get_bytes(url, "chunk record"))
        except (OutputError, ValueError):
            existing = {}
        if existing.get("status") in ("done", "empty"):
            logger.info("chunk %s was already recorded by another worker", record["chunk"])
            return
        _s3.put_bytes(url, data, create_only=False, what="chunk record")


def replace_record(run_prefix: S3Url, record: dict[str, Any]) -> None:
    """Overwrite a chunk's end record (the driver's: the same chunk, with its retry history)."""
    url = run_prefix.child(RECORD_DIR).child(f"{record['chunk']}.json")
    data = json.dumps({**record, "t": round(time.time(), 3)}).encode()
    _s3.put_bytes(url, data, create_only=False, what="chunk record")
