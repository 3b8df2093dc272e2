"""Sentinel-2 L2A harmonisation: the +1000 DN offset of processing baseline 04.00 removed.

Since baseline 04.00 (25 January 2022) ESA's L2A products carry `BOA_ADD_OFFSET = -1000`:
reflectance = (DN - 1000) / 10000, where before it was DN / 10000. A run that mixes both
counts the same surface 0.1 brighter on recent scenes. `harmonize="s2"` subtracts 1000 from
the reflectance assets of items with `s2:processing_baseline` >= "04.00", before any
selection, unless `earthsearch:boa_offset_applied` is true (Element84's Earth Search has then
removed the offset already). As the Planetary Computer's `harmonize_to_old` does, values are
clipped at 1000 first so the result is never below 0 (an unsigned band cannot wrap); the
pixel mask is the one the source's nodata gave, so a clipped 0 stays a valid pixel.

Only reflectance assets are shifted (B01 … B12, B8A, or the common names Earth Search uses:
coastal, blue, green, red, rededge1-3, nir, nir08, nir09, cirrus, swir16, swir22); SCL, AOT,
WVP, the visual product and QA bands are not.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy

__all__ = [
    "HARMONIZE",
    "OFFSET",
    "baseline_of",
    "offset_bands",
    "remove_offset",
    "warn_mixed_baselines",
]

logger = logging.getLogger(__name__)

#: The values of `harmonize`.
HARMONIZE = ("s2",)

#: The DN offset of baseline 04.00.
OFFSET = 1000

_FIRST_OFFSET_BASELINE = (4, 0)
_REFLECTANCE = re.compile(
    r"b0?[1-9]|b1[0-2]|b8a|coastal|blue|green|red|rededge[1-3]?|nir|nir0[89]|cirrus|swir16?|"
    r"swir22?",
    re.IGNORECASE,
)


def baseline_of(item: Mapping[str, Any]) -> tuple[int, int] | None:
    """The item's `s2:processing_baseline` as (major, minor), or None."""
    text = str((item.get("properties") or {}).get("s2:processing_baseline") or "")
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def has_offset(item: Mapping[str, Any]) -> bool:
    """Whether the item's reflectance DNs carry the offset (baseline >= 04.00, not removed)."""
    props = item.get("properties") or {}
    if props.get("earthsearch:boa_offset_applied") is True:
        return False
    baseline = baseline_of(item)
    return baseline is not None and baseline >= _FIRST_OFFSET_BASELINE


def _is_reflectance(key: str, asset: Mapping[str, Any]) -> bool:
    names = [key]
    for band in asset.get("eo:bands") or []:
        names += [str(band.get("name") or ""), str(band.get("common_name") or "")]
    return any(_REFLECTANCE.fullmatch(n) for n in names if n)


def offset_bands(item: Mapping[str, Any], assets: Sequence[str]) -> tuple[bool, ...]:
    """For each asset key (band order), whether its DNs lose the offset; all False if none do."""
    if not has_offset(item):
        return tuple(False for _ in assets)
    have = item.get("assets") or {}
    return tuple(_is_reflectance(k, have.get(k) or {}) for k in assets)


def remove_offset(data: numpy.ndarray, shift: Sequence[bool]) -> numpy.ndarray:
    """`data` (bands, h, w) with OFFSET subtracted from the bands marked in `shift` (clipped at 0).

    Returns a new array of the same dtype; `data` is not modified.
    """
    if len(shift) != data.shape[0]:
        raise ValueError(f"{len(shift)} band flags for {data.shape[0]} bands")
    out = data.copy()
    for b, on in enumerate(shift):
        if on:
            band = out[b]
            numpy.subtract(numpy.maximum(band, OFFSET), OFFSET, out=band, casting="unsafe")
    return out


def warn_mixed_baselines(items: Iterable[Any], harmonize: str | None) -> None:
    """Warn (logging) when items with and without the offset meet in one run without `harmonize`."""
    if harmonize is not None:
        return
    with_offset = without = 0
    for ia in items:
        item_json = getattr(ia, "item_json", None)
        if item_json is None:
            return
        item = json.loads(item_json)
        if baseline_of(item) is None:
            continue
        if has_offset(item):
            with_offset += 1
        else:
            without += 1
    if with_offset and without:
        logger.warning(
            "%d Sentinel-2 item(s) have processing baseline >= 04.00 (DN offset +1000) and %d "
            "do not: their reflectances differ by 0.1; use `harmonize` s2 (--harmonize s2)",
            with_offset,
            without,
        )
