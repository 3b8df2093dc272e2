"""mosaic-assembler: an AOI plus a pile of imagery in, one analysis-ready COG out.

Dependency order: errors <- grid <- sources <- tilers <- writer <- chunks <- state
    <- executors <- options <- splits <- pipeline <- api <- cli
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from mosaic_assembler.api import AssembleOptions, AssembleResult, Progress, assemble

__version__ = "0.1.0"

#: Loaded on first use (PEP 562), so that `import mosaic_assembler.<module>` (the CLI's
#: subcommands, a Dask worker unpickling a chunk task) does not import the whole pipeline.
_LAZY = ("AssembleOptions", "AssembleResult", "Progress", "assemble")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from mosaic_assembler import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mosaic_assembler' has no attribute {name!r}")


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
