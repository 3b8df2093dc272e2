"""A STAC ItemCollection / FeatureCollection file as an asset source."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import mercantile
from shapely import STRtree
from shapely.geometry import box, shape

from mosaic_assembler.errors import SourceError
from mosaic_assembler.sources._files import document_dir, read_json, resolve_href

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ItemAssets:
    """One STAC item reduced to what a tile read needs.

    Attributes:
        id: item id.
        datetime: the item's datetime string (or start_datetime), "" if none.
        item_json: the item as JSON, hrefs absolute, only the selected assets kept.
        assets: the selected asset keys, in band order.
    """

    id: str
    datetime: str
    item_json: str = field(repr=False)
    assets: tuple[str, ...]

    @property
    def item(self) -> dict[str, Any]:
        """The item as a dict (parsed on each call)."""
        return json.loads(self.item_json)


@dataclass(frozen=True)
class StacItemsSource:
    """STAC items with their footprints; selection order is the file's order."""

    path: str
    items: tuple[ItemAssets, ...]
    footprints: tuple[str, ...]  # GeoJSON geometry strings, lon/lat
    skipped: tuple[str, ...]  # ids of items lacking a selected asset

    @cached_property
    def _tree(self) -> STRtree:
        return STRtree([shape(json.loads(f)) for f in self.footprints])

    @cached_property
    def bounds(self) -> tuple[float, float, float, float]:
        """Lon/lat bounds of all item footprints."""
        return _union_bounds(self.footprints)

    def assets_for_tile(self, x: int, y: int, z: int, tms: Any = None) -> list[ItemAssets]:
        """Items whose footprint intersects tile (x, y, z), in file order.

        `tms`: the tile's morecantile TileMatrixSet (None: WebMercatorQuad); its lon/lat
        bounds are densified, and split in two across 180°.
        """
        if tms is None or tms.id == "WebMercatorQuad":
            b = mercantile.bounds(x, y, z)
            boxes = [box(b.west, b.south, b.east, b.north)]
        else:
            boxes = _lonlat_boxes(tms, x, y, z)
        hits = {int(h) for bx in boxes for h in self._tree.query(bx, predicate="intersects")}
        return [self.items[i] for i in sorted(hits)]

    def all_assets(self) -> list[ItemAssets]:
        """Every item, in file order."""
        return list(self.items)


def _lonlat_boxes(tms: Any, x: int, y: int, z: int) -> list[Any]:
    """A tile of any TMS as lon/lat boxes (two when it straddles 180°)."""
    import morecantile
    from rasterio.crs import CRS
    from rasterio.warp import transform_bounds

    b = tms.xy_bounds(morecantile.Tile(x, y, z))
    w, s, e, n = transform_bounds(tms.rasterio_crs, CRS.from_epsg(4326), *b, densify_pts=21)
    if w <= e:
        return [box(w, s, e, n)]
    return [box(w, s, 180.0, n), box(-180.0, s, e, n)]


def _union_bounds(footprints: tuple[str, ...]) -> tuple[float, float, float, float]:
    bs = [shape(json.loads(f)).bounds for f in footprints]
    return (
        min(b[0] for b in bs),
        min(b[1] for b in bs),
        max(b[2] for b in bs),
        max(b[3] for b in bs),
    )


def open_stac_items(
    path: str | Path, assets: tuple[str, ...], extra_assets: tuple[str, ...] = ()
) -> StacItemsSource:
    """Load a STAC ItemCollection (or FeatureCollection of items, or a single item).

    Args:
        path: local JSON file; relative asset hrefs resolve against its directory.
        assets: asset keys to read, in band order (e.g. ("red", "green", "blue")).
        extra_assets: other keys each item must have and keep (e.g. a QA band).

    Raises:
        SourceError: unreadable file, no items, no `assets` given, or an asset key that no
            item has. Items lacking some of the keys are skipped and reported (`skipped`).
    """
    doc = read_json(path, "STAC items file")
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        features = [doc]
    elif isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        features = doc.get("features") or []
    else:
        raise SourceError(f"{str(path)!r} is not a STAC ItemCollection/FeatureCollection or Item")
    base = document_dir(path)
    return items_from_features(
        features,
        assets,
        f"STAC items file {str(path)!r}",
        str(path),
        lambda href, _item: resolve_href(href, base),
        extra_assets=extra_assets,
    )


