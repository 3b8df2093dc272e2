"""STAC search parameters: the `StacSearch` value and the parsing of its fields.

Each parser turns the CLI's text (or a ready JSON value) into what a STAC API item search
takes, and raises `ConfigError` with one line naming the flag when it cannot. Shared by the
search (`stac_search.open_stac_search`) and the titiler-pgstac registration
(`tilers.pgstac.pgstac_search_body`), so both send the same search.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from mosaic_assembler.errors import ConfigError, SourceError
from mosaic_assembler.sources.stac_items import item_footprint
from mosaic_assembler.web import redact

__all__ = [
    "SEASON_MONTHS",
    "StacSearch",
    "client_sort",
    "item_datetime",
    "item_season_ok",
    "parse_filter",
    "parse_query",
    "parse_seasons",
    "parse_sort_by",
    "search_geometry",
    "search_echo",
    "validate_datetime",
]

#: Meteorological seasons of the northern hemisphere; the southern ones are shifted 6 months.
SEASON_MONTHS: dict[str, frozenset[int]] = {
    "spring": frozenset({3, 4, 5}),
    "summer": frozenset({6, 7, 8}),
    "autumn": frozenset({9, 10, 11}),
    "winter": frozenset({12, 1, 2}),
}
_SEASON_ALIASES = {"fall": "autumn"}

_QUERY_OPS = (("<=", "lte"), (">=", "gte"), ("!=", "neq"), ("<", "lt"), (">", "gt"), ("=", "eq"))
_QUERY_RE = re.compile(r"^\s*([A-Za-z_][\w:.\-]*)\s*(<=|>=|!=|<|>|=)\s*(.+?)\s*$")


@dataclass(frozen=True)
class StacSearch:
    """A STAC API search (pystac-client) that decides which items count.

    Attributes:
        url: the API's root URL.
        collections: collection ids (a comma-separated string is split).
        datetime: RFC 3339 instant or interval.
        query: query-extension conditions, e.g. ("eo:cloud_cover<5",), or a query dict.
        filter: CQL2 text, CQL2-JSON string or CQL2-JSON dict.
        max_items: keep at most this many usable items.
        seasons: meteorological seasons of each item's hemisphere.
        sort_by: sort fields, "-" for descending (e.g. "eo:cloud_cover").
        save_mosaicjson: also write the equivalent mosaicJSON (and items) here.
        mosaicjson_asset: the asset whose href the saved mosaicJSON lists (None: item files).
    """

    url: str
    collections: tuple[str, ...] | str
    datetime: str | None = None
    query: tuple[str, ...] | Mapping[str, Any] = ()
    filter: str | Mapping[str, Any] | None = None
    max_items: int | None = None
    seasons: tuple[str, ...] | str = ()
    sort_by: str | Sequence[str] | None = None
    save_mosaicjson: str | None = None
    mosaicjson_asset: str | None = None

    def __post_init__(self) -> None:
        if not self.collections:
            raise ConfigError("`stac` needs `collections`")
        if self.max_items is not None and self.max_items < 1:
            raise ConfigError(f"`max_items` must be >= 1, got {self.max_items}")


# --------------------------------------------------------------------------- parameters


def parse_query(query: Sequence[str] | Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """`["eo:cloud_cover<5", "platform=landsat-8"]` → STAC query extension dict.

    Operators: `<`, `<=`, `>`, `>=`, `=`, `!=`. Values are JSON (numbers, true/false,
    quoted strings) or else bare strings. Several conditions on one property merge
    (`"eo:cloud_cover>=1", "eo:cloud_cover<5"`). A dict is passed through unchanged.

    Raises:
        ConfigError: a condition cannot be parsed.

    """
    if query is None:
        return None
    if isinstance(query, Mapping):
        return dict(query)
    if isinstance(query, str):
        query = [query]
    out: dict[str, dict[str, Any]] = {}
    for cond in query:
        m = _QUERY_RE.match(str(cond))
        if not m:
            raise ConfigError(
                f"bad `query` {cond!r}: expected PROPERTY OP VALUE with OP one of "
                "<, <=, >, >=, =, != (e.g. 'eo:cloud_cover<5')"
            )
        prop, op, raw = m.groups()
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out.setdefault(prop, {})[dict(_QUERY_OPS)[op]] = value
    return out


def parse_sort_by(sort_by: str | Sequence[str] | None) -> list[dict[str, str]] | None:
    """`"eo:cloud_cover,-datetime"` or `["eo:cloud_cover", "-datetime"]` → STAC sortby."""
    if sort_by is None:
        return None
    parts = sort_by.split(",") if isinstance(sort_by, str) else list(sort_by)
    out = []
    for part in parts:
        p = str(part).strip()
        if not p:
            continue
        desc = p.startswith("-")
        field = p.lstrip("+-").strip()
        if not field:
            raise ConfigError(f"bad `sort_by` {sort_by!r}: empty field name")
        out.append({"field": field, "direction": "desc" if desc else "asc"})
    if not out:
        raise ConfigError(f"bad `sort_by` {sort_by!r}: no field")
    return out


def parse_seasons(seasons: Sequence[str] | str | None) -> tuple[str, ...] | None:
    """`"spring,fall"` → ("spring", "autumn"): known names, aliases resolved, no repeats."""
    if seasons is None:
        return None
    names = seasons.split(",") if isinstance(seasons, str) else list(seasons)
    out = []
    for n in names:
        key = _SEASON_ALIASES.get(str(n).strip().lower(), str(n).strip().lower())
        if key not in SEASON_MONTHS:
            raise ConfigError(
                f"unknown season {n!r}; valid: spring, summer, autumn (or fall), winter"
            )
        out.append(key)
    if not out:
        raise ConfigError("`seasons` is empty")
    return tuple(dict.fromkeys(out))


def parse_filter(flt: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """A CQL2 filter (JSON dict, JSON text or CQL2 text) → validated CQL2 JSON."""
    if flt is None:
        return None
    try:
        import cql2
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ConfigError("`filter` needs the 'cql2' package: pip install cql2") from e
    try:
        if isinstance(flt, Mapping):
            expr = cql2.parse_json(json.dumps(flt))
        else:
            text = str(flt).strip()
            expr = cql2.parse_json(text) if text.startswith("{") else cql2.parse_text(text)
        expr.validate()
        return dict(expr.to_json())
    except Exception as e:
        msg = " ".join(str(e).split())
        raise ConfigError(f"bad CQL2 `filter` {_short(flt)}: {msg[:300]}") from e


def validate_datetime(value: str | None) -> str | None:
    """A `--datetime` → the RFC 3339 interval pystac-client sends (None stays None)."""
    if value is None:
        return None
    from pystac_client.item_search import ItemSearch

    try:
        # pystac-client's own parser (no request is sent); returns the RFC 3339 interval
        out = ItemSearch("http://127.0.0.1/search", datetime=value).get_parameters()["datetime"]
        start, _, end = str(out).partition("/")
        if start not in ("", "..") and end not in ("", "..") and start > end:
            raise ValueError("the interval ends before it begins")
        return out
    except Exception as e:
        msg = " ".join(str(e).split())
        raise ConfigError(
            f"bad `datetime` {value!r}: {msg[:200]} (use RFC 3339: '2024-06-01', "
            "'2024-03/2024-09', '2024-01-01T00:00:00Z/..')"
        ) from e


def search_geometry(geometry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A GeoJSON Geometry, Feature or FeatureCollection → one Geometry dict."""
    if geometry is None:
        return None
    g = dict(geometry)
    kind = g.get("type")
    try:
        if kind == "Feature":
            return search_geometry(g.get("geometry"))
        if kind == "FeatureCollection":
            geoms = [shape(f["geometry"]) for f in g.get("features") or []]
            if not geoms:
                raise ConfigError("the AOI FeatureCollection has no feature")
            return mapping(unary_union(geoms))
        shape(g)  # validates
        return g
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"the AOI is not a GeoJSON geometry: {e}") from e


