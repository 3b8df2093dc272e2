"""mosaic_assembler.sources: what imagery counts, pinned once per run.

A source answers one question for the planner: which assets cover tile (x, y, z), in the
order the pixel selection sees them. Every asset is a small frozen value (a COG URL for a
mosaicJSON, an `ItemAssets` for a STAC item) so per-tile asset lists can travel to threads
and worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mosaic_assembler.errors import SourceError

if TYPE_CHECKING:
    from mosaic_assembler.sources.mosaicjson import MosaicJSONSource
    from mosaic_assembler.sources.stac_items import ItemAssets, StacItemsSource

_LAZY = {
    "MosaicJSONSource": "mosaicjson",
    "open_mosaicjson": "mosaicjson",
    "ItemAssets": "stac_items",
    "StacItemsSource": "stac_items",
    "open_stac_items": "stac_items",
}


def __getattr__(name: str) -> Any:
    # cogeo-mosaic and shapely load when a source is opened, not at import
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"mosaic_assembler.sources.{_LAZY[name]}"), name)
    raise AttributeError(name)


__all__ = [
    "AssetSource",
    "ItemAssets",
    "MosaicJSONSource",
    "StacItemsSource",
    "open_mosaicjson",
    "open_source",
    "open_stac_items",
]


class AssetSource(Protocol):
    """What the planner needs from a source."""

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Lon/lat bounds of all assets."""
        ...

    def assets_for_tile(self, x: int, y: int, z: int) -> list:
        """Assets covering a WebMercatorQuad tile, in selection order.

        The run passes `tms=` (a morecantile TileMatrixSet) for a tile of another grid;
        mosaicJSON and STAC items sources take it.
        """
        ...


def open_source(
    *,
    mosaicjson: str | Path | None = None,
    items: str | Path | None = None,
    assets: tuple[str, ...] = (),
    extra_assets: tuple[str, ...] = (),
) -> MosaicJSONSource | StacItemsSource:
    """Open exactly one of a mosaicJSON file or a STAC items file.

    Raises:
        SourceError: none or both given, or the file cannot be used.
    """
    if (mosaicjson is None) == (items is None):
        raise SourceError("give exactly one source: `mosaicjson` FILE or `items` FILE")
    from mosaic_assembler.sources.mosaicjson import open_mosaicjson
    from mosaic_assembler.sources.stac_items import open_stac_items

    if mosaicjson is not None:
        if assets:
            raise SourceError("`assets` applies to STAC items (`items`), not to a mosaicJSON")
        return open_mosaicjson(mosaicjson)
    assert items is not None
    return open_stac_items(items, assets, extra_assets)
