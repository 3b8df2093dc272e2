"""Brute-force references for --group-by, --provenance and --harmonize (numpy over rio-tiler reads).

Each item's bands are read with rio-tiler's own `Reader` (no code of ours), stacked; the
observations of a tile are grouped by solar day with odc-stac's conversion, fused with a
plain numpy loop, then reduced with numpy.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from shapely.geometry import shape

from mosaic_assembler.selection import landsat_qa_mask
from mosaic_assembler.sources import open_stac_items

BANDS = ("blue", "green", "red", "nir08")


def features(items_path: Path) -> list[dict]:
    """The items of a file, hrefs absolute, in file order."""
    feats = json.loads(items_path.read_text())["features"]
    for f in feats:
        for a in f["assets"].values():
            a["href"] = str((items_path.parent / a["href"]).resolve())
    return feats


def read_item(item: dict, tile, bands=BANDS, qa: bool = False, tilesize: int = 512, tms=None):
    """(bands, h, w) masked array of one item over a tile, or None outside it."""
    arrays = []
    try:
        for b in bands:
            with Reader(item["assets"][b]["href"], **({"tms": tms} if tms else {})) as src:
                arrays.append(src.tile(*tile, tilesize=tilesize).array)
        if qa:
            with Reader(item["assets"]["qa_pixel"]["href"], **({"tms": tms} if tms else {})) as src:
                q = src.tile(*tile, tilesize=tilesize, resampling_method="nearest").array
    except TileOutsideBounds:
        return None
    data = numpy.concatenate([a.data for a in arrays])
    mask = numpy.concatenate([numpy.ma.getmaskarray(a) for a in arrays])
    if qa:
        mask = mask | landsat_qa_mask(q.data[0])[None]
    return numpy.ma.MaskedArray(data, mask=mask)


def utc(item: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))


def odc_solar_date(item: dict) -> dt.date:
    """odc-stac's solar day of an item (its own conversion, on the footprint's centroid)."""
    from odc.stac.model import _convert_to_solar_time

    lon = shape(item["geometry"]).centroid.x
    return _convert_to_solar_time(utc(item).replace(tzinfo=None), lon).date()


def tile_items(items_path: Path, feats: list[dict], tile, bands=BANDS) -> list[dict]:
    """The items the asset index gives a tile, in file order."""
    src = open_stac_items(items_path, bands)
    by_id = {f["id"]: f for f in feats}
    return [by_id[i.id] for i in src.assets_for_tile(*tile)]


def fuse_first(stack: list[numpy.ma.MaskedArray]) -> numpy.ma.MaskedArray:
    """Per band and pixel, the first unmasked value (a plain loop)."""
    data = numpy.zeros_like(stack[0].data)
    filled = numpy.zeros(stack[0].shape, bool)
    for a in stack:
        take = ~numpy.ma.getmaskarray(a) & ~filled
        data[take] = a.data[take]
        filled |= take
    return numpy.ma.MaskedArray(data, mask=~filled)


def observations(items: list[dict], tile, group_by: str, qa: bool = False, bands=BANDS, tms=None):
    """(date, array) per observation of a tile, in item order (dates: first appearance)."""
    reads = [(i, read_item(i, tile, bands, qa, tms=tms)) for i in items]
    reads = [(i, a) for i, a in reads if a is not None]
    if group_by == "item":
        return [(utc(i).date(), a) for i, a in reads]
    days: dict[dt.date, list] = {}
    for i, a in reads:
        days.setdefault(odc_solar_date(i), []).append(a)
    return [(d, fuse_first(stack)) for d, stack in days.items()]


def median(obs) -> numpy.ma.MaskedArray | None:
    """rio-tiler's median over observations: numpy.ma.median, cast back to the dtype."""
    if not obs:
        return None
    stack = numpy.ma.stack([a for _, a in obs])
    dtype = stack.dtype
    return numpy.ma.median(stack, axis=0).astype(dtype)
