"""Items → observations per point: which scenes (fused by solar day or not) cover a plot.

Solar day as odc-stac defines it (`odc.stac.model._convert_to_solar_time`): the item's UTC
datetime shifted by `int(lon / 15)` hours, `lon` the longitude of the centroid of the item's
footprint; items of one collection-agnostic solar date form one observation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mosaic_assembler._grouping import GROUP_BY, parse_datetime, solar_date
from mosaic_assembler.chips._points import Point

__all__ = ["GROUP_BY", "ItemRef", "Observation", "observations_for", "solar_date", "to_refs"]


@dataclass(frozen=True)
class ItemRef:
    """One STAC item reduced to what a chip needs.

    Attributes:
        index: position in the selection order (first-valid fusion follows it).
        id: item id.
        collection: the item's collection ("" if none).
        datetime: the item's datetime string.
        date: its observation date, YYYY-MM-DD (UTC, or solar with `solar_day`).
        hrefs: (asset key, href) for every asset read, the mask band included.
    """

    index: int
    id: str
    collection: str
    datetime: str
    date: str
    hrefs: tuple[tuple[str, str], ...]

    def href(self, key: str) -> str:
        """The href of asset `key`."""
        return dict(self.hrefs)[key]


@dataclass(frozen=True)
class Observation:
    """The items of one observation of one point, in selection order."""

    date: str
    items: tuple[int, ...]


def to_refs(source: Any, keys: Sequence[str], group_by: str) -> tuple[list[ItemRef], list[Any]]:
    """The source's items as `ItemRef`s (selection order) and their lon/lat footprints."""
    from shapely.geometry import shape

    refs, footprints = [], []
    for n, (ia, fp) in enumerate(zip(source.items, source.footprints, strict=True)):
        item = ia.item
        footprint = shape(json.loads(fp))
        when = parse_datetime(ia.datetime, ia.id)
        day = solar_date(when, footprint.centroid.x) if group_by == "solar_day" else when.date()
        hrefs = tuple((k, item["assets"][k]["href"]) for k in keys)
        refs.append(ItemRef(n, ia.id, str(item.get("collection") or ""), ia.datetime,
                            day.isoformat(), hrefs))  # fmt: skip
        footprints.append(footprint)
    return refs, footprints


def _roi(p: Point, half_m: float) -> Any:
    """A lon/lat box around the point, `half_m` metres each way (chip corners included)."""
    from shapely.geometry import box

    dlat = half_m / 111_000
    dlon = half_m / (111_000 * max(0.05, math.cos(math.radians(p.lat))))
    return box(p.lon - dlon, p.lat - dlat, p.lon + dlon, p.lat + dlat)


def observations_for(
    points: Sequence[Point],
    refs: Sequence[ItemRef],
    footprints: Sequence[Any],
    group_by: str,
    half_m: float,
) -> list[list[Observation]]:
    """For each point, its observations (date order, then selection order).

    An observation exists where an item's footprint holds the point. With `solar_day`, it
    also takes the other items of that day whose footprint meets the chip (they fill its
    edges).
    """
    from shapely import STRtree
    from shapely.geometry import Point as ShapelyPoint

    tree = STRtree(list(footprints))
    out = []
    for p in points:
        holds = {int(i) for i in tree.query(ShapelyPoint(p.lon, p.lat), predicate="intersects")}
        if group_by == "item":
            out.append(
                sorted(
                    (Observation(refs[i].date, (i,)) for i in holds),
                    key=lambda o: (o.date, o.items),
                )
            )
            continue
        near = {int(i) for i in tree.query(_roi(p, half_m), predicate="intersects")} | holds
        days = sorted({refs[i].date for i in holds})
        out.append(
            [Observation(d, tuple(sorted(i for i in near if refs[i].date == d))) for d in days]
        )
    return out
