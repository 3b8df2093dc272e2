"""Per-pixel provenance: how many observations entered the selection, and which one won.

`provenance=("count",)` writes `OUT.count.tif` beside OUT: per pixel, the number of valid
observations the method saw (items; dates with `group_by="solar_day"`), uint16.
`provenance=("date",)` writes `OUT.date.tif`: int32 days since 1970-01-01 of the observation
a picker took (the item's UTC date, or its solar date with `solar_day`). `highest` and
`lowest` pick per band, so their date raster has one band per output band; `first`,
`latest-clear`, `lastbandhigh` and `lastbandlow` take one observation per pixel: one band
(for `first`/`latest-clear`, the observation the first output band came from; the bands of
an observation share one mask unless the sources have per-band nodata). On a tie (two
observations with the value a picker kept) the one fed first wins, as the methods' strict
comparisons do. The date of a median, a mean or a count is undefined: refused.

The tiler records each observation it feeds the method (a reference: the pickers copy before
they write), then compares. With provenance, a tile's observations are kept in memory until
it is rendered (as median does), and `count` reads every observation (no early exit).

Only numpy: the tiler (below) and the pipeline (above) both use it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy

__all__ = [
    "DTYPES",
    "PROVENANCE",
    "check_provenance",
    "compute_provenance",
    "date_band_count",
    "provenance_path",
    "sidecar_path",
]

#: The kinds of provenance raster, in the order their chunk files are written.
PROVENANCE = ("count", "date")

#: The dtype of each kind.
DTYPES = {"count": "uint16", "date": "int32"}

_EPOCH = dt.date(1970, 1, 1)


def check_provenance(kinds: Sequence[str], method: str, reduces: bool) -> tuple[str, ...]:
    """The kinds, validated, in PROVENANCE order (duplicates dropped).

    Raises:
        ValueError: an unknown kind, or `date` with a method that does not pick one
            observation (its message is the one the user sees).
    """
    unknown = [k for k in kinds if k not in PROVENANCE]
    if unknown:
        raise ValueError(
            f"unknown `provenance` {', '.join(map(repr, unknown))}; valid: {', '.join(PROVENANCE)}"
        )
    if "date" in kinds and reduces:
        raise ValueError(
            f"`provenance` date is undefined for {method}: it combines observations; it is "
            "defined for the pickers (first, latest-clear, highest, lowest, lastbandhigh, "
            "lastbandlow)"
        )
    return tuple(k for k in PROVENANCE if k in kinds)


def date_band_count(method: str, out_bands: int) -> int:
    """Bands of the date raster: one per output band for per-band pickers, else one."""
    return out_bands if method in ("highest", "lowest") else 1


def provenance_path(output: Path, kind: str) -> Path:
    """`out.tif` → `out.count.tif` (the output's suffix replaced)."""
    return output.with_name(f"{_stem(output)}.{kind}.tif")


def sidecar_path(output: Path) -> Path:
    """`out.tif` → `out.json`: the STAC Item beside the output."""
    return output.with_name(f"{_stem(output)}.json")


def _stem(output: Path) -> str:
    return output.stem if output.suffix.lower() in (".tif", ".tiff") else output.name


def _days(day: dt.date | None) -> int:
    return (day - _EPOCH).days if day is not None else 0


def _split(array: numpy.ma.MaskedArray) -> tuple[numpy.ndarray, numpy.ndarray]:
    return numpy.ma.getdata(array), numpy.ma.getmaskarray(array)


def _equal(a: numpy.ndarray, b: numpy.ndarray) -> numpy.ndarray:
    eq = a == b
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        eq |= numpy.isnan(a) & numpy.isnan(b)
    return eq


def compute_provenance(
    kinds: Sequence[str],
    method: str,
    fed: Sequence[tuple[dt.date | None, numpy.ma.MaskedArray]],
    chosen: numpy.ma.MaskedArray | None,
) -> dict[str, numpy.ndarray]:
    """The provenance arrays of one tile.

    Args:
        kinds: "count" and/or "date".
        method: the pixel-selection name.
        fed: (date, array) of each observation, in the order the method was fed.
        chosen: what the picker kept, with the decision band of `lastband*` (its `mosaic`).

    Returns:
        kind → (bands, height, width) array in DTYPES[kind]; 0 where nothing was chosen.
    """
    out: dict[str, numpy.ndarray] = {}
    if not fed:
        return out
    shape = fed[0][1].shape[-2:]
    if "count" in kinds:
        count = numpy.zeros(shape, "uint16")
        for _, arr in fed:
            count += ~_split(arr)[1].reshape(-1, *shape).all(axis=0)
        out["count"] = count[numpy.newaxis]
    if "date" in kinds and chosen is not None:
        data, mask = _split(chosen)
        data, mask = data.reshape(-1, *shape), mask.reshape(-1, *shape)
        if method in ("lastbandhigh", "lastbandlow"):
            bands = [data.shape[0] - 1]  # the decision band: its value came with the rest
        elif method in ("highest", "lowest"):
            bands = list(range(data.shape[0]))
        else:
            bands = [0]
        dates = numpy.zeros((len(bands), *shape), "int32")
        for i, b in enumerate(bands):
            todo = ~mask[b]
            for day, arr in fed:
                d, m = _split(arr)
                d, m = d.reshape(-1, *shape), m.reshape(-1, *shape)
                hit = todo & ~m[b] & _equal(d[b], data[b])
                dates[i][hit] = _days(day)
                todo &= ~hit
                if not todo.any():
                    break
        out["date"] = dates
    return out
