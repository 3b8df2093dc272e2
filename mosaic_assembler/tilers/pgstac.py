"""titiler-pgstac: register a STAC search, then fetch its tiles through `HttpTiler`.

The flow (titiler-pgstac 3.x, checked against its source)::

    POST {base}/searches/register   {"collections": [...], "bbox"/"intersects", "datetime",
                                     "query", "filter", "filter-lang", "sortby", "ids"}
        → {"id": "<search hash>", ...}
    GET  {base}/searches/{id}/tiles/WebMercatorQuad/{z}/{x}/{y}.tif
         ?assets=red&assets=green&assets=blue&pixel_selection=median&tilesize=512
         &exitwhenfull=false&skipcovered=false&items_limit=…&scan_limit=…&time_limit=…

Which items a tile gets is decided by pgstac's `geojsonsearch(geom, search, fields,
scan_limit, items_limit, time_limit, exitwhenfull, skipcovered)`, in the search's `sortby`
order (pgstac's default: `datetime` descending). Its defaults (`exitwhenfull=true`,
`skipcovered=true`, `items_limit=100`, `scan_limit=10000`, `time_limit=5` s) stop as soon as
the tile is covered by item *footprints*. Any method but `first` (median, mean, stdev,
count, …) then silently runs over one or two items; and `first` itself leaves holes wherever
the item that "covers" the tile by footprint has nodata (collars inside a bounding-box
footprint, clouds masked to nodata) that a skipped item would have filled: measured on the
generated collection of tests/test_stac_api.py, 2 of 12 zoom-10 tiles differ from the
in-process `first` with pgstac's defaults and none with the full scan. So
`pgstac_http_options` sends `exitwhenfull=false&skipcovered=false` and raised limits by
default for every method, `first` included (`full_scan=False` restores pgstac's shortcut,
for `first` over footprints known to be exact). The cost is only a longer item list from
the database: rio-tiler's `first` still stops reading assets once the tile is full.

Parameter names are titiler-pgstac's `PgSTACParams` query parameters (`scan_limit`,
`items_limit`, `time_limit`, `exitwhenfull`, `skipcovered`) and titiler-core's
`AssetsExprParams` (`assets`, repeated, with per-asset options `key|bidx=1,2`).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from mosaic_assembler import web
from mosaic_assembler.errors import ConfigError, HTTPServerError, SourceError
from mosaic_assembler.selection import ReadOptions
from mosaic_assembler.sources.stac_params import (
    parse_filter,
    parse_query,
    parse_sort_by,
    search_geometry,
    validate_datetime,
)
from mosaic_assembler.tilers.http import HttpOptions, expand_env

logger = logging.getLogger(__name__)

__all__ = [
    "FULL_SCAN_LIMITS",
    "pgstac_http_options",
    "pgstac_search_body",
    "register_search",
]

#: Limits sent with `exitwhenfull=false&skipcovered=false`: every item of the search that
#: intersects a tile counts (up to items_limit), within time_limit seconds of database time.
FULL_SCAN_LIMITS = {"items_limit": 10000, "scan_limit": 100000, "time_limit": 60}


def pgstac_search_body(
    collections: Sequence[str] | str,
    *,
    geometry: Mapping[str, Any] | None = None,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    query: Sequence[str] | Mapping[str, Any] | str | None = None,
    filter: Mapping[str, Any] | str | None = None,  # noqa: A002 - the STAC parameter name
    sort_by: str | Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The `/searches/register` body for the same search `open_stac_search` runs.

    Arguments mean what they mean for `open_stac_search` (same parsing, same errors).
    `seasons` and `max_items` cannot be expressed as a pgstac search: to make the tiler use
    exactly the items a run pinned, pass their `ids` (`[i.id for i in source.items]`) with
    the same `sort_by` (the order within a tile follows `sortby`, not the list of ids).

    Raises:
        ConfigError: bad parameters.

    """
    if isinstance(collections, str):
        collections = [c for c in collections.split(",") if c.strip()]
    if not collections:
        raise ConfigError("give at least one STAC collection (`collections`)")
    if geometry is not None and bbox is not None:
        raise ConfigError("give either a geometry or a bbox to search, not both")
    body: dict[str, Any] = {"collections": [str(c).strip() for c in collections]}
    g = search_geometry(geometry)
    if g is not None:
        body["intersects"] = g
    if bbox is not None:
        body["bbox"] = [float(v) for v in bbox]
    dt = validate_datetime(datetime)
    if dt is not None:
        body["datetime"] = dt
    q = parse_query(query)
    if q is not None:
        body["query"] = q
    f = parse_filter(filter)
    if f is not None:
        body["filter"] = f
        body["filter-lang"] = "cql2-json"
    s = parse_sort_by(sort_by)
    if s is not None:
        body["sortby"] = s
    if ids is not None:
        body["ids"] = [str(i) for i in ids]
    return body


