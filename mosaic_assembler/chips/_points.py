"""POINTS: a CSV (id column(s), x, y) or GeoJSON points → `Point` values."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import ConfigError

__all__ = ["Point", "PointSet", "load_points"]

#: Points files are read whole; a million plots is ~50 MB of CSV.
MAX_POINTS_BYTES = 512 * 2**20
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Point:
    """One plot.

    Attributes:
        key: a unique, file-name-safe id (the id values joined by `_`); the ledger's key and
            the name of the point's chip directory.
        ids: the values of the id column(s), in their order in POINTS.
        x: easting / longitude in the points' CRS.
        y: northing / latitude in the points' CRS.
        lon: longitude (EPSG:4326).
        lat: latitude (EPSG:4326).
    """

    key: str
    ids: tuple[str, ...]
    x: float
    y: float
    lon: float
    lat: float


@dataclass(frozen=True)
class PointSet:
    """The points of POINTS, in file order, with the names of their id column(s)."""

    id_fields: tuple[str, ...]
    crs: str
    points: tuple[Point, ...]


def load_points(
    path: str | Path, id_fields: Sequence[str] | None = None, crs: str = "EPSG:4326"
) -> PointSet:
    """Read POINTS: a CSV with x and y columns or a GeoJSON FeatureCollection of Points.

    Args:
        path: the file (`.csv`, `.geojson`/`.json`).
        id_fields: the id column(s) (CSV columns or GeoJSON properties); default every CSV
            column but x/y, or the GeoJSON feature `id` (else its index).
        crs: the CRS of x/y (GeoJSON coordinates included), default EPSG:4326.

    Raises:
        ConfigError: unreadable file, missing columns, bad coordinates, duplicate ids.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_POINTS_BYTES:
            raise ConfigError(f"`points` {str(p)!r} is larger than {MAX_POINTS_BYTES >> 20} MB")
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read `points` {str(p)!r}: {e}") from e
    if p.suffix.lower() in (".geojson", ".json") or text.lstrip().startswith("{"):
        fields, rows = _geojson_rows(text, p, id_fields)
    else:
        fields, rows = _csv_rows(text, p, id_fields)
    return _to_point_set(fields, rows, crs, p)


def _csv_rows(
    text: str, p: Path, id_fields: Sequence[str] | None
) -> tuple[tuple[str, ...], list[tuple[tuple[str, ...], str, str]]]:
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip() for c in reader.fieldnames or []]
    lower = {c.lower(): c for c in columns}
    if "x" not in lower or "y" not in lower:
        raise ConfigError(f"`points` {str(p)!r} needs x and y columns; it has: {columns}")
    fields = (
        tuple(id_fields) if id_fields else tuple(c for c in columns if c.lower() not in ("x", "y"))
    )
    missing = [f for f in fields if f not in columns]
    if missing or not fields:
        raise ConfigError(
            f"`id_fields` {','.join(missing) or '(none)'} not in the columns of "
            f"{str(p)!r}: {columns}"
        )
    rows = []
    for rec in reader:
        rec = {(k or "").strip(): (v or "").strip() for k, v in rec.items()}
        rows.append((tuple(rec[f] for f in fields), rec[lower["x"]], rec[lower["y"]]))
    return fields, rows


def _geojson_rows(
    text: str, p: Path, id_fields: Sequence[str] | None
) -> tuple[tuple[str, ...], list[tuple[tuple[str, ...], Any, Any]]]:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"`points` {str(p)!r} is neither CSV nor GeoJSON: {e}") from e
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list):
        raise ConfigError(f"`points` {str(p)!r} is not a GeoJSON FeatureCollection")
    fields = tuple(id_fields) if id_fields else ("id",)
    rows = []
    for n, f in enumerate(feats):
        geom = (f or {}).get("geometry") or {}
        if geom.get("type") != "Point":
            raise ConfigError(f"feature #{n} of `points` is a {geom.get('type')}, not a Point")
        props = {**(f.get("properties") or {})}
        props.setdefault("id", f.get("id", n))
        if any(k not in props for k in fields):
            raise ConfigError(f"feature #{n} of `points` lacks the `id_fields` {fields}")
        x, y = geom.get("coordinates", [None, None])[:2]
        rows.append((tuple(str(props[k]) for k in fields), x, y))
    return fields, rows


def _to_point_set(
    fields: tuple[str, ...], rows: list[tuple[tuple[str, ...], Any, Any]], crs: str, p: Path
) -> PointSet:
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError

    if not rows:
        raise ConfigError(f"`points` {str(p)!r} holds no point")
    try:
        to_ll = Transformer.from_crs(CRS.from_user_input(crs), "EPSG:4326", always_xy=True)
    except CRSError as e:
        raise ConfigError(f"`points_crs` {crs!r} is not a CRS: {e}") from e
    points, seen = [], set()
    for n, (ids, xs, ys) in enumerate(rows, start=1):
        try:
            x, y = float(xs), float(ys)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"point #{n} of {str(p)!r} has bad x/y: {xs!r}, {ys!r}") from e
        lon, lat = to_ll.transform(x, y)
        if not (abs(lat) <= 90 and abs(lon) <= 360):
            raise ConfigError(f"point #{n} ({x}, {y}) is outside `points_crs` {crs}")
        key = _UNSAFE.sub("-", "_".join(ids)).strip("-") or f"point{n}"
        if key in seen:
            raise ConfigError(f"point #{n}: id {'_'.join(ids)!r} is not unique in {str(p)!r}")
        seen.add(key)
        points.append(Point(key, ids, x, y, float(lon), float(lat)))
    return PointSet(fields, crs, tuple(points))
