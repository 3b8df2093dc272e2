"""Reading a JSON source document and resolving the hrefs it holds."""

from __future__ import annotations

import json
import os
import posixpath
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mosaic_assembler.errors import SourceError

#: Largest source document read (mosaicJSON, STAC items, AOI), in bytes. json.load holds the
#: text and its Python objects at once (~5-10 x the file size), so a 256 MB document already
#: needs 1-3 GB; a larger one is more likely a wrong path (a raster, /dev/zero) than a source.
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
_READ_BLOCK = 1024 * 1024


def read_document(path: str | Path, what: str, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of a local source document, refused above `limit` before it is read.

    A regular file is measured first; anything else (a FIFO, a device, /dev/stdin) is read
    block by block up to the limit, and refused at the first NUL byte, which no JSON text
    holds (so /dev/zero fails at once instead of filling `limit` bytes of memory).

    Raises:
        SourceError: missing, a directory, unreadable, over the limit or binary.
    """
    if str(path).startswith("s3://"):
        from mosaic_assembler.storage import read_bytes

        return read_bytes(str(path), what, limit)
    p = Path(path)
    if str(path) == "-":
        raise SourceError(f"{what} cannot be read from stdin")
    try:
        st = p.stat()
    except FileNotFoundError as e:
        raise SourceError(f"{what} {str(path)!r} does not exist") from e
    except OSError as e:
        raise SourceError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{what} {str(path)!r} is a directory, not a file")
    too_big = (
        f"{what} {str(path)!r} is larger than {_size(limit)}, the largest source document "
        "read (MAX_DOCUMENT_BYTES; split it, or use a STAC API search)"
    )
    if stat.S_ISREG(st.st_mode) and st.st_size > limit:
        raise SourceError(too_big)
    try:
        with p.open("rb") as f:
            if stat.S_ISREG(st.st_mode):
                data = f.read(limit + 1)
            else:
                blocks, size = [], 0
                while size <= limit and (block := f.read(min(_READ_BLOCK, limit + 1 - size))):
                    if b"\0" in block:
                        raise SourceError(f"{what} {str(path)!r} is binary data, not JSON")
                    blocks.append(block)
                    size += len(block)
                data = b"".join(blocks)
    except OSError as e:
        raise SourceError(f"cannot read {what} {str(path)!r}: {e.strerror or e}") from e
    if len(data) > limit:  # grew after the stat
        raise SourceError(too_big)
    return data


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n} bytes"


def read_json(path: str | Path, what: str, limit: int = MAX_DOCUMENT_BYTES) -> Any:
    """Load a local JSON file (see `read_document`); one clear SourceError for every failure."""
    data = read_document(path, what, limit)
    try:
        return json.loads(data)
    except UnicodeDecodeError as e:
        raise SourceError(f"{what} {str(path)!r} is not UTF-8 text: {e}") from e
    except json.JSONDecodeError as e:
        raise SourceError(f"{what} {str(path)!r} is not valid JSON: {e}") from e
    except RecursionError as e:
        raise SourceError(f"{what} {str(path)!r} nests too deeply to be read") from e


def document_dir(path: str | Path) -> Path | str:
    """The directory of a source document: a local path, or an s3:// prefix (str)."""
    text = str(path)
    if text.startswith("s3://"):
        return posixpath.dirname(text)
    return Path(path).resolve().parent


def resolve_href(href: str, base_dir: Path | str) -> str:
    """An href made absolute against the directory of the document that holds it.

    URLs (http, s3, …) and GDAL virtual paths (/vsi…) are returned unchanged.
    """
    parsed = urlparse(href)
    if parsed.scheme and len(parsed.scheme) > 1:  # a one-letter scheme is a Windows drive
        if parsed.scheme == "file":
            return parsed.path
        return href
    if href.startswith("/vsi") or os.path.isabs(href):
        return href
    if isinstance(base_dir, str):  # an s3:// document: its relative hrefs are s3:// too
        bucket_end = base_dir.index("/", len("s3://")) if base_dir.count("/") > 2 else None
        root = base_dir[:bucket_end] if bucket_end else base_dir
        key = base_dir[len(root) :]
        return root + posixpath.normpath(posixpath.join(key or "/", href))
    return str((base_dir / href).resolve())
