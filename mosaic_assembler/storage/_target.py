"""An s3:// output: built in local scratch, then uploaded so that it appears only when complete.

Same interface as `writer.OutputTarget` (check, with-block, workdir, commit). The work
directory is a temporary directory of this machine (TMPDIR): the finalize needs room there for
the output COG being built (or, with split_zoom, the split COGs), never for the chunks, which
it reads through /vsis3/.

A file output is one create-only upload (If-None-Match: *, unless `overwrite`). A split output
is a prefix of `{quadkey}.tif` COGs, `items.json` and `mosaic.json`, uploaded in that order
(the mosaicJSON, the entry point, last); `overwrite` replaces only a prefix that holds nothing
else, and then deletes the previous run's split objects that the new one does not have.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from mosaic_assembler.errors import OutputError
from mosaic_assembler.storage import _s3
from mosaic_assembler.storage._url import S3Url
from mosaic_assembler.writer._output import SPLIT_NAMES as _SPLIT_NAMES

logger = logging.getLogger(__name__)

_APPEARED = "output {!r} appeared during the run; not replaced"


class S3OutputTarget:
    """An s3:// output (a file, or with `directory` a prefix of split outputs).

    Raises:
        ConfigError: not a valid s3:// URL.
        OutputError: on check: the bucket is missing or unreachable, no credentials, or the
            output exists (and not `overwrite`, or a prefix that holds other objects).
    """

    def __init__(self, url: str, overwrite: bool = False, directory: bool = False):
        self.url = S3Url.parse(url, "`output`")
        if not self.url.key:
            raise OutputError(f"output {url!r} names a bucket, not an object key")
        self.path = self.url.url
        self.overwrite = overwrite
        self.directory = directory
        self.workdir: Path | None = None

    def check(self) -> None:
        """Check the output can be written, without creating anything."""
        if self.directory:
            self._check_prefix()
            return
        if _s3.head(self.url) is not None and not self.overwrite:
            raise OutputError(f"output {self.path!r} exists; use `overwrite` to replace it")

    def _existing_split(self) -> list[str]:
        """The keys under the output prefix (refused if any is not a split output's)."""
        keys = [o["Key"] for o in _s3.list_objects(self.url, "output")]
        if keys and not self.overwrite:
            raise OutputError(f"output {self.path!r} exists; use `overwrite` to replace it")
        for key in keys:
            name = key[len(self.url.key) + 1 :]
            if not _SPLIT_NAMES.fullmatch(name):
                raise OutputError(
                    f"output {self.path!r} is not a split output of this tool (it holds "
                    f"{name!r}); not replaced: choose another output"
                )
        return keys

    def _check_prefix(self) -> None:
        _s3.check_bucket(self.url)
        self._existing_split()

    def __enter__(self) -> S3OutputTarget:
        self.check()
        self.workdir = Path(tempfile.mkdtemp(prefix="mosaic-assembler-output-"))
        return self

    def commit(self, finished: Path) -> None:
        """Upload the finished file (or split directory)."""
        if not self.directory:
            try:
                _s3.put_file(finished, self.url, create_only=not self.overwrite)
            except _s3.ExistsError as e:
                raise OutputError(
                    f"output {self.path!r} appeared during the run; not replaced"
                ) from e
            return
        previous = self._existing_split()
        names = sorted(p.name for p in finished.iterdir())
        last = ["items.json", "mosaic.json"]  # the indexes, once what they name is there
        order = [n for n in names if n.endswith(".tif")]
        order += [n for n in names if n.endswith(".json") and n not in last] + last
        for name in order:
            try:
                _s3.put_file(finished / name, self.url.child(name), create_only=not self.overwrite)
            except _s3.ExistsError as e:
                raise OutputError(
                    f"output {self.path!r} appeared during the run; not replaced"
                ) from e
        stale = [k for k in previous if k[len(self.url.key) + 1 :] not in set(order)]
        if stale:
            _s3.delete_keys(self.url.bucket, stale)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
