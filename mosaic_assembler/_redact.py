"""Redaction: what never reaches a message, a log line or a file (`redact`, `REDACTING_FILTER`).

Secrets are `--header` values and every query parameter whose name looks like a credential.
Apart from `mosaic_assembler.web` (the HTTP policy, which re-exports these names) so that a
command that makes no HTTP request (`tiles`) installs the log filter without importing requests.
Depends on the standard library only.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote_plus

#: What a secret becomes.
REDACTED = "***"

_CREDENTIAL_WORDS = frozenset(
    {"token", "key", "apikey", "signature", "sig", "secret", "password", "passwd", "pwd"}
    | {"credential", "credentials", "auth", "authorization", "session", "jwt", "sas"}
)
_CREDENTIAL_PARTS = ("token", "apikey", "api_key", "secret", "password", "credential", "signature")
_QUERY_PARAM = re.compile(
    r"(?P<lead>[?&;]|&amp;)(?P<name>[^=&#\s?;\"'<>]+)=(?P<value>[^&#\s\"'<>]*)"
)
_MIN_SECRET = 3


def is_credential_name(name: str) -> bool:
    """Whether a query-parameter name looks like a credential (token, key, sig, X-Amz-*, …)."""
    n = unquote_plus(name).strip().lower()
    if n.startswith(("x-amz-", "x-goog-")):
        return True
    words = set(re.split(r"[^a-z0-9]+", n))
    return bool(words & _CREDENTIAL_WORDS) or any(p in n for p in _CREDENTIAL_PARTS)


def secrets_of(
    headers: Iterable[tuple[str, str]] | Mapping[str, str] = (), urls: Iterable[str] = ()
) -> frozenset[str]:
    """The values `redact` must hide.

    Every header value (and its credential part after a scheme like `Bearer`), and the
    values of the credential-like query parameters of `urls`.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: set[str] = set()
    for _, value in items:
        out.add(value.strip())
        out.update(value.split()[1:])
    for url in urls:
        for m in _QUERY_PARAM.finditer(url):
            if is_credential_name(m.group("name")):
                out.add(unquote_plus(m.group("value")))
    return frozenset(s for s in out if len(s) >= _MIN_SECRET)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with its secrets replaced by `***`.

    Every secret as is, URL-quoted and JSON-escaped, and the value of every query parameter
    whose name looks like a credential (`is_credential_name`).
    """
    for s in sorted(set(secrets), key=len, reverse=True):
        if len(s) < _MIN_SECRET:
            continue
        for form in {s, quote(s, safe=""), quote_plus(s), json.dumps(s)[1:-1]}:
            text = text.replace(form, REDACTED)

    def param(m: re.Match[str]) -> str:
        if not is_credential_name(m.group("name")) or not m.group("value"):
            return m.group(0)
        return f"{m.group('lead')}{m.group('name')}={REDACTED}"

    return _QUERY_PARAM.sub(param, text)


_LOG_SECRETS: set[str] = set()
_LOGGERS = ("mosaic_assembler", "urllib3", "requests", "pystac_client")


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg, _LOG_SECRETS)
        if clean != msg:
            record.msg, record.args = clean, ()
        return True


_FILTER = _RedactingFilter()
#: For a log handler: redacts every record it emits, whichever logger made it (a filter on a
#: logger only sees the records logged on that very logger, not its children's).
REDACTING_FILTER = _FILTER


def redact_logs(secrets: Iterable[str] = ()) -> None:
    """From now on, redact `secrets` and credential query parameters from log records.

    The records of this package, urllib3, requests and pystac-client: urllib3 logs every
    request URL at DEBUG, so `-vv` would print a `?token=`.
    """
    _LOG_SECRETS.update(secrets)
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] in _LOGGERS]
    for name in {*_LOGGERS, "urllib3.connectionpool", "urllib3.util.retry", *names}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
