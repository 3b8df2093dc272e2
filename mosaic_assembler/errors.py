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


class HTTPError(MosaicAssemblerError):
    """A server answered an HTTP error status, or none; carries `status` (None: no answer)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class HTTPRequestError(HTTPError, ConfigError):
    """A 4xx other than 429: the request is wrong (configuration, credentials); no retry."""


class HTTPAuthError(HTTPRequestError):
    """401 or 403: missing or refused credentials (`--header`)."""


class HTTPNotFoundError(HTTPRequestError):
    """404: the URL (or the tile, band or collection it names) does not exist."""


class HTTPServerError(HTTPError, SourceError):
    """429, a 5xx, no answer or a bad body: transient; raised once the retries are spent."""


#: The name before the HTTP table: a dynamic tiler's 4xx is an `HTTPRequestError`.
TilerRequestError = HTTPRequestError


#: HTTP status → error class (cogeo-mosaic's `_HTTP_EXCEPTIONS`); other statuses fall back
#: on `HTTPRequestError` (4xx) or `HTTPServerError` (5xx), see `web.error_class`.
HTTP_ERRORS: dict[int, type[HTTPError]] = {
    400: HTTPRequestError,
    401: HTTPAuthError,
    403: HTTPAuthError,
    404: HTTPNotFoundError,
    422: HTTPRequestError,
    429: HTTPServerError,
    500: HTTPServerError,
    502: HTTPServerError,
    503: HTTPServerError,
    504: HTTPServerError,
}


class StateMismatchError(ConfigError):
    """A run directory holds a run of another configuration."""


class AccessDeniedError(MosaicAssemblerError, PermissionError):
    """A request may not read a layer (`serve --grants`).

    `status` is 401 (no or unknown token) or 403 (a token without the grant).
    """

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class OutsideLayerError(ConfigError):
    """A requested cutout box or circle does not overlap the layer."""


class TilesFailedError(MosaicAssemblerError):
    """Some tiles could not be read; carries them as ((z, x, y), message) pairs."""

    def __init__(self, failed: list[tuple[tuple[int, int, int], str]], total: int):
        self.failed = failed
        first = ", ".join(f"{z}/{x}/{y}" for (x, y, z), _ in failed[:5])
        more = " …" if len(failed) > 5 else ""
        super().__init__(
            f"{len(failed)} of {total} tiles failed ({first}{more}); first error: "
            f"{failed[0][1]}. No output written; re-run the same command to retry them, or use "
            "`allow_partial` to write the rest masked"
        )
