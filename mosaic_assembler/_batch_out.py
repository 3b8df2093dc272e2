"""mosaic_assembler._batch_out: a batch's OUT_DIR, a local directory or an s3:// prefix.

Both give the batch the same few operations: refuse a place that is not a batch's, the
ledger, each feature's output and run directory, whether a finished COG is still there, and
the atomic writing of index.json / mosaic.json (a local rename; on S3 one PUT, which makes
the object appear whole). On S3 the features' COGs are uploaded by `assemble` itself (from
the thread or the Dask worker that computed them), their run directories are S3 run
directories under `OUT_DIR/.runs/<id>` (a worker needs only the bucket, and a feature killed
mid-way resumes its chunks from any machine), and the ledger is `ledger.S3Ledger` under
`OUT_DIR/ledger/`, written by the driver only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import ConfigError, OutputError
from mosaic_assembler.ledger import FileLedger, S3Ledger

__all__ = ["LocalOut", "S3Out", "open_out"]

LEDGER = "ledger.jsonl"
S3_LEDGER = "ledger"
RUNS = ".runs"


class LocalOut:
    """OUT_DIR on this machine's file system."""

    def __init__(self, root: Path):
        self.root = root
        self.ledger: FileLedger | S3Ledger = FileLedger(root / LEDGER)

    @property
    def where(self) -> Path:
        """OUT_DIR as the results give it."""
        return self.root

    def check(self, overwrite: bool) -> None:
        """Refuse a directory that is not a batch's, unless `overwrite`."""
        out = self.root
        if out.exists() and not out.is_dir():
            raise OutputError(f"`out_dir` {out} exists and is not a directory")
        if out.is_dir() and not self.ledger.exists() and any(out.iterdir()) and not overwrite:
            raise OutputError(
                f"`out_dir` {out} is not empty and holds no batch ledger ({LEDGER}); "
                "give an empty or new directory, or `overwrite`"
            )

    def prepare(self, runs: str) -> None:
        """Create OUT_DIR and the parent of the run directories."""
        self.root.mkdir(parents=True, exist_ok=True)
        Path(runs).mkdir(parents=True, exist_ok=True)

    def default_runs(self) -> str:
        """The parent of the features' run directories."""
        return str(self.root / RUNS)

    def run_dir(self, runs: str, feature_id: str) -> str:
        """A feature's run directory below `runs`."""
        return str(Path(runs) / feature_id)

    def output(self, name: str) -> str:
        """A file of OUT_DIR, as `assemble` takes it."""
        return str(self.root / name)

    def result_path(self, name: str) -> Path:
        """A file of OUT_DIR, as the results give it."""
        return self.root / name

    def has(self, name: str) -> bool:
        """Whether OUT_DIR holds this file."""
        return (self.root / name).is_file()

    def href(self, name: str) -> str:
        """The index's href of a COG (relative to index.json)."""
        return f"./{name}"

    def mosaic_path(self, name: str) -> str:
        """The mosaicJSON's path of a COG (absolute: cogeo-mosaic reads relative ones from cwd)."""
        return str(self.root.absolute() / name)

    def write_text(self, name: str, text: str) -> None:
        """Write a file of OUT_DIR atomically (a temporary file renamed into place)."""
        path = self.root / name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def remove(self, name: str) -> None:
        """Remove a file of OUT_DIR the batch wrote (a stale mosaic.json)."""
        (self.root / name).unlink(missing_ok=True)

    def finish(self, runs: str) -> None:
        """Remove the run directories' parent when every feature's run was cleaned up."""
        try:
            Path(runs).rmdir()
        except OSError:
            pass


class S3Out:
    """OUT_DIR as an s3:// prefix."""

    def __init__(self, url: str):
        from mosaic_assembler.storage._url import S3Url

        self.url = S3Url.parse(url, "`out_dir`")
        if not self.url.key:
            raise ConfigError(f"`out_dir` {url!r} names a bucket: give a prefix, s3://bucket/key")
        self.ledger = S3Ledger(self.url.child(S3_LEDGER))
        self._names: set[str] | None = None

    @property
    def where(self) -> str:
        """OUT_DIR as the results give it (its URL)."""
        return self.url.url

    def _listed(self) -> set[str]:
        from mosaic_assembler.storage import _s3

        if self._names is None:
            start = len(self.url.key) + 1
            self._names = {o["Key"][start:] for o in _s3.list_objects(self.url, "`out_dir`")}
        return self._names

    def check(self, overwrite: bool) -> None:
        """Refuse a prefix that holds objects but no batch ledger, unless `overwrite`."""
        from mosaic_assembler.storage import _s3

        _s3.check_bucket(self.url, "`out_dir`")
        names = self._listed()
        if names and not any(n.startswith(f"{S3_LEDGER}/") for n in names) and not overwrite:
            raise OutputError(
                f"`out_dir` {self.url.url} is not empty and holds no batch ledger "
                f"({S3_LEDGER}/); give an empty or new prefix, or `overwrite`"
            )

    def prepare(self, runs: str) -> None:
        """Nothing to create: a prefix exists once an object is under it."""

    def default_runs(self) -> str:
        """The parent of the features' run directories (S3 run directories)."""
        return self.url.child(RUNS).url

    def run_dir(self, runs: str, feature_id: str) -> str:
        """A feature's run directory below `runs` (a URL or a local path)."""
        return f"{runs.rstrip('/')}/{feature_id}" if "://" in runs else str(Path(runs) / feature_id)

    def output(self, name: str) -> str:
        """An object of OUT_DIR, as `assemble` takes it."""
        return self.url.child(name).url

    def result_path(self, name: str) -> str:
        """An object of OUT_DIR, as the results give it."""
        return self.url.child(name).url

    def has(self, name: str) -> bool:
        """Whether OUT_DIR held this object when the batch started."""
        return name in self._listed()

    def href(self, name: str) -> str:
        """The index's href of a COG (its s3:// URL)."""
        return self.url.child(name).url

    def mosaic_path(self, name: str) -> str:
        """The mosaicJSON's path of a COG (its s3:// URL)."""
        return self.url.child(name).url

    def write_text(self, name: str, text: str) -> None:
        """Write an object of OUT_DIR in one PUT (it appears whole)."""
        from mosaic_assembler.storage import _s3

        _s3.put_bytes(self.url.child(name), text.encode(), False, name)

    def remove(self, name: str) -> None:
        """Delete an object of OUT_DIR the batch wrote (a stale mosaic.json)."""
        from mosaic_assembler.storage import _s3

        if _s3.head(self.url.child(name), "`out_dir`") is not None:
            _s3.delete_keys(self.url.bucket, [self.url.child(name).key])

    def finish(self, runs: str) -> None:
        """Nothing to do: an S3 run directory's objects are deleted by its run."""


def open_out(out_dir: Any) -> LocalOut | S3Out:
    """OUT_DIR: an s3:// prefix, or a local directory.

    Raises:
        ConfigError: another URL scheme, or a bad s3:// URL.
    """
    from mosaic_assembler.storage import is_s3

    text = str(out_dir)
    if is_s3(text):
        return S3Out(text)
    if "://" in text or text.startswith("/vsi"):
        raise ConfigError(f"`out_dir` {text}: give a local directory or an s3://bucket/prefix")
    return LocalOut(Path(out_dir))
