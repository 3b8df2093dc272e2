"""The output target: an output path that appears atomically, built in a sibling directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from mosaic_assembler.errors import OutputError


class OutputTarget:
    """An output path that appears atomically: work happens in a sibling temp directory.

    The output is a file, or (with `directory`) a directory of files (split outputs).

    Raises:
        OutputError: on enter, when the output exists (and `overwrite` is False), its
            directory does not exist, or it is not writable.
    """

    def __init__(self, path: str | Path, overwrite: bool = False, directory: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.directory = directory
        self.workdir: Path | None = None

    def check(self) -> None:
        """Check the output can be written, without creating anything."""
        p = self.path
        if p.is_dir() and not self.directory:
            raise OutputError(f"output {str(p)!r} is a directory")
        if p.exists() and not p.is_dir() and self.directory:
            raise OutputError(f"output {str(p)!r} is a file; split outputs need a directory")
        if p.exists() and not self.overwrite:
            raise OutputError(f"output {str(p)!r} exists; use --overwrite to replace it")
        parent = p.absolute().parent
        if not parent.is_dir():
            raise OutputError(f"output directory {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"output directory {str(parent)!r} is not writable")
        if p.exists() and not os.access(p, os.W_OK):
            raise OutputError(f"output {str(p)!r} is not writable")

    def __enter__(self) -> OutputTarget:
        self.check()
        try:
            self.workdir = Path(
                tempfile.mkdtemp(
                    prefix=f".{self.path.name}.partial-", dir=self.path.absolute().parent
                )
            )
        except OSError as e:
            raise OutputError(
                f"cannot create a temporary directory next to {str(self.path)!r}: {e}"
            ) from e
        return self

    def commit(self, finished: Path) -> None:
        """Move a finished file into place (atomic on one filesystem)."""
        if self.path.exists() and not self.overwrite:
            raise OutputError(f"output {str(self.path)!r} appeared during the run; not replaced")
        if self.directory and self.path.exists():
            assert self.workdir is not None
            old = self.workdir / "previous"
            os.replace(self.path, old)  # moved aside, removed with the work directory
        os.replace(finished, self.path)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
