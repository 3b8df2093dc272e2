"""Values shared by every TileSource."""

from __future__ import annotations

from dataclasses import dataclass

import numpy
from rio_tiler.mosaic.methods import PixelSelectionMethod

from mosaic_assembler.errors import ConfigError

#: rio-tiler's pixel-selection methods, by name (the CLI's choices come from here).
PIXEL_SELECTION_METHODS: dict[str, type] = {m.name: m.value for m in PixelSelectionMethod}

RESAMPLING_METHODS = ("nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average",
                      "mode", "rms")


@dataclass(frozen=True)
class ReadOptions:
    """How a tile is rendered; everything here affects pixels.

    Attributes:
        pixel_selection: rio-tiler method name (see PIXEL_SELECTION_METHODS).
        tilesize: 256 or 512 px.
        bidx: 1-based band indexes to read from each asset (None: all).
        expression: rio-tiler band math (e.g. "b1,b2,(b4-b3)/(b4+b3)"); excludes bidx.
        resampling: resampling used to warp assets onto the tile grid.
    """

    pixel_selection: str = "first"
    tilesize: int = 512
    bidx: tuple[int, ...] | None = None
    expression: str | None = None
    resampling: str = "nearest"

    def __post_init__(self) -> None:
        if self.tilesize not in (256, 512):
            raise ConfigError(f"tilesize must be 256 or 512, got {self.tilesize!r}")
        if self.pixel_selection not in PIXEL_SELECTION_METHODS:
            raise ConfigError(
                f"unknown pixel selection {self.pixel_selection!r}; valid: "
                + ", ".join(PIXEL_SELECTION_METHODS)
            )
        if self.bidx is not None and self.expression:
            raise ConfigError("--bidx and --expression cannot be used together")
        if self.bidx is not None and (not self.bidx or any(i < 1 for i in self.bidx)):
            raise ConfigError(f"band indexes are 1-based positive integers, got {self.bidx}")
        if self.expression is not None and not self.expression.strip():
            raise ConfigError("--expression is empty")
        if self.resampling not in RESAMPLING_METHODS:
            raise ConfigError(
                f"unknown resampling {self.resampling!r}; valid: {', '.join(RESAMPLING_METHODS)}"
            )


@dataclass(frozen=True)
class BandInfo:
    """Band count, dtype and names of the rendered tiles."""

    count: int
    dtype: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class TileData:
    """One rendered tile.

    Attributes:
        data: (bands, height, width) array in the output dtype.
        valid: (height, width) bool, True where the pixel has data.
    """

    data: numpy.ndarray
    valid: numpy.ndarray
