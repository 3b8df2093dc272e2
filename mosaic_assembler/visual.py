"""mosaic_assembler.visual: an optional post-step that turns analytic tiles into uint8 imagery.

Never the default: analytic output keeps its dtype and a real mask. `--rescale` maps each band
linearly from MIN..MAX to 0..255 (clipped); `--color-ops` then applies rio-color's operations
(the reference notebook's "gamma RGB 3.5, saturation 1.7, sigmoidal RGB 15 0.35") to RGB;
it needs `--rescale`, so that every tile is stretched alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy

from mosaic_assembler.errors import ConfigError


@dataclass(frozen=True)
class Visual:
    """Rescale (per band, or one range for all) and rio-color operations.

    Attributes:
        rescale: ((min, max), …): one pair for all bands or one per band.
        color_ops: rio-color operation string, applied to 3-band (RGB) data in 0..1.
    """

    rescale: tuple[tuple[float, float], ...] = ()
    color_ops: str | None = None

    def __post_init__(self) -> None:
        for lo, hi in self.rescale:
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ConfigError(f"`rescale` needs finite MIN < MAX, got {lo},{hi}")
        if not self.rescale:
            # without one range for the whole output each tile would be stretched by its own
            # min/max, and the output would show seams between tiles
            what = "`color_ops`" if self.color_ops else "visual output"
            raise ConfigError(
                f"{what} needs `rescale` MIN,MAX: one range for the whole output (a per-tile "
                "stretch would show seams between tiles)"
            )
        if self.color_ops:
            self._ops()  # validates

    def _ops(self) -> list[Any]:
        try:
            from rio_color.operations import parse_operations
        except ImportError as e:
            raise ConfigError(
                "`color_ops` needs rio-color: pip install 'mosaic-assembler[visual]'"
            ) from e
        try:
            return parse_operations(self.color_ops)
        except Exception as e:  # rio-color raises several kinds on bad text
            raise ConfigError(f"invalid `color_ops` {self.color_ops!r}: {e}") from e

    def check_bands(self, count: int) -> None:
        """Refuse band counts the options cannot apply to."""
        if len(self.rescale) not in (0, 1, count):
            raise ConfigError(
                f"`rescale` was given {len(self.rescale)} ranges for {count} bands "
                "(give one for all, or one per band)"
            )
        if self.color_ops and count != 3:
            raise ConfigError(f"`color_ops` works on RGB: the output has {count} bands")

    def apply(self, data: numpy.ndarray) -> numpy.ndarray:
        """(bands, h, w) analytic data → uint8."""
        self.check_bands(data.shape[0])
        x = data.astype("float64")
        ranges = self.rescale
        if len(ranges) == 1:
            ranges = ranges * x.shape[0]
        for b, (lo, hi) in enumerate(ranges):
            x[b] = (x[b] - lo) / (hi - lo)
        x = numpy.clip(numpy.nan_to_num(x), 0.0, 1.0)
        if self.color_ops:
            for op in self._ops():
                x = op(x)
        return numpy.clip(numpy.rint(x * 255.0), 0, 255).astype("uint8")
