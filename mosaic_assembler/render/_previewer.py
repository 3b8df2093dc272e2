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
    crs = LEAFLET_CRS.get(tms)
    if crs is None:
        logger.warning(
            "no previewer for `tms` %s: Leaflet shows %s only", tms, ", ".join(LEAFLET_CRS)
        )
        return None
    page = previewer_path(out)
    pmtiles = out.suffix.lower() == ".pmtiles"
    assets_name = f"{out.stem}.preview" if pmtiles else "preview"
    assets = page.parent / assets_name
    static = resources.files("mosaic_assembler") / "static"
    _copy_tree(static / "leaflet", assets / "leaflet")
    _copy_file(static / "previewer" / "previewer.js", assets / "previewer.js")
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
        _copy_tree(static / "pmtiles", assets / "pmtiles")
        config["url"] = out.name
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
    write_if_changed(page, text.encode("utf-8"))
    return page


def _tile_index(present: Iterable[Tile]) -> dict[str, list[int]] | None:
    by_zoom: dict[str, list[int]] = defaultdict(list)
    n = 0
    for x, y, z in sorted(present, key=lambda t: (t[2], t[1], t[0])):
        by_zoom[str(z)] += (x, y)
        n += 1
        if n > MAX_LISTED_TILES:
            return None
    return dict(by_zoom)


def _copy_file(src: Any, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_if_changed(dest, src.read_bytes())


def _copy_tree(src: Any, dest: Path) -> None:
    for item in src.iterdir():
        if item.is_dir():
            _copy_tree(item, dest / item.name)
        else:
            _copy_file(item, dest / item.name)
