"""Observations by item or by local solar day (odc-stac's `groupby="solar_day"`).

Solar day as odc-stac defines it (`odc.stac.model._convert_to_solar_time`): the item's UTC
datetime shifted by `int(lon / 15)` hours, `lon` the longitude of the centroid of the item's
footprint (odc-stac's `ParsedItem.solar_date`). `odc.stac.load` instead shifts every item
by the longitude of the centre of the area it loads: the two agree wherever `int(lon / 15)`
is the same over the AOI; across time zones (or 180°) each scene here keeps its own local
day. Within a day the scenes keep the run's order (odc-stac sorts them by time, then id).
`chips` and the assemble run's `group_by` share these functions.

Imports nothing of the package but `errors` (and shapely, lazily): the bottom of the graph.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from typing import Any

from mosaic_assembler.errors import SourceError

__all__ = [
    "EPOCH",
    "GROUP_BY",
    "group_observations",
    "observation_day",
    "parse_datetime",
    "solar_date",
]

#: The values of `group_by`: one observation per item, or per local solar day.
GROUP_BY = ("item", "solar_day")

#: Day 0 of the provenance `date` rasters.
EPOCH = dt.date(1970, 1, 1)


def parse_datetime(text: str, item_id: str) -> dt.datetime:
    """An item datetime as an aware UTC datetime.

    Raises:
        SourceError: not an ISO 8601 datetime.
    """
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise SourceError(f"item {item_id!r} has no usable datetime ({text!r})") from e
    return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)


def solar_date(utc: dt.datetime, longitude: float) -> dt.date:
    """odc-stac's solar day: UTC shifted by whole hours of longitude (truncated)."""
    return (utc + dt.timedelta(seconds=int(longitude / 15) * 3600)).date()


@functools.lru_cache(maxsize=65536)
def _item_day(item_id: str, when: str, item_json: str, group_by: str) -> dt.date:
    utc = parse_datetime(when, item_id)
    if group_by != "solar_day":
        return utc.date()
    from mosaic_assembler.sources.stac_items import item_footprint

    return solar_date(utc, item_footprint(json.loads(item_json)).centroid.x)


def observation_day(asset: Any, group_by: str) -> dt.date:
    """The date of an item (`ItemAssets`): UTC, or its local solar day with `solar_day`.

    Raises:
        SourceError: the asset is not a STAC item, or has no usable datetime.
    """
    item_json = getattr(asset, "item_json", None)
    if item_json is None:
        raise SourceError(f"{asset!r} is not a STAC item: it has no datetime")
    return _item_day(asset.id, asset.datetime, item_json, group_by)


def group_observations(
    assets: Sequence[Any], group_by: str, newest_first: bool = False
) -> list[tuple[dt.date | None, tuple[Any, ...]]]:
    """The observations of a tile: (date, items) in the order the selection sees them.

    With "item", every asset is one observation, in the given order (date None for assets
    that are not STAC items). With "solar_day", the items of one solar date form one
    observation; its items keep their order (first valid pixel wins when they are fused) and
    the observations are ordered by their first item, or newest date first.
    """
    if group_by == "item":
        out = [
            (observation_day(a, "item") if hasattr(a, "item_json") else None, (a,)) for a in assets
        ]
    else:
        groups: dict[dt.date, list[Any]] = {}
        for a in assets:
            groups.setdefault(observation_day(a, "solar_day"), []).append(a)
        out = [(day, tuple(items)) for day, items in groups.items()]
    if newest_first:  # stable: the run's order among equal dates
        out.sort(key=lambda o: o[0] or dt.date.min, reverse=True)
    return out
