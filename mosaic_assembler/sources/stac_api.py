"""A STAC API search (pystac-client) as an asset source.

`open_stac_search(...)` runs one item search, pages through the results and pins them as a
`StacItemsSource`, the same object `open_stac_items` makes from a file: the planner, the
in-process tiler and a resumed run see no difference between the two.

Rules (the CLI's `--stac` options map one to one onto the arguments):

* **Method**: POST when the API's root advertises a POST search link (STAC API item search
  says so with `"method": "POST"`), else GET. Pages are followed until the results end or
  `max_items` usable items are kept.
* **Order**: `sort_by` (e.g. `"eo:cloud_cover"`, `"-datetime"`, `"eo:cloud_cover,-datetime"`;
  a leading `-` is descending) is sent to the API (sort extension) *and* applied again
  client-side with a stable sort, so the order holds even where the API ignores it (an API
  without the sort extension gets no `sortby`: a warning is logged and only the client-side
  sort applies, to the items fetched). Without `sort_by` the order is the API's own
  default; for pgstac-backed APIs (stac-fastapi-pgstac, Planetary Computer, …) that is
  newest first (`datetime` descending, then `id`). The order is the pixel-selection order:
  `first` keeps the first item that has data.
* **Seasons**: `seasons=("spring", "summer")` keeps items whose acquisition month lies in one
  of the named *meteorological* seasons of the item's own hemisphere. North (footprint
  centroid latitude >= 0): spring = Mar-May, summer = Jun-Aug, autumn (or fall) = Sep-Nov,
  winter = Dec-Feb. South (centroid latitude < 0): the same names shifted by six months
  (summer = Dec-Feb, …). The month is the UTC month of `properties.datetime`, or of
  `start_datetime` when `datetime` is null. The filter runs client-side (CQL2 has no month
  function); items without any datetime are reported in `skipped`.
* **max_items**: the most *usable* items kept (after `seasons` and the asset check), in the
  order above; the search stops paging once that many are kept.
* **Usable**: an item is usable when every key of `assets` is present with an `href`. Items
  that are not usable are logged and listed in `StacItemsSource.skipped`, never silently
  dropped. Relative hrefs resolve against the item's `self` link.

Errors are one line each: `ConfigError` for what the user must change (unknown collection,
bad `datetime`, bad `query`, bad CQL2 `filter`, an unsupported extension, HTTP 400/422), and
`SourceError` for what the API did (unreachable after retries, other HTTP errors with the
API's own message, "0 items matched …" with the search echoed).

`save_mosaicjson(...)` writes the equivalent mosaicJSON so that a run can be repeated
without the STAC API (see its docstring for the layout).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import logging
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from shapely.geometry import box, mapping, shape
from shapely.ops import unary_union

from mosaic_assembler.errors import ConfigError, SourceError
from mosaic_assembler.sources.stac_items import (
    StacItemsSource,
    item_footprint,
    items_from_features,
    lacks_assets,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SEASON_MONTHS",
    "item_season_ok",
    "items_to_source",
    "open_stac_search",
    "parse_query",
    "parse_sort_by",
    "save_items",
    "save_mosaicjson",
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
                f"bad --query {cond!r}: expected PROPERTY OP VALUE with OP one of "
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
            raise ConfigError(f"bad --sort-by {sort_by!r}: empty field name")
        out.append({"field": field, "direction": "desc" if desc else "asc"})
    if not out:
        raise ConfigError(f"bad --sort-by {sort_by!r}: no field")
    return out


def _parse_seasons(seasons: Sequence[str] | str | None) -> tuple[str, ...] | None:
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
        raise ConfigError("--seasons is empty")
    return tuple(dict.fromkeys(out))


def _parse_filter(flt: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """A CQL2 filter (JSON dict, JSON text or CQL2 text) → validated CQL2 JSON."""
    if flt is None:
        return None
    try:
        import cql2
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ConfigError("--filter needs the 'cql2' package: pip install cql2") from e
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
        raise ConfigError(f"bad CQL2 --filter {_short(flt)}: {msg[:300]}") from e


def _validate_datetime(value: str | None) -> str | None:
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
            f"bad --datetime {value!r}: {msg[:200]} (use RFC 3339: '2024-06-01', "
            "'2024-03/2024-09', '2024-01-01T00:00:00Z/..')"
        ) from e


def _geometry(geometry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A GeoJSON Geometry, Feature or FeatureCollection → one Geometry dict."""
    if geometry is None:
        return None
    g = dict(geometry)
    kind = g.get("type")
    try:
        if kind == "Feature":
            return _geometry(g.get("geometry"))
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


