"""mosaic_assembler._features: the FEATURES of a batch, read into lon/lat polygons with ids.

GeoJSON, GeoPackage and Shapefile are read with pyogrio (OGR) and reprojected to lon/lat;
a CSV holds its geometry as WKT in one column (in lon/lat). Every problem with the file is a
`ConfigError` (one line, exit code 2 in the CLI): a batch over a broken file should stop
before it starts, not fail feature by feature.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import ConfigError

__all__ = ["RESERVED_IDS", "Feature", "WKT_FIELDS", "read_features", "sanitise_id", "unique_ids"]

#: CSV columns tried for the geometry when `wkt_field` is not given (case-insensitive).
WKT_FIELDS = ("WKT", "geometry")

#: Longest file name stem an id becomes (file systems allow 255 bytes; keep room for suffixes).
MAX_ID = 100

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

#: Ids whose files would be a batch's own: `<id>.json` (the COG's STAC sidecar) would be
#: OUT_DIR/index.json or mosaic.json, which the batch writes (and removes) after its features.
RESERVED_IDS = frozenset({"index", "mosaic"})
#: Companion suffixes of an output (`<id>.count.tif`, `<id>.date.tif` with `provenance`): an
#: id `a.count` would be feature `a`'s companion, so its last dot becomes `_`.
_COMPANION = re.compile(r"\.(count|date)$", re.IGNORECASE)
_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class Feature:
    """One feature of a batch.

    Attributes:
        id: the sanitised, unique id: the output is `<id>.tif`.
        value: the id field's value as read (a string; "" when null).
        geojson: the geometry, a lon/lat (Multi)Polygon as GeoJSON text (small, picklable).
    """

    id: str
    value: str
    geojson: str

    @property
    def geometry(self) -> dict[str, Any]:
        """The geometry as a GeoJSON mapping."""
        return dict(json.loads(self.geojson))

    @property
    def token(self) -> str:
        """A short hash of the geometry (a rerun redoes a feature whose geometry changed)."""
        return hashlib.sha256(self.geojson.encode()).hexdigest()[:16]


def sanitise_id(value: Any) -> str:
    """A file-name-safe id: letters, digits, `.`, `_`, `-`, neither starting nor ending one."""
    text = "" if value is None else str(value)
    name = _UNSAFE.sub("_", text).strip("._-")[:MAX_ID].rstrip("._-")
    return _COMPANION.sub(r"_\1", name)


def unique_ids(values: Sequence[Any]) -> list[str]:
    """Sanitised ids, made unique (case-insensitively) with `_2`, `_3` … in file order.

    An id that is empty once sanitised becomes `feature` (then `feature_2` …); a reserved id
    (`RESERVED_IDS`: the batch's own files) is taken from the start, so `index` becomes
    `index_2`.
    """
    names = [sanitise_id(v) or "feature" for v in values]
    taken = {n.casefold() for n in names} | RESERVED_IDS
    seen: set[str] = set(RESERVED_IDS)
    out = []
    for name in names:
        if name.casefold() in seen:
            n = 2
            while f"{name}_{n}".casefold() in taken:
                n += 1
            name = f"{name}_{n}"
            taken.add(name.casefold())
        seen.add(name.casefold())
        out.append(name)
    return out


def read_features(
    path: str | Path,
    id_field: str,
    *,
    wkt_field: str | None = None,
    layer: str | int | None = None,
) -> list[Feature]:
    """Read the features of a batch, with their ids and lon/lat polygons.

    Args:
        path: a GeoJSON, GeoPackage or Shapefile (anything OGR reads), or a `.csv` with a
            WKT column.
        id_field: the attribute naming each output (`id` also finds a GeoJSON Feature's id).
        wkt_field: the CSV's WKT column (default: the first of `WKT_FIELDS`).
        layer: the layer of a multi-layer file (default: the first).

    Returns:
        The features in file order.

    Raises:
        ConfigError: the file is missing or unreadable, has no such field, no feature, or
            a geometry that is not a (Multi)Polygon.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"`features` {path} is not a file")
    if p.suffix.lower() == ".csv":
        values, geoms = _read_csv(p, id_field, wkt_field)
    else:
        if wkt_field is not None:
            raise ConfigError("`wkt_field` is for a CSV `features` file")
        values, geoms = _read_ogr(p, id_field, layer)
    if not values:
        raise ConfigError(f"`features` {path} holds no feature")
    return [
        Feature(i, "" if v is None else str(v), json.dumps(g))
        for i, v, g in zip(unique_ids(values), values, geoms, strict=True)
    ]


def _read_ogr(
    path: Path, id_field: str, layer: str | int | None
) -> tuple[list[Any], list[dict[str, Any]]]:
    """(id values, lon/lat GeoJSON geometries) of a vector file, read with pyogrio."""
    try:
        from pyogrio.errors import DataLayerError, DataSourceError
        from pyogrio.raw import read
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ConfigError("reading `features` needs pyogrio: pip install pyogrio") from e
    try:
        meta, fids, wkbs, fields = read(path, layer=layer, return_fids=True)
    except (DataSourceError, DataLayerError, OSError, ValueError) as e:
        raise ConfigError(f"cannot read `features` {path}: {_first_line(e)}") from e
    names = [str(n) for n in meta["fields"]]
    if id_field in names:
        values = [_plain(v) for v in fields[names.index(id_field)]]
    elif id_field in ("id", "fid") and fids is not None:
        values = [int(f) for f in fids]
    else:
        raise ConfigError(_no_field(id_field, names, path))
    crs = meta.get("crs")
    geoms = [_polygon(_from_wkb(w), values[n], path) for n, w in enumerate(wkbs)]
    if crs and not _is_lonlat(crs):
        geoms = [_to_lonlat(g, crs, path) for g in geoms]
    return values, geoms


def _read_csv(
    path: Path, id_field: str, wkt_field: str | None
) -> tuple[list[Any], list[dict[str, Any]]]:
    """(id values, GeoJSON geometries) of a CSV with a WKT column (lon/lat)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
            names = list(rows[0].keys()) if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"cannot read `features` {path}: {_first_line(e)}") from e
    if not rows:
        raise ConfigError(f"`features` {path} holds no feature")
    if id_field not in names:
        raise ConfigError(_no_field(id_field, names, path))
    if wkt_field is None:
        lower = {n.lower(): n for n in names if n}
        found = [lower[w.lower()] for w in WKT_FIELDS if w.lower() in lower]
        if not found:
            raise ConfigError(
                f"`features` {path} has no WKT column ({' or '.join(WKT_FIELDS)}); "
                f"name it with `wkt_field` (columns: {', '.join(names)})"
            )
        wkt_field = found[0]
    elif wkt_field not in names:
        raise ConfigError(_no_field(wkt_field, names, path, what="`wkt_field`"))
    import shapely.wkt
    from shapely.errors import ShapelyError
    from shapely.geometry import mapping

    values, geoms = [], []
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        text = (row.get(wkt_field) or "").strip()
        try:
            geom = shapely.wkt.loads(text) if text else None
        except ShapelyError as e:
            raise ConfigError(
                f"`features` {path} line {n}: column {wkt_field!r} is not WKT ({_first_line(e)})"
            ) from e
        values.append(row[id_field])
        geoms.append(
            _polygon(dict(mapping(geom)) if geom is not None else None, row[id_field], path)
        )
    return values, geoms


def _from_wkb(wkb: bytes | None) -> dict[str, Any] | None:
    if wkb is None:
        return None
    import shapely
    from shapely.geometry import mapping

    geom = shapely.force_2d(shapely.from_wkb(wkb))
    return None if geom.is_empty else dict(mapping(geom))


def _polygon(geom: dict[str, Any] | None, value: Any, path: Path) -> dict[str, Any]:
    """The geometry, checked to be a (Multi)Polygon, as plain JSON (lists, not tuples)."""
    kind = None if geom is None else geom.get("type")
    if kind not in _POLYGONAL:
        got = "no geometry" if kind is None else f"a {kind}"
        raise ConfigError(
            f"`features` {path}: feature {value!r} has {got}; every feature must be a "
            "Polygon or MultiPolygon"
        )
    return dict(json.loads(json.dumps(geom)))


def _is_lonlat(crs: str) -> bool:
    return crs.upper() in ("EPSG:4326", "OGC:CRS84", "CRS84")


def _to_lonlat(geom: dict[str, Any], crs: str, path: Path) -> dict[str, Any]:
    from rasterio.errors import CRSError
    from rasterio.warp import transform_geom

    try:
        out = transform_geom(crs, "EPSG:4326", geom)
    except (CRSError, ValueError) as e:
        raise ConfigError(f"cannot reproject `features` {path} from {crs}: {e}") from e
    return dict(json.loads(json.dumps(out)))


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python value (so ids print and serialise as users wrote them)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _no_field(field: str, names: Sequence[str], path: Path, what: str = "`id_field`") -> str:
    listed = ", ".join(names) if names else "none"
    return f"{what} {field!r} is not a field of `features` {path} (fields: {listed})"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
