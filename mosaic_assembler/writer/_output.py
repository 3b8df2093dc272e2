"""The output target: an output path that appears atomically, built in a sibling directory.

The work directory is `.OUT.partial-XXXX` next to the output, holding an owner file (OWNER_FILE:
the output's name, the process id and the host). A run killed during finalize leaves it behind;
the next run of the same output removes it once its owner process is gone (same host).

A split output is a directory holding only `{quadkey}.tif` COGs (with their provenance COGs
and STAC sidecars, `{quadkey}.count.tif`, `{quadkey}.date.tif`, `{quadkey}.json`),
`mosaic.json`, `items.json` and `collection.json`;
`overwrite` replaces only a directory that looks like that, and swaps the new one in whole.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from types import TracebackType

from mosaic_assembler.errors import OutputError

logger = logging.getLogger(__name__)

#: The owner file inside a work directory, and its format tag.
OWNER_FILE = "owner.json"
PARTIAL_FORMAT = "mosaic-assembler-partial/1"

#: The names a split output directory holds (see splits.write_split).
SPLIT_NAMES = re.compile(
    r"([0-3]+|\d+-\d+-\d+)(\.count|\.date)?\.tif|([0-3]+|\d+-\d+-\d+)\.json"
    r"|mosaic\.json|items\.json|collection\.json"
)


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (a live pid reused by another process counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _not_split_output(path: Path) -> str | None:
    """Why `path` is not a split output directory this tool wrote, or None if it is one."""
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        return "it is not a directory (a symlink?)"
    for entry in os.scandir(path):
        if not SPLIT_NAMES.fullmatch(entry.name):
            return f"it holds {entry.name!r}"
        if not entry.is_file(follow_symlinks=False):
            return f"{entry.name!r} is not a regular file"
    return None


class OutputTarget:
    """An output path that appears atomically: work happens in a sibling temp directory.

    The output is a file, or (with `directory`) a directory of files (split outputs).

    Raises:
        OutputError: on enter, when the output exists (and `overwrite` is False, or it is a
            directory that is not a split output), its directory does not exist, or it is
            not writable.
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
            raise OutputError(f"output {str(p)!r} exists; use `overwrite` to replace it")
        parent = p.absolute().parent
        if not parent.is_dir():
            raise OutputError(f"output directory {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"output directory {str(parent)!r} is not writable")
        if p.exists() and not os.access(p, os.W_OK):
            raise OutputError(f"output {str(p)!r} is not writable")
        if self.directory and os.path.lexists(p):
            self._check_replaceable()

    def _check_replaceable(self) -> None:
        why = _not_split_output(self.path)
        if why is not None:
            raise OutputError(
                f"output {str(self.path)!r} is not a split output of this tool ({why}); "
                "not replaced: choose another output"
            )

    def __enter__(self) -> OutputTarget:
        self.check()
        self.remove_stale_partials()
        try:
            self.workdir = Path(
                tempfile.mkdtemp(
                    prefix=f".{self.path.name}.partial-", dir=self.path.absolute().parent
                )
            )
            owner: dict[str, object] = {"format": PARTIAL_FORMAT, "output": self.path.name}
            owner.update(pid=os.getpid(), host=socket.gethostname())
            (self.workdir / OWNER_FILE).write_text(json.dumps(owner))
        except OSError as e:
            raise OutputError(
                f"cannot create a temporary directory next to {str(self.path)!r}: {e}"
            ) from e
        return self

    def remove_stale_partials(self) -> int:
        """Remove work directories of this output whose owner process is gone.

        A directory counts only when its owner file names this output, this host and a
        process that no longer exists. An output a killed split overwrite had moved aside
        (and not yet replaced) is moved back first.

        Returns:
            How many were removed.
        """
        parent = self.path.absolute().parent
        prefix = f".{self.path.name}.partial-"
        removed = 0
        for entry in os.scandir(parent):
            if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
                continue
            work = Path(entry.path)
            try:
                owner = json.loads((work / OWNER_FILE).read_text())
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            if not isinstance(owner, dict) or owner.get("format") != PARTIAL_FORMAT:
                continue
            pid = owner.get("pid")
            if owner.get("output") != self.path.name or owner.get("host") != socket.gethostname():
                continue
            if not isinstance(pid, int) or pid == os.getpid() or _alive(pid):
                continue
            previous = work / "previous"
            if previous.is_dir() and not os.path.lexists(self.path):
                os.replace(previous, self.path)
            logger.info("removing %s, left by a run that was killed", work)
            shutil.rmtree(work, ignore_errors=True)
            removed += 1
        return removed

    def commit(self, finished: Path) -> None:
        """Move a finished file into place (atomic on one filesystem)."""
        if self.path.exists() and not self.overwrite:
            raise OutputError(f"output {str(self.path)!r} appeared during the run; not replaced")
        if self.directory and os.path.lexists(self.path):
            if self.workdir is None:
                raise OutputError("OutputTarget.commit outside its with block")
            self._check_replaceable()  # again: files may have appeared during the run
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
