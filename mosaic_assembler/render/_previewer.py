"""The offline previewer: an HTML page + Leaflet (and pmtiles.js) copied beside the pyramid.

A folder's page is `OUT/index.html`, its scripts in `OUT/preview/`; it opens from file://
(the page lists the tiles written, so it never asks for a missing one). An archive
`NAME.pmtiles` gets `NAME.html` and `NAME.preview/` beside it; pmtiles.js reads the archive
with HTTP range requests, so that page needs a static server that answers them
(`python -m mosaic_assembler.render.rangeserver DIR`; Python's `http.server` does not).
"""

from __future__ import annotations

import html
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from mosaic_assembler.render._sinks import write_if_changed
from mosaic_assembler.render._spec import Tile

logger = logging.getLogger(__name__)

#: TMS id → Leaflet CRS; other TMSs are rendered but get no previewer.
LEAFLET_CRS = {"WebMercatorQuad": "EPSG3857", "WorldCRS84Quad": "EPSG4326"}

#: Above this many tiles the folder page lists none and asks for every tile in the bounds.
MAX_LISTED_TILES = 200_000


def previewer_path(out: Path) -> Path:
    """Where the page of a pyramid goes."""
    if out.suffix.lower() == ".pmtiles":
        return out.with_suffix(".html")
    return out / "index.html"


def write_previewer(
    out: Path, meta: dict[str, Any], tms: str, present: Iterable[Tile]
) -> Path | None:
    """Write the page and copy its scripts; None for a TMS that Leaflet cannot show.

    Args:
        out: the pyramid (folder or .pmtiles file).
        meta: the pyramid's metadata (format, ext, tilesize, minzoom, maxzoom, bounds, name).
        tms: the TileMatrixSet id.
        present: the tiles written (folder only; listed in the page).
    """
    pmtiles = out.suffix.lower() == ".pmtiles"
    files = previewer_files(out.name, pmtiles, meta, tms, present)
    if files is None:
        return None
    page = previewer_path(out)
    for name, data in files.items():
        dest = page.parent / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_if_changed(dest, data)
    return page


def previewer_files(
    name: str, pmtiles: bool, meta: dict[str, Any], tms: str, present: Iterable[Tile]
) -> dict[str, bytes] | None:
    """The page and its scripts: relative path → bytes, the page last.

    Paths are relative to the page's directory: the pyramid's folder, or the directory of a
    `.pmtiles` archive. None for a TMS that Leaflet cannot show.

    Args:
        name: the pyramid's file or folder name (`NAME.pmtiles` or the folder's name).
        pmtiles: whether the pyramid is a PMTiles archive.
        meta: the pyramid's metadata (format, ext, tilesize, minzoom, maxzoom, bounds, name).
        tms: the TileMatrixSet id.
        present: the tiles written (folder only; listed in the page).
    """
    crs = LEAFLET_CRS.get(tms)
    if crs is None:
        logger.warning(
            "no previewer for `tms` %s: Leaflet shows %s only", tms, ", ".join(LEAFLET_CRS)
        )
        return None
    stem = name[: -len(".pmtiles")] if pmtiles else name
    assets_name = f"{stem}.preview" if pmtiles else "preview"
    static = resources.files("mosaic_assembler") / "static"
    files: dict[str, bytes] = {}
    _collect(static / "leaflet", f"{assets_name}/leaflet", files)
    files[f"{assets_name}/previewer.js"] = (static / "previewer" / "previewer.js").read_bytes()
    config: dict[str, Any] = {
        "kind": "pmtiles" if pmtiles else "folder",
        "crs": crs,
        "tilesize": meta["tilesize"],
        "minzoom": meta["minzoom"],
        "maxzoom": meta["maxzoom"],
        "bounds": meta["bounds"],
    }
    extra = ""
    if pmtiles:
        _collect(static / "pmtiles", f"{assets_name}/pmtiles", files)
        config["url"] = name
        extra = f'<script src="{assets_name}/pmtiles/pmtiles.js"></script>'
    else:
        config["url"] = "{z}/{x}/{y}." + meta["ext"]
        config["present"] = _tile_index(present)
    template = (static / "previewer" / "index.html").read_text(encoding="utf-8")
    text = (
        template.replace("__TITLE__", html.escape(meta["name"]))
        .replace("__ASSETS__", assets_name)
        .replace("__EXTRA_SCRIPTS__", extra)
        .replace("__CONFIG__", json.dumps(config).replace("</", "<\\/"))
    )
    files[f"{stem}.html" if pmtiles else "index.html"] = text.encode("utf-8")
    return files


def _tile_index(present: Iterable[Tile]) -> dict[str, list[int]] | None:
    by_zoom: dict[str, list[int]] = defaultdict(list)
    n = 0
    for x, y, z in sorted(present, key=lambda t: (t[2], t[1], t[0])):
        by_zoom[str(z)] += (x, y)
        n += 1
        if n > MAX_LISTED_TILES:
            return None
    return dict(by_zoom)


def _collect(src: Any, dest: str, files: dict[str, bytes]) -> None:
    for item in sorted(src.iterdir(), key=lambda i: i.name):
        if item.is_dir():
            _collect(item, f"{dest}/{item.name}", files)
        else:
            files[f"{dest}/{item.name}"] = item.read_bytes()
