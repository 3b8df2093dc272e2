"""The STAC API item search: `open_stac_search` runs one search and pins the result.

The rules it follows (method, order, seasons, max_items, usable items, errors) are in the
`sources.stac_api` module doc.
"""

from __future__ import annotations

import itertools
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlparse

from pystac_client.exceptions import APIError

from mosaic_assembler import web
from mosaic_assembler.errors import ConfigError, SourceError
from mosaic_assembler.sources.stac_client import api_error, conforms, open_client
from mosaic_assembler.sources.stac_items import (
    StacItemsSource,
    items_from_features,
    lacks_assets,
)
from mosaic_assembler.sources.stac_params import (
    StacSearch,
    client_sort,
    item_season_ok,
    parse_filter,
    parse_query,
    parse_seasons,
    parse_sort_by,
    search_echo,
    search_geometry,
    validate_datetime,
)

logger = logging.getLogger(__name__)

__all__ = ["items_to_source", "open_stac_search"]


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


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class _Params:
    """A search's parameters, parsed and validated before any request."""

    url: str
    collections: list[str]
    intersects: dict[str, Any] | None
    bbox: list[float] | None
    datetime: str | None
    query: dict[str, Any] | None
    filter: dict[str, Any] | None
    sortby: list[dict[str, str]] | None
    sort_by: Any
    seasons: tuple[str, ...] | None
    max_items: int | None


def _parse(
    search: StacSearch,
    geometry: Mapping[str, Any] | None,
    bbox: Sequence[float] | None,
    page_size: int,
) -> _Params:
    cols = search.collections
    collections = [c for c in cols.split(",") if c.strip()] if isinstance(cols, str) else cols
    collections = [str(c).strip() for c in collections]
    if not collections:
        raise ConfigError("give at least one STAC collection (`collections`)")
    if geometry is not None and bbox is not None:
        raise ConfigError("give either a geometry or a bbox to search, not both")
    if search.max_items is not None and search.max_items < 1:
        raise ConfigError(f"`max_items` must be >= 1, got {search.max_items}")
    if not 1 <= page_size <= 10000:
        raise ConfigError(f"page size must be within 1..10000, got {page_size}")
    return _Params(
        url=search.url,
        collections=collections,
        intersects=search_geometry(geometry),
        bbox=None if bbox is None else [float(v) for v in bbox],
        datetime=validate_datetime(search.datetime),
        query=parse_query(search.query or None),
        filter=parse_filter(search.filter),
        sortby=parse_sort_by(search.sort_by),
        sort_by=search.sort_by,
        seasons=parse_seasons(search.seasons or None),
        max_items=search.max_items,
    )


def _check_api(client: Any, p: _Params) -> list[dict[str, str]] | None:
    """Refuse what the API cannot do; the sortby to send (None: sort client-side only)."""
    url = web.redact(p.url)
    if not conforms(client, "item-search"):
        raise SourceError(f"{url} does not implement STAC API item search")
    if p.query is not None and not conforms(client, "item-search#query"):
        raise ConfigError(
            f"the STAC API at {url} does not support the query extension "
            "(`query`); use `filter` if it supports CQL2"
        )
    if p.filter is not None and not conforms(client, "item-search#filter"):
        raise ConfigError(
            f"the STAC API at {url} does not support the filter extension "
            "(`filter`, CQL2); use `query` if it supports that"
        )
    if p.sortby is not None and not conforms(client, "item-search#sort"):
        logger.warning(
            "the STAC API at %s does not support sorting: all matching items are "
            "fetched and sorted client-side by %s",
            url,
            p.sort_by,
        )
        return None
    return p.sortby


def _check_collections(client: Any, p: _Params, retries: int) -> None:
    url = web.redact(p.url)
    for c in p.collections:
        try:
            found = client.get_collection(c)
        except APIError as e:
            raise api_error(e, p.url, retries, f"GET /collections/{c}") from e
        except Exception as e:
            raise SourceError(web.redact(f"cannot read collection {c!r} from {url}: {e}")) from e
        if found is None:
            try:
                names = [col.id for col in itertools.islice(client.get_collections(), 21)]
            except Exception:
                names = []
            avail = (", ".join(names[:20]) + (" …" if len(names) > 20 else "")) or "none"
            raise ConfigError(
                f"unknown collection {c!r} on the STAC API at {url}; available: {avail}"
            )


def _item_search(client: Any, p: _Params, send_sort: Any, page_size: int) -> tuple[Any, str]:
    """The pystac-client ItemSearch (no request sent yet) and its method."""
    methods = {
        str(link.extra_fields.get("method") or "GET").upper()
        for link in client.links
        if link.rel == "search"
    }
    method = "POST" if "POST" in methods or not methods else "GET"
    limit = page_size
    if p.max_items is not None and p.seasons is None and (p.sortby is None or send_sort):
        limit = min(limit, p.max_items)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            search = client.search(
                method=method,
                collections=p.collections,
                intersects=p.intersects,
                bbox=p.bbox,
                datetime=p.datetime,
                query=p.query,
                filter=p.filter,
                filter_lang="cql2-json" if p.filter is not None else None,
                sortby=send_sort,
                limit=limit,
            )
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(
            web.redact(f"bad STAC search parameters: {web.server_message(str(e))}")
        ) from e
    return search, method


@dataclass
class _Collected:
    matched: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)
    no_date: list[str] = field(default_factory=list)
    out_of_season: int = 0
    usable: int = 0


