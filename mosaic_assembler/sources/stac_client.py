"""The STAC API client: pystac-client over the package's HTTP policy (`web`).

`open_client` opens the landing page with web's session (headers to the API's origin only,
full-jitter retries); `api_error` turns pystac-client's `APIError` into the error class of
its status; `conforms` reads the conformance classes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

from pystac_client.exceptions import APIError

from mosaic_assembler import web
from mosaic_assembler.errors import HTTPServerError, SourceError

__all__ = ["api_error", "conforms", "open_client"]


# --------------------------------------------------------------------------- errors

_REASONS = (
    ("Connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("Name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("Connection reset", "connection reset"),
    ("RemoteDisconnected", "connection closed by the server"),
)


def api_error(e: APIError, url: str, retries: int, what: str) -> Exception:
    """pystac-client's APIError → the error class of its status (`web.error_class`).

    HTTPServerError when no status came back (unreachable after the retries).
    """
    status = getattr(e, "status_code", None)
    if status is None:
        msg = str(e)
        reason = next((r for needle, r in _REASONS if needle in msg), web.server_message(msg, 200))
        return HTTPServerError(
            web.redact(
                f"cannot reach the STAC API at {url} ({what}): {reason} (after {retries} retries)"
            )
        )
    return web.error_from_response(
        status, str(e), f"the STAC API at {url} answered HTTP {status} to {what}"
    )


# --------------------------------------------------------------------------- client


def open_client(url: str, headers: Mapping[str, str] | None, timeout: float, retries: int) -> Any:
    """The pystac-client `Client` of the API at `url` (its landing page read).

    Raises:
        HTTPError: the API answered an error status, or none (after `retries`).
        SourceError: the landing page is not a STAC API.
    """
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO

    io = StacApiIO(timeout=timeout, max_retries=None)
    # the package's session: headers only to the API's own origin, web's retry policy
    io.session = web.make_session(dict(headers or {}), retry=web.urllib3_retry(retries))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Client.open(url, stac_io=io)
    except APIError as e:
        raise api_error(e, url, retries, "GET /") from e
    except Exception as e:
        raise SourceError(
            web.redact(f"{url} is not a STAC API: {type(e).__name__}: {web.server_message(str(e))}")
        ) from e


def conforms(client: Any, fragment: str) -> bool:
    """Whether the landing page's conformsTo has a STAC API v1.x class ending in `fragment`.

    (pystac-client's own check only knows v1.0.x; stac-fastapi 7 advertises v1.1.0 sort.)
    An API that lists no conformance classes at all is given the benefit of the doubt.
    """
    if not client.has_conforms_to():
        return True
    pattern = re.compile(r"^https?://api\.stacspec\.org/v1\.[^/]+/" + re.escape(fragment) + "$")
    return any(pattern.match(str(uri)) for uri in client.get_conforms_to())
