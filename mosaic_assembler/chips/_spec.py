"""`ChipSpec`: what every batch of a chips run shares (small, frozen, picklable)."""

from __future__ import annotations

from dataclasses import dataclass

from mosaic_assembler.chips._composites import Composite
from mosaic_assembler.selection import QAMask

__all__ = ["ChipSpec"]


@dataclass(frozen=True)
class ChipSpec:
    """What every batch of a run shares (see `ChipsOptions` for the meanings)."""

    out_dir: str
    size: int
    assets: tuple[str, ...]
    points_crs: str
    mask: QAMask | None
    composites: tuple[Composite, ...]
    rescale: str
    id_fields: tuple[str, ...]
    gdal_config: tuple[tuple[str, str], ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every asset read: the assets, then the mask band when it is not one of them."""
        extra = (self.mask.band,) if self.mask and self.mask.band not in self.assets else ()
        return (*self.assets, *extra)
