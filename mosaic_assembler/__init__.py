"""mosaic-assembler: an AOI plus a pile of imagery in, one analysis-ready COG out.

Dependency order: errors <- grid <- sources <- tilers <- writer <- chunks <- state
    <- executors <- options <- splits <- pipeline <- api <- cli
"""

from mosaic_assembler.api import AssembleOptions, AssembleResult, Progress, assemble
from mosaic_assembler.errors import (
    AOIError,
    ConfigError,
    EmptyPlanError,
    MosaicAssemblerError,
    OutputError,
    PlanTooLargeError,
    SourceError,
    TileFetchError,
    TileReadError,
    TilesFailedError,
)

__version__ = "0.1.0"

__all__ = [
    "AOIError",
    "AssembleOptions",
    "AssembleResult",
    "ConfigError",
    "EmptyPlanError",
    "MosaicAssemblerError",
    "OutputError",
    "PlanTooLargeError",
    "Progress",
    "SourceError",
    "TileFetchError",
    "TileReadError",
    "TilesFailedError",
    "assemble",
]
