"""mosaic_assembler.types: small values every layer shares; the bottom of the import graph.

Nothing here imports another module of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy

__all__ = ["GDAL_DTYPES", "BandInfo", "ChunkStatus", "Tile", "TileData"]

#: A tile of the run's TileMatrixSet, as (x, y, z).
Tile = tuple[int, int, int]

#: numpy dtype name → GDAL data type name (VRT XML, band declarations).
GDAL_DTYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "uint64": "UInt64",
    "int64": "Int64",
    "float32": "Float32",
    "float64": "Float64",
}


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
        extra: (kind, (bands, height, width) array) of the provenance rasters that go with
            the tile (same mask), e.g. ("count", uint16 counts).
        retries: requests it took beyond the first (a dynamic tiler's retried tile).
    """

    data: numpy.ndarray
    valid: numpy.ndarray
    extra: tuple[tuple[str, numpy.ndarray], ...] = ()
    retries: int = 0


class ChunkStatus(StrEnum):
    """How a chunk ended (the manifest stores the value).

    done: file written, no failure; partial: file written, some tiles failed; empty: no tile
    had data, no file; failed: tiles failed and none had data.
    """

    DONE = "done"
    PARTIAL = "partial"
    EMPTY = "empty"
    FAILED = "failed"

    @property
    def has_file(self) -> bool:
        """Whether a chunk GeoTIFF was written."""
        return self in (ChunkStatus.DONE, ChunkStatus.PARTIAL)


#: The format tag of a run directory's run.json: only a directory holding it is a run
#: directory (state.py; storage/_rundir.py on S3).
RUN_FORMAT = "mosaic-assembler-run/1"
