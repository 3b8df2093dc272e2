"""mosaic_assembler.web: the one HTTP policy of the package.

Used by `tilers.http` (tiles), `tilers.pgstac` (search registration) and `sources.stac_search`
(the STAC API), so that all three agree on:

* which statuses are worth a retry (`RETRY_STATUSES`, and every 5xx: `is_retryable`);
* which error class a status raises (`errors.HTTP_ERRORS`, via `error_class`), the status kept
  on the exception;
* how long to wait before a retry (`backoff_delay`: exponential, full jitter, at least the
  server's `Retry-After`, which is itself capped);
* what of a server's answer reaches a message (`server_message`, `error_from_response`: the
  JSON `detail`/`description`/`message`, or the text, on one line, truncated);
* what never reaches a message or a log line (`redact`: `--header` values and every query
  parameter whose name looks like a credential);
* how much of a body is read and for how long (`read_body`: a byte cap and a deadline for the
  whole body, not per read);
* where custom headers go (`make_session`: to the origin they were given for; a redirect to
  another origin drops them).

Depends on `errors` and `_redact` only (and requests/urllib3); the redaction lives in `_redact`
(no requests import) and is re-exported here.
"""

from __future__ import annotations

import email.utils
import json
import random
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from urllib3.util.retry import Retry

from mosaic_assembler._redact import (
    REDACTED,
    REDACTING_FILTER,
    is_credential_name,
    redact,
    redact_logs,
    secrets_of,
)
from mosaic_assembler.errors import HTTP_ERRORS, HTTPError, HTTPRequestError, HTTPServerError

__all__ = [
    "MESSAGE_LIMIT",
    "REDACTED",
    "REDACTING_FILTER",
    "RETRY_STATUSES",
    "BodyError",
    "backoff_delay",
    "error_class",
    "error_from_response",
    "is_credential_name",
    "is_retryable",
    "make_session",
    "read_body",
    "redact",
    "redact_logs",
    "retry_after",
    "secrets_of",
    "server_message",
    "urllib3_retry",
]

#: Statuses retried by every client of the package (and any other 5xx, see `is_retryable`).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Longest server message quoted in an error, characters.
MESSAGE_LIMIT = 300
#: A `Retry-After` longer than this many backoff caps is not honoured in full.
RETRY_AFTER_CAPS = 4


# --------------------------------------------------------------------------- statuses


def is_retryable(status: int | None) -> bool:
    """429 and 5xx are transient (overload, an asset that failed to read); None: no answer."""
    return status is None or status in RETRY_STATUSES or status >= 500


def error_class(status: int) -> type[HTTPError]:
    """The error class of an HTTP status: `errors.HTTP_ERRORS`, else by range."""
    found = HTTP_ERRORS.get(status)
    if found is not None:
        return found
    return HTTPServerError if is_retryable(status) else HTTPRequestError


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delta-seconds or an HTTP date)."""
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(
    attempt: int,
    backoff: float,
    backoff_max: float,
    rng: random.Random | None = None,
    wait: float | None = None,
) -> float:
    """Seconds to sleep before retry number `attempt` (1 for the first retry).

    Full jitter: uniform(0, min(backoff_max, backoff × 2^(attempt-1))); at least the server's
    `Retry-After` (`wait`), which is honoured up to RETRY_AFTER_CAPS × backoff_max only, so a
    hostile `Retry-After: 99999` cannot stall a run.
    """
    cap = min(backoff_max, backoff * 2 ** max(0, attempt - 1))
    delay = (rng or random).uniform(0, cap)
    if wait is not None:
        delay = max(delay, min(wait, RETRY_AFTER_CAPS * backoff_max))
    return delay


class _JitterRetry(Retry):
    """urllib3's Retry with the package's backoff (full jitter, capped Retry-After)."""

    def sleep(self, response: Any = None) -> None:
        wait = retry_after(response.headers) if response is not None else None
        time.sleep(
            backoff_delay(len(self.history), self.backoff_factor, self.backoff_max, None, wait)
        )


def urllib3_retry(retries: int, backoff: float = 0.5, backoff_max: float = 30.0) -> Retry:
    """A urllib3 Retry with `backoff_delay`, for clients that own a session (pystac-client).

    It retries connection failures and the `is_retryable` statuses (but 501).
    """
    return _JitterRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        backoff_max=backoff_max,
        status_forcelist=sorted({*RETRY_STATUSES, *range(505, 600)} - {501}),
        allowed_methods=None,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


# --------------------------------------------------------------------------- messages


def _parse_json(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def server_message(body: str | bytes, limit: int = MESSAGE_LIMIT) -> str:
    """The useful part of an error body, on one line, truncated.

    JSON `description`/`detail`/`message`/`error` (FastAPI validation lists as
    `loc: msg; …`), else the text.
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    doc = _parse_json(body)
    if isinstance(doc, Mapping):
        for k in ("description", "detail", "message", "error"):
            if doc.get(k):
                doc = _parse_json(doc[k])
                break
    if isinstance(doc, list):  # FastAPI/pydantic validation errors
        doc = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', []) if p != 'body')}: {d.get('msg', d)}"
            if isinstance(d, Mapping)
            else str(d)
            for d in doc
        )
    text = " ".join(str(doc if isinstance(doc, str) else json.dumps(doc)).split())
    return text[:limit] + ("…" if len(text) > limit else "")


