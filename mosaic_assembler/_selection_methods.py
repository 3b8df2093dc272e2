"""Pixel-selection implementations behind :mod:`mosaic_assembler.selection` (imports rio-tiler).

The rio-tiler-named classes (``FirstMethod`` ... ``CountMethod``) are drop-in replacements
for ``rio_tiler.mosaic.methods.defaults`` (they subclass ``MosaicMethodBase``, so
``mosaic_reader(..., pixel_selection=MedianMethod())`` works unchanged). For the same
feed sequence, ``data`` has the same dtype, shape and mask as rio-tiler's and the same
value at every unmasked pixel (signed zeros included), numpy.ma's quirks included.
What is different is how they get there:

* ``first/highest/lowest/lastband*`` update one (data, mask) buffer in place;
* ``mean`` and ``count`` keep running sums (same accumulator dtype and order as numpy.ma);
* ``median`` and ``stdev`` keep the fed (data, mask) arrays (no numpy.ma stack) and
  reduce them in cache-sized pixel chunks: a pruned sorting network for the median, a
  sequential float64 pass for the deviations.

Two levels below rio-tiler's ``MosaicMethodBase``: ``_PickMethod`` here (a pick rule per
class) and ``_Reducer`` in :mod:`._selection_reducers` (``_add`` / ``_compute`` per
class). Each class's ``name`` is its entry in ``selection.METHODS``, which holds the
traits; a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import numpy
from rio_tiler.mosaic.methods.base import MosaicMethodBase

from mosaic_assembler import _selection_kernels as _k
from mosaic_assembler._selection_reducers import (
    CountMethod,
    GeomedianMethod,
    MeanMethod,
    MedianMethod,
    PercentileMethod,
    StdevMethod,
    _Reducer,
    split_masked,
)

#: A pick rule: ``(data, mask, new, new_mask) -> where to take the new value``.
_Rule = Callable[..., numpy.ndarray]


# --------------------------------------------------------------------------- in-place pickers
def _first(data, mask, new, new_mask):
    return mask & ~new_mask


def _highest(data, mask, new, new_mask):  # NaN never wins a comparison: an unmasked NaN sticks
    return ((new > data) & ~new_mask) | mask


def _lowest(data, mask, new, new_mask):
    return ((new < data) & ~new_mask) | mask


def _last_band_high(data, mask, new, new_mask):
    return ((new[-1] > data[-1]) & ~new_mask) | mask


def _last_band_low(data, mask, new, new_mask):
    return ((new[-1] < data[-1]) & ~new_mask) | mask


@dataclass(repr=False, eq=False)
class _PickMethod(MosaicMethodBase):
    """Keep one (data, mask) buffer; overwrite it where the class's ``rule`` is True.

    Same rule as rio-tiler's ``numpy.ma.where(pidex, array, mosaic)``. The first array is
    kept by reference (as rio-tiler does) and copied, with the dtype ``numpy.where`` would
    promote to, only when a second one arrives.
    """

    name: ClassVar[str]
    rule: ClassVar[_Rule]
    drops_last_band: ClassVar[bool] = False  # the last band decides and is not output
    _owned: bool = field(default=False, init=False)

    def __repr__(self) -> str:
        return f"<Mosaic: {type(self).__name__}>"

    def feed(self, array: numpy.ma.MaskedArray) -> None:
        """Merge ``array`` into the mosaic."""
        if self.mosaic is None:
            self.mosaic = array
            return
        new, new_mask = split_masked(array)
        data, mask = split_masked(self.mosaic)
        dtype = numpy.result_type(data, new)
        if not self._owned or dtype != data.dtype:
            self.mosaic = numpy.ma.MaskedArray(data.astype(dtype), mask=mask.copy())
            self._owned = True
            data, mask = split_masked(self.mosaic)
        pidex = self.rule(data, mask, new, new_mask)
        _k.select(pidex, new, data, out=data)  # branch-free copyto(where=pidex)
        _k.select(pidex, new_mask, mask, out=mask)

    @property
    def data(self) -> numpy.ma.MaskedArray | None:
        """The mosaic (without the decision band for the last-band methods)."""
        if self.mosaic is None or not self.drops_last_band:
            return self.mosaic
        return self.mosaic[:-1].copy()


@dataclass(repr=False, eq=False)
class FirstMethod(_PickMethod):
    """First unmasked value; ``is_done`` once nothing is masked (mosaic_reader stops early)."""

    name: ClassVar[str] = "first"
    rule = staticmethod(_first)
    exit_when_filled: bool = field(default=True, init=False)


@dataclass(repr=False, eq=False)
class LatestClearMethod(_PickMethod):
    """``first`` over observations fed newest first (the tiler orders them by datetime)."""

    name: ClassVar[str] = "latest-clear"
    rule = staticmethod(_first)
    exit_when_filled: bool = field(default=True, init=False)


@dataclass(repr=False, eq=False)
class HighestMethod(_PickMethod):
    """Highest value (NaN never wins a comparison, so an unmasked NaN sticks)."""

    name: ClassVar[str] = "highest"
    rule = staticmethod(_highest)


@dataclass(repr=False, eq=False)
class LowestMethod(_PickMethod):
    """Lowest value."""

    name: ClassVar[str] = "lowest"
    rule = staticmethod(_lowest)


@dataclass(repr=False, eq=False)
class LastBandHighMethod(_PickMethod):
    """Per band, take the new value where its last band is higher and it is unmasked."""

    name: ClassVar[str] = "lastbandhigh"
    rule = staticmethod(_last_band_high)
    drops_last_band: ClassVar[bool] = True


@dataclass(repr=False, eq=False)
class LastBandLowMethod(_PickMethod):
    """Per band, take the new value where its last band is lower and it is unmasked."""

    name: ClassVar[str] = "lastbandlow"
    rule = staticmethod(_last_band_low)
    drops_last_band: ClassVar[bool] = True


#: Registry entry name -> implementation (``p1..p99`` is ``PercentileMethod``).
IMPLEMENTATIONS: dict[str, type[_PickMethod] | type[_Reducer]] = {
    cls.name: cls
    for cls in (
        FirstMethod,
        HighestMethod,
        LowestMethod,
        MeanMethod,
        MedianMethod,
        StdevMethod,
        CountMethod,
        LastBandHighMethod,
        LastBandLowMethod,
        GeomedianMethod,
        LatestClearMethod,
        PercentileMethod,
    )
}


def new_method(key: str, param: int | None = None) -> MosaicMethodBase:
    """A fresh instance of the implementation of registry entry ``key`` (``param``: a family's)."""
    cls = IMPLEMENTATIONS[key]
    return cls() if param is None else cls(param)  # type: ignore[call-arg]