def _echo(url: str, params: Mapping[str, Any]) -> str:
    """The search as one short line (a large AOI is summarised by its bounds)."""
    p = dict(params)
    p.pop("limit", None)
    if "intersects" in p:
        g = shape(p["intersects"])
        p["intersects"] = (
            f"{p['intersects'].get('type')} within [{', '.join(f'{v:.6g}' for v in g.bounds)}]"
        )
    return f"{url} {_short(p, 400)}"


# --------------------------------------------------------------------------- seasons


def _item_datetime(props: Mapping[str, Any]) -> _dt.datetime | None:
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
    when = _item_datetime(item.get("properties") or {})
    if when is None:
        return None
    lat = item_footprint(item).centroid.y
    month = when.month if lat >= 0 else (when.month + 5) % 12 + 1  # south: shift 6 months
    return any(month in SEASON_MONTHS[_SEASON_ALIASES.get(s, s)] for s in seasons)


# --------------------------------------------------------------------------- items


def _self_href(item: Mapping[str, Any]) -> str | None:
    for link in item.get("links") or []:
        if isinstance(link, Mapping) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return None


def _resolve(href: str, item: Mapping[str, Any]) -> str:
    parsed = urlparse(href)
    if parsed.scheme and len(parsed.scheme) > 1:
        return parsed.path if parsed.scheme == "file" else href
    if href.startswith("/"):
        return href
    base = _self_href(item)
    return urljoin(base, href) if base else href


def items_to_source(
    features: Sequence[Mapping[str, Any]],
    assets: Sequence[str],
    origin: str,
    skipped: Sequence[str] = (),
    extra_assets: Sequence[str] = (),
) -> StacItemsSource:
    """Item dicts (in selection order) + asset keys → `StacItemsSource`.

    Built exactly like `open_stac_items` builds it from a file (`items_from_features`), with
    relative hrefs resolved against each item's `self` link.

    Raises:
        SourceError: no items, no `assets`, a key no item has, or no usable item.
    """
    return items_from_features(
        features, assets, origin, origin, _resolve, extra_assets=extra_assets, skipped=skipped
    )


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
        d = _item_datetime({"datetime": value}) if value else None
        return d.timestamp() if d is not None else None
    return value


def _client_sort(features: list[dict[str, Any]], sortby: list[dict[str, str]]) -> None:
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


# --------------------------------------------------------------------------- errors