def _check_keys(
    features: Sequence[Mapping[str, Any]],
    assets: tuple[str, ...],
    wanted: tuple[str, ...],
    origin: str,
) -> None:
    """Refuse no items, no `assets`, or a key that no item has."""
    if not features:
        raise SourceError(f"{origin} contains no items")
    available = sorted({k for f in features for k in (f.get("assets") or {})})
    if not assets:
        raise SourceError(
            f"`assets` is required with STAC items; the items have: {', '.join(available)}"
        )
    missing = [a for a in wanted if a not in available]
    if missing:
        raise SourceError(
            f"asset key(s) {', '.join(missing)} not found in any item of {origin}; "
            f"available: {', '.join(available)}"
        )


def items_from_features(
    features: Sequence[Mapping[str, Any]],
    assets: Sequence[str],
    origin: str,
    path: str,
    resolve: Callable[[str, Mapping[str, Any]], str],
    extra_assets: Sequence[str] = (),
    skipped: Sequence[str] = (),
) -> StacItemsSource:
    """Item dicts (in selection order) → `StacItemsSource`.

    Only the selected assets (and `extra_assets`) are kept, hrefs made absolute with
    `resolve(href, item)`; links dropped; footprint from the geometry (or bbox). Items lacking
    one of the keys (or its href) are skipped and reported.

    Args:
        features: the item dicts, in selection order.
        assets: asset keys to read, in band order.
        origin: names the items in messages ("STAC items file 'x.json'", "STAC search …").
        path: the source's `path`.
        resolve: makes an asset href absolute, given the item that holds it.
        extra_assets: other keys each item must have and keep (e.g. a QA band).
        skipped: ids already left out by the caller (reported in `skipped` too).

    Raises:
        SourceError: no items, no `assets`, a key no item has, or no usable item.
    """
    assets, extra_assets = tuple(assets), tuple(extra_assets)
    wanted = tuple(dict.fromkeys((*assets, *extra_assets)))
    _check_keys(features, assets, wanted, origin)
    items: list[ItemAssets] = []
    footprints: list[str] = []
    lacking: list[str] = []
    for n, feat in enumerate(features):
        item_id = str(feat.get("id", f"#{n}"))
        if lacks_assets(feat, wanted):
            lacking.append(item_id)
            continue
        footprint = item_footprint(feat)
        reduced = dict(feat)
        reduced["assets"] = {
            a: {**feat["assets"][a], "href": resolve(feat["assets"][a]["href"], feat)}
            for a in wanted
        }
        reduced["links"] = []
        props = feat.get("properties") or {}
        dt = props.get("datetime") or props.get("start_datetime") or ""
        items.append(ItemAssets(item_id, str(dt), json.dumps(reduced), assets))
        footprints.append(json.dumps(footprint.__geo_interface__))
    if lacking:
        logger.warning(
            "%d item(s) lack asset(s) %s (or their href) and are skipped: %s",
            len(lacking),
            ",".join(wanted),
            ", ".join(lacking[:5]) + (" …" if len(lacking) > 5 else ""),
        )
    if not items:
        raise SourceError(f"no item of {origin} has all of the assets {', '.join(wanted)}")
    return StacItemsSource(path, tuple(items), tuple(footprints), (*skipped, *lacking))


def lacks_assets(item: Mapping[str, Any], assets: Sequence[str]) -> list[str]:
    """The asset keys an item lacks (or has without an href)."""
    have = item.get("assets") or {}
    return [a for a in assets if not isinstance(have.get(a), Mapping) or not have[a].get("href")]


def item_footprint(item: Mapping[str, Any]) -> Any:
    """The item's geometry as a shapely shape (its bbox when it has no geometry).

    Raises:
        SourceError: neither geometry nor bbox, or an invalid geometry.
    """
    geom = item.get("geometry")
    if geom is None:
        bbox = item.get("bbox")
        if not bbox:
            raise SourceError(f"item {item.get('id')!r} has neither geometry nor bbox")
        return box(bbox[0], bbox[1], bbox[-2], bbox[-1])
    try:
        return shape(geom)
    except Exception as e:
        raise SourceError(f"item {item.get('id')!r} has an invalid geometry: {e}") from e
