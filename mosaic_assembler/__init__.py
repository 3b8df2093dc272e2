"""mosaic-assembler: an AOI plus a pile of imagery in, one analysis-ready COG out.

Dependency order: errors <- grid <- sources <- tilers <- writer <- chunks <- state
    <- executors <- options <- splits <- pipeline <- api <- cli
"""

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

_API = ("AssembleOptions", "AssembleResult", "Progress", "assemble")

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


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use.

    `import mosaic_assembler.cli` must not import rio-tiler before the CLI decides how (see
    `mosaic_assembler.cli._lean_imports`).
    """
    if name in _API:
        from mosaic_assembler import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