def _collect(
    items: Iterator[dict[str, Any]], p: _Params, wanted: Sequence[str], early_stop: bool
) -> _Collected:
    """Page through the results, keeping the items in season, until max_items are usable."""
    got = _Collected()
    for item in items:
        got.matched += 1
        if p.seasons is not None:
            ok = item_season_ok(item, p.seasons)
            if ok is None:
                got.no_date.append(str(item.get("id")))
                continue
            if not ok:
                got.out_of_season += 1
                continue
        got.kept.append(item)
        if not lacks_assets(item, wanted):
            got.usable += 1
            if early_stop and got.usable >= (p.max_items or 0):
                break
    return got


def _order(got: _Collected, p: _Params, send_sort: Any, early_stop: bool) -> None:
    """Apply `sort_by` client-side too (stable), and say when the API's order differed."""
    if p.sortby is None:
        return
    server_order = [k.get("id") for k in got.kept]
    client_sort(got.kept, p.sortby)
    if send_sort is not None and server_order != [k.get("id") for k in got.kept]:
        logger.warning(
            "the STAC API at %s returned the items in another order than --sort-by %s "
            "(pgstac sorts a property that has no numeric queryable definition as text): "
            "using the client-side order%s; a titiler-pgstac search sorted the same way "
            "would use the API's order",
            web.redact(p.url),
            p.sort_by,
            ", but --max-items took the API's first items"
            if early_stop and got.usable >= (p.max_items or 0)
            else "",
        )


def _check_found(got: _Collected, p: _Params, echo: str) -> None:
    if got.matched == 0:
        raise SourceError(f"0 items matched the STAC search {echo}")
    if got.no_date:
        logger.warning(
            "%d item(s) have no datetime and cannot be placed in a season; skipped: %s",
            len(got.no_date),
            ", ".join(got.no_date[:5]),
        )
    if not got.kept:
        raise SourceError(
            f"{got.matched} item(s) matched the STAC search {echo} but none was "
            f"acquired in {'/'.join(p.seasons or ())} of its hemisphere"
        )


def open_stac_search(
    search: StacSearch,
    assets: Sequence[str],
    *,
    extra_assets: Sequence[str] = (),
    geometry: Mapping[str, Any] | None = None,
    bbox: Sequence[float] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    page_size: int = 100,
) -> StacItemsSource:
    """Search a STAC API and pin the result as a `StacItemsSource`.

    Args:
        search: what to search (`url`, `collections`, `datetime`, `query`, `filter`,
            `max_items`, `seasons`, `sort_by`; see `StacSearch` and the module doc).
        assets: asset keys to read, in band order (e.g. ("red", "green", "blue")).
        extra_assets: other keys each item must have and keep (e.g. a QA band).
        geometry: the AOI as GeoJSON (Geometry, Feature or FeatureCollection): `intersects`.
        bbox: (W, S, E, N) lon/lat, when no `geometry` is given.
        headers: request headers for the STAC API only (never the tiler's `--header`s);
            sent to the API's origin, dropped on a redirect elsewhere, never printed.
        timeout: per-request timeout, seconds.
        retries: retries per request for connection failures, 429 and 5xx (with backoff).
        page_size: items per page requested (`limit`).

    Returns:
        The items, in selection order; `skipped` lists the ids of the matched items that
        could not be used (lacking an asset, or without a datetime under `seasons`).

    Raises:
        ConfigError: bad parameters (see module doc); HTTPRequestError for a 4xx.
        SourceError: unreachable API (HTTPServerError), API errors, no item matched, no
            usable item.

    """
    p = _parse(search, geometry, bbox, page_size)
    secrets = web.secrets_of(headers or {}, [p.url])
    web.redact_logs(secrets)
    client = open_client(p.url, headers, timeout, retries)
    send_sort = _check_api(client, p)
    _check_collections(client, p, retries)
    item_search, method = _item_search(client, p, send_sort, page_size)
    # with a client-side-only sort, every item must be seen before the first max_items
    early_stop = p.max_items is not None and (p.sortby is None or send_sort is not None)
    try:
        got = _collect(item_search.items_as_dicts(), p, (*assets, *extra_assets), early_stop)
    except APIError as e:
        raise api_error(e, p.url, retries, f"{method} /search") from e
    except Exception as e:
        raise SourceError(
            web.redact(
                f"STAC search on {p.url} failed: {type(e).__name__}: {web.server_message(str(e))}",
                secrets,
            )
        ) from e
    _check_found(got, p, search_echo(p.url, item_search.get_parameters()))
    _order(got, p, send_sort, early_stop)
    return _to_source(got, p, assets, extra_assets)


def _to_source(
    got: _Collected, p: _Params, assets: Sequence[str], extra_assets: Sequence[str]
) -> StacItemsSource:
    logger.info(
        "STAC search on %s: %d matched, %d kept (%d out of season)",
        web.redact(p.url),
        got.matched,
        len(got.kept),
        got.out_of_season,
    )
    origin = web.redact(f"STAC search {p.url} collections={','.join(p.collections)}")
    source = items_to_source(
        got.kept, assets, origin, skipped=got.no_date, extra_assets=extra_assets
    )
    if p.max_items is not None and len(source.items) > p.max_items:
        n, m = len(source.items) - p.max_items, p.max_items
        source = StacItemsSource(
            source.path, source.items[:m], source.footprints[:m], source.skipped
        )
        logger.debug("dropped %d usable item(s) past max_items", n)
    return source
