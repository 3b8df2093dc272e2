"""mosaic_assembler.tilers: one TileSource interface, several ways to render a tile.

`LocalTiler` reads the assets in-process with rio-tiler (the embedded default). Everything
downstream (writer, state, executors) sees only `TileSource.read_tile` and `TileData`.
`ReadOptions` and `QAMask` (from `selection`), `BandInfo` and `TileData` (from `types`) are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from mosaic_assembler.selection import PIXEL_SELECTION_METHODS, QAMask, ReadOptions
from mosaic_assembler.types import BandInfo, TileData

__all__ = [
    "PIXEL_SELECTION_METHODS",
    "BandInfo",
    "LocalTiler",
    "QAMask",
    "ReadOptions",
    "TileData",
    "TileSource",
]


def __getattr__(name: str) -> Any:
    # LocalTiler pulls in rio-tiler: imported when first used, so that the HTTP path and
    # the CLI's start-up stay light
    if name == "LocalTiler":
        from mosaic_assembler.tilers.local import LocalTiler

        return LocalTiler
    raise AttributeError(name)


class TileSource(Protocol):
    """Renders one tile of the run's grid (WebMercatorQuad by default) from its assets."""

    def read_tile(self, tile: tuple[int, int, int], assets: Sequence) -> TileData | None:
        """The tile's pixels and mask, or None when no asset has data there."""
        ...

    def band_info(self, assets: Sequence) -> BandInfo:
        """Band count, dtype and names of the tiles this source renders."""
        ...