def error_from_response(
    status: int, body: str | bytes, lead: str, secrets: Iterable[str] = ()
) -> HTTPError:
    """`{lead}: {server message}` as the error class of `status`, redacted, status kept."""
    text = redact(f"{lead}: {server_message(body)}", secrets)
    return error_class(status)(text, status)


# --------------------------------------------------------------------------- transport


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    default = {"http": 80, "https": 443}.get(p.scheme)
    return p.scheme, (p.hostname or "").lower(), p.port or default


class _OriginSession(requests.Session):
    """A session whose custom headers go only to their own origin.

    requests drops `Authorization` on a redirect to another host and keeps every other header
    (`X-Api-Key` …); here a redirect to another scheme, host or port drops all of them.
    """

    private: frozenset[str] = frozenset()

    def rebuild_auth(self, prepared_request: Any, response: Any) -> None:
        super().rebuild_auth(prepared_request, response)
        if _origin(response.request.url) != _origin(prepared_request.url):
            for name in self.private:
                prepared_request.headers.pop(name, None)


def make_session(
    headers: Mapping[str, str] | None = None, pool: int = 10, retry: Retry | int = 0
) -> requests.Session:
    """A pooled session carrying `headers` to its own origin only (never across a redirect)."""
    s = _OriginSession()
    s.private = frozenset((headers or {}).keys())
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=1, pool_maxsize=pool, pool_block=True, max_retries=retry
    )
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers.update(headers or {})
    return s


class BodyError(Exception):
    """A body exceeded its byte cap or its deadline, or the connection failed mid-body."""


def _set_read_timeout(resp: requests.Response, seconds: float) -> None:
    sock = getattr(getattr(resp.raw, "_connection", None), "sock", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(max(0.05, seconds))


def read_body(resp: requests.Response, limit: int, deadline: float, read_timeout: float) -> bytes:
    """Read a `stream=True` response's body, at most `limit` bytes, done by `deadline`.

    `deadline` is a `time.monotonic()` value for the whole body; each socket read waits at
    most the time left (and `read_timeout`), so a body that drips one byte a second ends at
    the deadline, not after `read_timeout` per byte.

    Raises:
        BodyError: over the cap (declared or read), past the deadline, or the connection failed.
    """
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        resp.close()
        raise BodyError(f"the body declares {declared} bytes, more than the {limit} expected")
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BodyError(f"the body was not complete by the deadline ({size} bytes read)")
            _set_read_timeout(resp, min(left, read_timeout))
            chunk = resp.raw.read1(65536, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BodyError(f"the body exceeds the {limit} bytes expected")
            parts.append(chunk)
    except BodyError:
        parts.clear()  # a traceback kept by the caller must not keep the body alive
        resp.close()
        raise
    except (OSError, urllib3.exceptions.HTTPError, requests.RequestException, ValueError) as e:
        parts.clear()
        resp.close()
        if time.monotonic() >= deadline - 0.1:  # the read was cut at the deadline
            raise BodyError(f"the body was not complete by the deadline ({size} bytes read)") from e
        reason = "timed out" if "timed out" in str(e).lower() else "connection failed"
        raise BodyError(f"{reason} while reading the body ({type(e).__name__})") from e
    body = b"".join(parts)
    resp._content = body  # the body is consumed: close() now returns the connection
    resp._content_consumed = True
    resp.close()
    return body
