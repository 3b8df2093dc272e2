"""Reading a JSON source document and resolving the hrefs it holds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from mosaic_assembler.errors import SourceError


def read_json(path: str | Path, what: str) -> Any:
    """Load a local JSON file; one clear SourceError for every way it can fail."""
    p = Path(path)
    if str(path) == "-":
        raise SourceError(f"{what} cannot be read from stdin")
    if not p.exists():
        raise SourceError(f"{what} {str(path)!r} does not exist")
    if p.is_dir():
        raise SourceError(f"{what} {str(path)!r} is a directory, not a file")
    try:
        with p.open("rb") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"cannot read {what} {str(path)!r}: {e}") from e
    except json.JSONDecodeError as e:
        raise SourceError(f"{what} {str(path)!r} is not valid JSON: {e}") from e


def resolve_href(href: str, base_dir: Path) -> str:
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
    return str((base_dir / href).resolve())