def register_search(
    base_url: str,
    search_body: Mapping[str, Any],
    *,
    metadata: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.5,
) -> str:
    """POST `/searches/register` on a titiler-pgstac server; returns the search id.

    Registering the same search twice returns the same id (it is a hash of the search).

    Raises:
        HTTPRequestError: the server refused the search (4xx, with its message; the class
            from `errors.HTTP_ERRORS`).
        HTTPServerError: unreachable, or still failing (429/5xx) after `retries`.
        SourceError: the answer holds no search id.

    """
    base = _base(base_url)
    body = dict(search_body)
    if metadata is not None:
        body["metadata"] = dict(metadata)
    hdrs = {
        "Content-Type": "application/json",
        **{k: expand_env(v) for k, v in (headers or {}).items()},
    }
    url = f"{base}/searches/register"
    secrets = web.secrets_of(hdrs, [base])
    web.redact_logs(secrets)
    session = web.make_session(hdrs, pool=1)  # the headers never follow a redirect elsewhere
    last = ""
    for attempt in range(retries + 1):
        try:
            resp = session.post(url, data=json.dumps(body), timeout=(10.0, timeout))
        except requests.RequestException as e:
            last = (
                "connection failed" if isinstance(e, requests.ConnectionError) else type(e).__name__
            )
            wait = None
        else:
            if not web.is_retryable(resp.status_code):
                return _search_id(resp, base, url, secrets)
            last = f"HTTP {resp.status_code}: {web.server_message(resp.content)}"
            wait = web.retry_after(resp.headers)
        if attempt < retries:
            time.sleep(web.backoff_delay(attempt + 1, backoff, 30.0, random.Random(), wait))
    raise HTTPServerError(
        web.redact(
            f"cannot register the search at {url}: {last} (after {retries} retries)", secrets
        )
    )


def _search_id(resp: requests.Response, base: str, url: str, secrets: frozenset[str]) -> str:
    if resp.status_code >= 400:
        raise web.error_from_response(
            resp.status_code,
            resp.content,
            f"titiler-pgstac at {base} refused the search (HTTP {resp.status_code})",
            secrets,
        )
    try:
        search_id = resp.json()["id"]
    except (ValueError, KeyError, TypeError) as e:
        text = web.redact(resp.text[:200], secrets)
        raise SourceError(f"{web.redact(url)} did not answer with a search id: {text!r}") from e
    logger.info("registered pgstac search %s at %s", search_id, web.redact(base))
    return str(search_id)


def _base(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            "titiler-pgstac URL must be http(s)://host[:port][/prefix], got "
            f"{web.redact(base_url)!r}"
        )
    return base_url.rstrip("/")


def pgstac_http_options(
    base_url: str,
    search_id: str,
    read: ReadOptions,
    assets: Sequence[str],
    *,
    full_scan: bool = True,
    items_limit: int | None = None,
    scan_limit: int | None = None,
    time_limit: int | None = None,
    params: Sequence[tuple[str, str]] = (),
    headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    **http: Any,
) -> HttpOptions:
    """HttpOptions for the tiles of a registered search.

    Args:
        base_url: titiler-pgstac's root URL.
        search_id: from `register_search`.
        read: the run's read options (pixel_selection, tilesize, bidx, expression, …): the
            HttpTiler adds them as query parameters; `bidx` is sent per asset
            (`assets=red|bidx=1`), as titiler-pgstac expects.
        assets: asset keys in band order, sent as repeated `assets=`.
        full_scan: send `exitwhenfull=false&skipcovered=false` and the raised limits
            (default True, for every method; see the module doc for why `first` too).
        items_limit: most items per tile (pgstac default 100); overrides FULL_SCAN_LIMITS,
            sent whenever given.
        scan_limit: most items scanned per tile (pgstac default 10000); likewise.
        time_limit: seconds of database time per tile (pgstac default 5); likewise.
        params: more query parameters (`--tiler-param`).
        headers: request headers (`--header`, `${ENV}` expanded by the HttpTiler).
        **http: other HttpOptions fields (retries, timeout, concurrency, …).

    Raises:
        ConfigError: no assets, bad URL or search id.

    """
    base = _base(base_url)
    if not assets:
        raise ConfigError("titiler-pgstac needs `assets` (the STAC asset keys to read)")
    if not search_id or "/" in search_id:
        raise ConfigError(f"bad pgstac search id {search_id!r}")
    limits = {"items_limit": items_limit, "scan_limit": scan_limit, "time_limit": time_limit}
    q = _tile_params(read, assets, full_scan, limits)
    given = {k for k, _ in params}
    q = [(k, v) for k, v in q if k not in given] + list(params)
    template = f"{base}/searches/{search_id}/tiles/{{tileMatrixSetId}}/{{z}}/{{x}}/{{y}}.tif"
    hdrs = tuple(headers.items()) if isinstance(headers, Mapping) else tuple(headers)
    return HttpOptions(template=template, params=tuple(q), headers=hdrs, **http)


def _tile_params(
    read: ReadOptions, assets: Sequence[str], full_scan: bool, given: Mapping[str, int | None]
) -> list[tuple[str, str]]:
    """`assets=` (with per-asset `bidx`), the full-scan switches and the limits."""
    q: list[tuple[str, str]] = []
    for a in assets:
        if read.bidx is not None:
            q.append(("assets", f"{a}|bidx={','.join(str(b) for b in read.bidx)}"))
        else:
            q.append(("assets", a))
    limits: dict[str, int] = {}
    if full_scan:
        q += [("exitwhenfull", "false"), ("skipcovered", "false")]
        limits.update(FULL_SCAN_LIMITS)
    for k, v in given.items():
        if v is not None:
            if v < 1:
                raise ConfigError(f"{k} must be >= 1, got {v}")
            limits[k] = v
    return q + [(k, str(v)) for k, v in limits.items()]
