"""A chips OUT_DIR on object storage (`out_dir` s3://bucket/prefix).

Workers: `process_remote` runs a batch into a local temporary directory (TMPDIR of the
thread, process or Dask worker), then uploads each point's files (chip GeoTIFFs, each PNG's
.aux.xml then the PNG) under the prefix, with their relative names; a point whose upload
fails is failed. The point's rows travel back in its outcome (the CSV part's text).

Driver: the ledger is `ledger.S3Ledger` under OUT_DIR/ledger/: one create-only object per
run start and one per finished batch, holding every point's status and rows (so a record
means its files are uploaded: the worker uploaded them before returning). A rerun lists the
records and skips the finished points; values.csv is made from the records' rows and put
in one PUT (it appears whole) at the end.

Layout under the prefix, as a local OUT_DIR's but without values/ (the rows are in the
ledger's records)::

    chips/<point>/<date>_<item>.tif
    <composite>/<point>/<date>_<item>.png (+ .png.aux.xml)
    values.csv
    ledger/<time>-<id>.json
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import ConfigError, OutputError

logger = logging.getLogger(__name__)

__all__ = ["LEDGER_PREFIX", "RemoteOut", "process_remote"]

LEDGER_PREFIX = "ledger"
_UPLOAD_THREADS = 8


def process_remote(spec: Any, batch: Any, stats: Any, process: Any) -> list[Any]:
    """`process(spec, batch, stats)` into local scratch, then each point's files uploaded."""
    from mosaic_assembler.chips._outputs import part_path
    from mosaic_assembler.storage import _s3
    from mosaic_assembler.storage._url import S3Url

    prefix = S3Url.parse(spec.out_dir, "`out_dir`")
    with tempfile.TemporaryDirectory(prefix="mosaic-assembler-chips-") as tmp:
        outcomes, counters = process(dataclasses.replace(spec, out_dir=tmp), batch, stats)
        root = Path(tmp)
        files: dict[str, list[Path]] = {}
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root).parts
            if f.is_file() and rel[0] != "values" and not f.name.endswith(".tmp"):
                files.setdefault(rel[1], []).append(f)

        def upload(key: str) -> str:
            # an aux.xml sorts after its PNG: send it first (a PNG there is georeferenced)
            ordered = sorted(files.get(key, []), key=lambda p: (p.suffix != ".xml", str(p)))
            try:
                for f in ordered:
                    _s3.put_file(f, prefix.child(f.relative_to(root).as_posix()), False, "chip")
            except OutputError as e:
                return str(e)
            return ""

        keys = [o.key for o in outcomes if o.status != "failed"]
        with ThreadPoolExecutor(_UPLOAD_THREADS, thread_name_prefix="chips-upload") as pool:
            errors = dict(zip(keys, pool.map(upload, keys), strict=True))
        done = []
        for o in outcomes:
            if errors.get(o.key):
                done.append(dataclasses.replace(o, status="failed", rows=0, error=errors[o.key]))
            elif o.status != "failed":
                text = part_path(tmp, o.key).read_text(encoding="utf-8")
                done.append(dataclasses.replace(o, part=text))
            else:
                done.append(o)
    return [done, counters]


class RemoteOut:
    """The driver's side of an s3:// OUT_DIR: the ledger and values.csv."""

    def __init__(self, url: str):
        from mosaic_assembler.ledger import S3Ledger
        from mosaic_assembler.storage._url import S3Url

        self.url = S3Url.parse(url, "`out_dir`")
        if not self.url.key:
            raise ConfigError(f"`out_dir` {url!r} names a bucket: give a prefix, s3://bucket/key")
        self.ledger = S3Ledger(self.url.child(LEDGER_PREFIX))

    def check(self) -> None:
        """The bucket exists and can be reached.

        Raises:
            OutputError: it does not, or no credentials.
        """
        from mosaic_assembler.storage import _s3

        _s3.check_bucket(self.url, "`out_dir`")

    def finished(self, config: str, restart: bool) -> dict[str, dict[str, Any]]:
        """The points an earlier run finished (their last record: done or empty, with rows).

        Raises:
            ConfigError: the prefix holds chips made with other options (and not restart).
        """
        entries = [] if restart else self.ledger.read()
        starts = [n for n, e in enumerate(entries) if e.get("event") == "run" and e.get("restart")]
        entries = entries[starts[-1] :] if starts else entries
        runs = {e.get("config") for e in entries if e.get("event") == "run"}
        if runs - {config}:
            raise ConfigError(
                f"{self.url.url} holds chips made with other options; give `restart` to redo "
                "them or another `out_dir`"
            )
        self.ledger.append({"event": "run", "config": config, "restart": restart})
        last: dict[str, dict[str, Any]] = {}
        for e in entries:
            for p in e.get("points", ()) if e.get("event") == "batch" else ():
                last[p["point"]] = p
        return {k: p for k, p in last.items() if p.get("status") in ("done", "empty")}

    def record(self, outcomes: Sequence[Any]) -> None:
        """One ledger record of a finished batch: every point's status and rows."""
        points = [{"point": o.key, "status": o.status, "rows": o.rows, "error": o.error,
                   "part": o.part} for o in outcomes]  # fmt: skip
        self.ledger.append({"event": "batch", "points": points})

    def write_values(self, header: Sequence[str], parts: Sequence[str]) -> tuple[str, int]:
        """values.csv from the points' parts (POINTS order), in one PUT."""
        import csv
        import io

        from mosaic_assembler.chips._outputs import _csv_text
        from mosaic_assembler.storage import _s3

        rows: list[dict[str, Any]] = []
        for text in parts:
            rows.extend(csv.DictReader(io.StringIO(text, newline="")))
        url = self.url.child("values.csv")
        _s3.put_bytes(url, _csv_text(header, rows).encode("utf-8"), False, "values.csv")
        return url.url, len(rows)
