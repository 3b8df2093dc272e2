"""Saving a STAC search: its items as an ItemCollection, or the equivalent mosaicJSON.

`save_items` pins a search in a run directory (a resumed run reads it back with
`open_stac_items` and does not search again); `save_mosaicjson` writes a mosaicJSON (and the
items) so that a run can be repeated without the STAC API.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from shapely.geometry import box, mapping, shape

from mosaic_assembler import web
from mosaic_assembler.errors import SourceError
from mosaic_assembler.sources.stac_items import StacItemsSource

__all__ = ["save_items", "save_mosaicjson"]


# --------------------------------------------------------------------------- mosaicJSON


logger = logging.getLogger(__name__)


def public_item(item: dict[str, Any]) -> dict[str, Any]:
    """The item as written to a document: credential query parameters of hrefs redacted.

    A signed href (`?sig=…`, `X-Amz-Signature=…`) is a secret: documents the tool writes
    never hold one (the href must be signed again to be read).
    """
    assets = item.get("assets") or {}
    hrefs = {k: web.redact(str(a.get("href", ""))) for k, a in assets.items()}
    if all(hrefs[k] == str(a.get("href", "")) for k, a in assets.items()):
        return item
    logger.warning(
        "item %s: credential query parameters removed from its hrefs in the written document",
        item.get("id"),
    )
    return {**item, "assets": {k: {**a, "href": hrefs[k]} for k, a in assets.items()}}


def _safe_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", item_id) or "_"


def save_items(source: StacItemsSource, path: str | Path) -> Path:
    """Write a source's pinned items as an ItemCollection (selection order, absolute hrefs).

    `open_stac_items(path, assets)` on it gives back the same items in the same order: use it
    to pin a search in a run directory, so that a resumed run does not search again.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(
        json.dumps(
            {"type": "FeatureCollection", "features": [public_item(i.item) for i in source.items]}
        )
    )
    tmp.replace(out)
    return out


def save_mosaicjson(
    source: StacItemsSource,
    path: str | Path,
    minzoom: int,
    maxzoom: int,
    asset: str | None = None,
    quadkey_zoom: int | None = None,
) -> Path:
    """Write the mosaicJSON equivalent of a STAC source, to repeat a run without the API.

    Two layouts, both keeping the source's item order within every quadkey:

    * `asset="visual"` (one key): each entry is that asset's href. Use it for an item's
      multi-band COG (or when one band is enough): `--mosaicjson PATH` and TiTiler's
      `/mosaicjson` endpoint read it directly.
    * `asset=None`: each item's reduced STAC JSON (only the selected assets, absolute hrefs)
      is written to `items/<id>.json` next to the mosaicJSON (`items/<collection>__<id>.json`
      when ids repeat across collections), and each entry is that file's
      path relative to the mosaicJSON (a STAC-aware mosaic reader, e.g. cogeo-mosaic's
      `MosaicBackend(path, reader=rio_tiler.io.STACReader)` with `assets=[…]`, reads it).

    Either way the pinned items themselves are also written next to it as an ItemCollection,
    `<stem>.items.json` (search order, absolute hrefs): `--items` on that file repeats the
    exact run, single-band assets included, with no STAC API and no STAC-aware mosaic reader.
    Footprints that are not one Polygon (e.g. split at the antimeridian) are indexed by their
    bounding box.

    Returns:
        The mosaicJSON path.

    Raises:
        SourceError: `asset` is not one of the source's selected assets.

    """
    from cogeo_mosaic.mosaic import MosaicJSON

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if asset is not None and any(asset not in it.assets for it in source.items):
        raise SourceError(
            f"asset {asset!r} is not among the selected assets {', '.join(source.items[0].assets)}"
        )
    features = _mosaic_features(source, asset, out.parent / "items")
    mosaic = MosaicJSON.from_features(
        features, minzoom=minzoom, maxzoom=maxzoom, quadkey_zoom=quadkey_zoom, quiet=True
    )
    out.write_text(mosaic.model_dump_json(exclude_none=True))
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    save_items(source, out.parent / f"{stem}.items.json")
    return out


def _mosaic_features(
    source: StacItemsSource, asset: str | None, item_dir: Path
) -> list[dict[str, Any]]:
    """One Feature per item: its footprint (a Polygon, else its bbox) and its mosaic entry."""
    features = []
    dup = len({i.id for i in source.items}) < len(source.items)  # same id, other collections
    for it, fp in zip(source.items, source.footprints, strict=True):
        item = public_item(it.item)
        geom = shape(json.loads(fp))
        if geom.geom_type != "Polygon":
            geom = box(*geom.bounds)
        if asset is not None:
            entry = item["assets"][asset]["href"]
        else:
            item_dir.mkdir(exist_ok=True)
            key = f"{item.get('collection', '')}__{it.id}" if dup else it.id
            name = f"{_safe_name(key)}.json"
            (item_dir / name).write_text(json.dumps(item))
            entry = f"items/{name}"
        features.append(
            {"type": "Feature", "geometry": mapping(geom), "properties": {"path": entry}}
        )
    return features
