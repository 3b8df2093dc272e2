"""mosaic_assembler.errors: one root error and the layer errors below it."""

from __future__ import annotations


class MosaicAssemblerError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(MosaicAssemblerError, ValueError):
    """The run's options are invalid (bad bbox, zoom, method, profile …)."""


class AOIError(ConfigError):
    """The area of interest cannot be used (not a polygon, out of range, unreadable)."""


class SourceError(MosaicAssemblerError):
    """A source (mosaicJSON, STAC items) cannot be read or is inconsistent."""


class EmptyPlanError(MosaicAssemblerError):
    """The area of interest intersects no asset of the source."""


class PlanTooLargeError(ConfigError):
    """The planned output exceeds the allowed number of pixels."""


class OutputError(MosaicAssemblerError, OSError):
    """The output cannot be written (exists, not writable, invalid COG)."""


class TileReadError(MosaicAssemblerError):
    """A tile could not be read from its assets."""

    def __init__(self, message: str, tile: tuple[int, int, int] | None = None):
        super().__init__(message)
        self.tile = tile


class TileFetchError(TileReadError):
    """A tile could not be fetched from a dynamic tiler; carries the HTTP status."""

    def __init__(
        self, message: str, tile: tuple[int, int, int] | None = None, status: int | None = None
    ):
        super().__init__(message, tile)
        self.status = status


class TilerRequestError(ConfigError):
    """A dynamic tiler refused a request (4xx): the run's configuration is wrong; no retry."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class StateMismatchError(ConfigError):
    """A run directory holds a run of another configuration."""


class TilesFailedError(MosaicAssemblerError):
    """Some tiles could not be read; carries them as ((z, x, y), message) pairs."""

    def __init__(self, failed: list[tuple[tuple[int, int, int], str]], total: int):
        self.failed = failed
        first = ", ".join(f"{z}/{x}/{y}" for (x, y, z), _ in failed[:5])
        more = " …" if len(failed) > 5 else ""
        super().__init__(
            f"{len(failed)} of {total} tiles failed ({first}{more}); first error: "
            f"{failed[0][1]}. No output written; re-run the same command to retry them, or use "
            "--allow-partial to write the rest masked"
        )
