"""mosaic_assembler.sources.pinning: a STAC search's items, kept in the run directory.

A resumed run must read the same items as its first run, whatever the API answers now: the
first run writes them to `search.items.json` with the hash of the search that found them in
`search.json`; a resumed run with the same search reuses them instead of searching again.
In an s3:// run directory both are objects under its prefix (the items uploaded first, then
`search.json`, which names them), read back the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["PINNED_ITEMS", "PINNED_SEARCH", "load_pinned", "pin_items", "search_key"]

PINNED_ITEMS = "search.items.json"  # in the run directory: the items the first run found
PINNED_SEARCH = "search.json"  # … and the hash of the search that found them


def search_key(
    search: Any, aoi_geojson: str, assets: tuple[str, ...], extra: tuple[str, ...]
) -> str:
    """A stable hash of what decides a search's items (not where its results are saved)."""
    what = dataclasses.asdict(search)
    what.pop("save_mosaicjson", None)
    what.pop("mosaicjson_asset", None)
    parts = {"search": what, "aoi": aoi_geojson, "assets": assets, "extra": extra}
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def load_pinned(
    run_dir: Path | str, key: str, assets: tuple[str, ...], extra: tuple[str, ...]
) -> Any:
    """The items a previous run of the same search pinned in `run_dir`, or None."""
    from mosaic_assembler.sources.stac_items import open_stac_items

    if isinstance(run_dir, str):  # s3://
        return _load_pinned_s3(run_dir, key, assets, extra)
    try:
        pinned = json.loads((run_dir / PINNED_SEARCH).read_text())
    except (OSError, ValueError):
        return None
    if pinned.get("key") != key or not (run_dir / PINNED_ITEMS).exists():
        return None
    source = open_stac_items(run_dir / PINNED_ITEMS, assets, extra_assets=extra)
    return _resumed(source, run_dir)


def _load_pinned_s3(run_dir: str, key: str, assets: tuple[str, ...], extra: tuple[str, ...]) -> Any:
    from mosaic_assembler.errors import OutputError
    from mosaic_assembler.sources.stac_items import open_stac_items
    from mosaic_assembler.storage import S3Url, _s3

    prefix = S3Url.parse(run_dir, "`run_dir`")
    try:
        pinned = json.loads(_s3.get_bytes(prefix.child(PINNED_SEARCH), "pinned search", 1 << 20))
    except (OutputError, ValueError):  # none yet (or unreadable: the run then says why)
        return None
    if not isinstance(pinned, dict) or pinned.get("key") != key:
        return None
    source = open_stac_items(prefix.child(PINNED_ITEMS).url, assets, extra_assets=extra)
    return _resumed(source, run_dir)


def _resumed(source: Any, run_dir: Path | str) -> Any:
    logger.info(
        "resuming with the %d item(s) the first run's search pinned in %s (not "
        "searching again; --restart searches anew)",
        len(source.items),
        run_dir,
    )
    return source


def pin_items(run_dir: Path | str, key: str, source: Any) -> None:
    """Keep a search's items in the run directory, for a resumed run (atomic writes).

    In an s3:// run directory: the items are uploaded, then `search.json` (each object
    appears whole; `search.json` only once the items it names are there).
    """
    from mosaic_assembler.sources.stac_api import save_items

    if isinstance(run_dir, str):  # s3://
        import tempfile

        from mosaic_assembler.storage import S3Url, _s3

        prefix = S3Url.parse(run_dir, "`run_dir`")
        with tempfile.TemporaryDirectory(prefix="mosaic-assembler-pin-") as scratch:
            saved = save_items(source, Path(scratch) / PINNED_ITEMS)
            _s3.put_file(saved, prefix.child(PINNED_ITEMS), False, "pinned search items")
        _s3.put_bytes(
            prefix.child(PINNED_SEARCH), json.dumps({"key": key}).encode(), False, "pinned search"
        )
        return
    save_items(source, run_dir / PINNED_ITEMS)
    tmp = run_dir / f".{PINNED_SEARCH}.tmp"
    tmp.write_text(json.dumps({"key": key}))
    tmp.replace(run_dir / PINNED_SEARCH)