def _short(obj: Any, limit: int = 200) -> str:
    text = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def search_echo(url: str, params: Mapping[str, Any]) -> str:
    """The search as one short line (a large AOI is summarised by its bounds)."""
    p = dict(params)
    p.pop("limit", None)
    if "intersects" in p:
        g = shape(p["intersects"])
        p["intersects"] = (
            f"{p['intersects'].get('type')} within [{', '.join(f'{v:.6g}' for v in g.bounds)}]"
        )
    return redact(f"{url} {_short(p, 400)}")


# --------------------------------------------------------------------------- seasons


def item_datetime(props: Mapping[str, Any]) -> _dt.datetime | None:
    """An item's `datetime` (else `start_datetime`) in UTC; None when absent or unparsable."""
    raw = props.get("datetime") or props.get("start_datetime")
    if not raw:
        return None
    try:
        d = _dt.datetime.fromisoformat(str(raw).replace("z", "Z"))
    except ValueError:
        return None
    if d.tzinfo is not None:
        d = d.astimezone(_dt.UTC)
    return d


def item_season_ok(item: Mapping[str, Any], seasons: Sequence[str]) -> bool | None:
    """Whether an item was acquired in one of `seasons` of its hemisphere (None: no date).

    Hemisphere: the sign of the footprint centroid's latitude (>= 0 is north).
    """
    when = item_datetime(item.get("properties") or {})
    if when is None:
        return None
    lat = item_footprint(item).centroid.y
    month = when.month if lat >= 0 else (when.month + 5) % 12 + 1  # south: shift 6 months
    return any(month in SEASON_MONTHS[_SEASON_ALIASES.get(s, s)] for s in seasons)


# --------------------------------------------------------------------------- order


def _sort_value(item: Mapping[str, Any], field: str) -> Any:
    props = item.get("properties") or {}
    if field.startswith("properties."):
        field = field[len("properties.") :]
    if field in ("id", "collection"):
        return item.get(field)
    value = props.get(field)
    if field in ("datetime", "start_datetime", "end_datetime", "created", "updated"):
        if field == "datetime" and value is None:
            value = props.get("start_datetime")
        d = item_datetime({"datetime": value}) if value else None
        return d.timestamp() if d is not None else None
    return value


def client_sort(features: list[dict[str, Any]], sortby: list[dict[str, str]]) -> None:
    """Stable multi-key sort in place; items missing a field go last either way."""
    for spec in reversed(sortby):
        desc = spec["direction"] == "desc"

        def key(f: dict[str, Any], field: str = spec["field"], desc: bool = desc) -> tuple:
            v = _sort_value(f, field)
            if v is None:
                return (0,) if desc else (1,)
            return (1, v) if desc else (0, v)

        try:
            features.sort(key=key, reverse=desc)
        except TypeError as e:
            raise SourceError(f"cannot sort by {spec['field']!r}: mixed value types ({e})") from e
