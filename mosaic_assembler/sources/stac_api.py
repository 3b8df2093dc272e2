"""A STAC API search (pystac-client) as an asset source: the public names in one place.

Dependency order: `stac_params` (the `StacSearch` value, parameter parsing, seasons) <--
`stac_search` (the search itself, `open_stac_search`) ; `stac_save` (writing what a search
found: `save_items`, `save_mosaicjson`).

A STAC API search (pystac-client) as an asset source.

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

HTTP (retries with full-jitter backoff, the status → error table, redaction of credentials
in messages) is `mosaic_assembler.web`'s policy: the same as the tiler's.

`save_mosaicjson(...)` writes the equivalent mosaicJSON so that a run can be repeated
without the STAC API (see its docstring for the layout).
"""

from __future__ import annotations

from mosaic_assembler.sources.stac_params import (
    SEASON_MONTHS,
    StacSearch,
    item_season_ok,
    parse_query,
    parse_sort_by,
)
from mosaic_assembler.sources.stac_save import save_items, save_mosaicjson
from mosaic_assembler.sources.stac_search import items_to_source, open_stac_search

__all__ = [
    "SEASON_MONTHS",
    "StacSearch",
    "item_season_ok",
    "items_to_source",
    "open_stac_search",
    "parse_query",
    "parse_sort_by",
    "save_items",
    "save_mosaicjson",
]