def _api_message(text: str) -> str:
    """The useful part of an API error body, on one line."""

    def parse(t: Any) -> Any:
        if isinstance(t, str):
            try:
                return json.loads(t)
            except ValueError:
                return t
        return t

    doc = parse(text)
    if isinstance(doc, Mapping):
        for k in ("description", "detail", "message", "error"):
            if doc.get(k):
                doc = parse(doc[k])
                break
    if isinstance(doc, list):  # FastAPI/pydantic validation errors
        doc = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []) if p != 'body')}: {d.get('msg', d)}"
            if isinstance(d, Mapping)
            else str(d)
            for d in doc
        )
    text = doc if isinstance(doc, str) else json.dumps(doc)
    text = " ".join(str(text).split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _api_error(e: Exception, url: str, retries: int, what: str) -> Exception:
    status = getattr(e, "status_code", None)
    if status is None:
        msg = str(e)
        reasons = (
            ("Connection refused", "connection refused"),
            ("timed out", "timed out"),
            ("Name or service not known", "unknown host"),
            ("nodename nor servname", "unknown host"),
            ("Connection reset", "connection reset"),
            ("RemoteDisconnected", "connection closed by the server"),
        )
        reason = next((r for needle, r in reasons if needle in msg), _api_message(msg)[:200])
        return SourceError(
            f"cannot reach the STAC API at {url} ({what}): {reason} (after {retries} retries)"
        )
    cls = ConfigError if status in (400, 422) else SourceError
    return cls(f"the STAC API at {url} answered HTTP {status} to {what}: {_api_message(str(e))}")


# --------------------------------------------------------------------------- search


def _open_client(url: str, headers: Mapping[str, str] | None, timeout: float, retries: int):
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    io = StacApiIO(headers=dict(headers or {}), timeout=timeout, max_retries=retry)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Client.open(url, stac_io=io)
    except Exception as e:
        if type(e).__name__ == "APIError":
            raise _api_error(e, url, retries, "GET /") from e
        raise SourceError(
            f"{url} is not a STAC API: {type(e).__name__}: {_api_message(str(e))}"
        ) from e


def _conforms(client: Any, fragment: str) -> bool:
    """Whether the landing page's conformsTo has a STAC API v1.x class ending in `fragment`.

    (pystac-client's own check only knows v1.0.x; stac-fastapi 7 advertises v1.1.0 sort.)
    An API that lists no conformance classes at all is given the benefit of the doubt.
    """
    if not client.has_conforms_to():
        return True
    pattern = re.compile(r"^https?://api\.stacspec\.org/v1\.[^/]+/" + re.escape(fragment) + "$")
    return any(pattern.match(str(uri)) for uri in client.get_conforms_to())


def open_stac_search(
    url: str,
    *,
    collections: Sequence[str] | str,
    assets: Sequence[str],
    extra_assets: Sequence[str] = (),
    geometry: Mapping[str, Any] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    query: Sequence[str] | Mapping[str, Any] | str | None = None,
    filter: Mapping[str, Any] | str | None = None,  # noqa: A002 - the STAC parameter name
    max_items: int | None = None,
    seasons: Sequence[str] | str | None = None,
    sort_by: str | Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    page_size: int = 100,
) -> StacItemsSource:
    """Search a STAC API and pin the result as a `StacItemsSource`.

    Args:
        url: the API's root (landing page) URL.
        collections: collection id(s); each must exist.
        assets: asset keys to read, in band order (e.g. ("red", "green", "blue")).
        extra_assets: other keys each item must have and keep (e.g. a QA band).
        geometry: the AOI as GeoJSON (Geometry, Feature or FeatureCollection): `intersects`.
        bbox: (W, S, E, N) lon/lat, when no `geometry` is given.
        datetime: RFC 3339 instant or interval ("2024-06", "2024-03-01/2024-09-30", "../2024").
        query: query-extension conditions (`["eo:cloud_cover<5"]`) or a query dict.
        filter: CQL2 filter: a CQL2-JSON dict, or CQL2 text
            ("eo:cloud_cover < 5 AND platform = 'landsat-8'"); validated locally, sent as
            cql2-json.
        max_items: keep at most this many usable items (after `seasons`), in order.
        seasons: meteorological seasons to keep ("spring", "summer", "autumn"/"fall",
            "winter"), per the item's hemisphere (module doc).
        sort_by: sort fields, `-` for descending; None: the API's default order (module doc).
        headers: request headers (e.g. an API key).
        timeout: per-request timeout, seconds.
        retries: retries per request for connection failures, 429 and 5xx (with backoff).
        page_size: items per page requested (`limit`).

    Returns:
        The items, in selection order; `skipped` lists the ids of the matched items that
        could not be used (lacking an asset, or without a datetime under `seasons`).

    Raises:
        ConfigError: bad parameters (see module doc).
        SourceError: unreachable API, API errors, no item matched, no usable item.

    """
    if isinstance(collections, str):
        collections = [c for c in collections.split(",") if c.strip()]
    collections = [str(c).strip() for c in collections]
    if not collections:
        raise ConfigError("give at least one STAC collection (--collections)")
    if geometry is not None and bbox is not None:
        raise ConfigError("give either a geometry or a bbox to search, not both")
    if max_items is not None and max_items < 1:
        raise ConfigError(f"--max-items must be >= 1, got {max_items}")
    if not 1 <= page_size <= 10000:
        raise ConfigError(f"page size must be within 1..10000, got {page_size}")
    intersects = _geometry(geometry)
    dt_param = _validate_datetime(datetime)
    query_param = parse_query(query)
    filter_param = _parse_filter(filter)
    sortby = parse_sort_by(sort_by)
    season_names = _parse_seasons(seasons)

    client = _open_client(url, headers, timeout, retries)
    if not _conforms(client, "item-search"):
        raise SourceError(f"{url} does not implement STAC API item search")
    if query_param is not None and not _conforms(client, "item-search#query"):
        raise ConfigError(
            f"the STAC API at {url} does not support the query extension "
            "(--query); use --filter if it supports CQL2"
        )
    if filter_param is not None and not _conforms(client, "item-search#filter"):
        raise ConfigError(
            f"the STAC API at {url} does not support the filter extension "
            "(--filter, CQL2); use --query if it supports that"
        )
    send_sort = sortby
    if sortby is not None and not _conforms(client, "item-search#sort"):
        logger.warning(
            "the STAC API at %s does not support sorting: all matching items are "
            "fetched and sorted client-side by %s",
            url,
            sort_by,
        )
        send_sort = None

    for c in collections:
        try:
            found = client.get_collection(c)
        except Exception as e:
            if type(e).__name__ == "APIError":
                raise _api_error(e, url, retries, f"GET /collections/{c}") from e
            raise SourceError(f"cannot read collection {c!r} from {url}: {e}") from e
        if found is None:
            try:
                names = [col.id for col in itertools.islice(client.get_collections(), 21)]
            except Exception:
                names = []
            avail = (", ".join(names[:20]) + (" …" if len(names) > 20 else "")) or "none"
            raise ConfigError(
                f"unknown collection {c!r} on the STAC API at {url}; available: {avail}"
            )

    methods = {
        str(link.extra_fields.get("method") or "GET").upper()
        for link in client.links
        if link.rel == "search"
    }
    method = "POST" if "POST" in methods or not methods else "GET"
    limit = page_size
    if max_items is not None and season_names is None and (sortby is None or send_sort):
        limit = min(limit, max_items)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search = client.search(
                method=method,
                collections=collections,
                intersects=intersects,
                bbox=None if bbox is None else [float(v) for v in bbox],
                datetime=dt_param,
                query=query_param,
                filter=filter_param,
                filter_lang="cql2-json" if filter_param is not None else None,
                sortby=send_sort,
                limit=limit,
            )
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"bad STAC search parameters: {_api_message(str(e))}") from e
    params = search.get_parameters()
    what = f"{method} /search"

    matched = 0
    kept: list[dict[str, Any]] = []
    no_date: list[str] = []
    out_of_season = 0
    usable = 0
    # with a client-side-only sort, every item must be seen before the first max_items
    early_stop = max_items is not None and (sortby is None or send_sort is not None)
    it: Iterator[dict[str, Any]] = search.items_as_dicts()
    try:
        for item in it:
            matched += 1
            if season_names is not None:
                ok = item_season_ok(item, season_names)
                if ok is None:
                    no_date.append(str(item.get("id")))
                    continue
                if not ok:
                    out_of_season += 1
                    continue
            kept.append(item)
            if not lacks_assets(item, (*assets, *extra_assets)):
                usable += 1
                if early_stop and usable >= max_items:  # type: ignore[operator]
                    break
    except Exception as e:
        if type(e).__name__ == "APIError":
            raise _api_error(e, url, retries, what) from e
        raise SourceError(
            f"STAC search on {url} failed: {type(e).__name__}: {_api_message(str(e))}"
        ) from e
    if matched == 0:
        raise SourceError(f"0 items matched the STAC search {_echo(url, params)}")
    if no_date:
        logger.warning(
            "%d item(s) have no datetime and cannot be placed in a season; skipped: %s",
            len(no_date),
            ", ".join(no_date[:5]),
        )
    if not kept:
        raise SourceError(
            f"{matched} item(s) matched the STAC search {_echo(url, params)} but none was "
            f"acquired in {'/'.join(season_names or ())} of its hemisphere"
        )
    if sortby is not None:
        server_order = [k.get("id") for k in kept]
        _client_sort(kept, sortby)
        if send_sort is not None and server_order != [k.get("id") for k in kept]:
            logger.warning(
                "the STAC API at %s returned the items in another order than --sort-by %s "
                "(pgstac sorts a property that has no numeric queryable definition as text): "
                "using the client-side order%s; a titiler-pgstac search sorted the same way "
                "would use the API's order",
                url,
                sort_by,
                ", but --max-items took the API's first items"
                if early_stop and usable >= (max_items or 0)
                else "",
            )
    logger.info(
        "STAC search on %s: %d matched, %d kept (%d out of season)",
        url,
        matched,
        len(kept),
        out_of_season,
    )
    origin = f"STAC search {url} collections={','.join(collections)}"
    source = items_to_source(kept, assets, origin, skipped=no_date, extra_assets=extra_assets)
    if max_items is not None and len(source.items) > max_items:
        n = len(source.items) - max_items
        source = StacItemsSource(
            source.path, source.items[:max_items], source.footprints[:max_items], source.skipped
        )
        logger.debug("dropped %d usable item(s) past max_items", n)
    return source


# --------------------------------------------------------------------------- mosaicJSON


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
        json.dumps({"type": "FeatureCollection", "features": [i.item for i in source.items]})
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
    features = []
    item_dir = out.parent / "items"
    dup = len({i.id for i in source.items}) < len(source.items)  # same id, other collections
    for it, fp in zip(source.items, source.footprints, strict=True):
        item = it.item
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
    mosaic = MosaicJSON.from_features(
        features, minzoom=minzoom, maxzoom=maxzoom, quadkey_zoom=quadkey_zoom, quiet=True
    )
    out.write_text(mosaic.model_dump_json(exclude_none=True))
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    save_items(source, out.parent / f"{stem}.items.json")
    return out
