"""Keep tokens out of the access log: `token=…` in a logged URL becomes `token=[redacted]`.

uvicorn's access log prints the path and query string (never the headers); the viewer is
opened as `/?token=…`, so that one request would otherwise write a token to the log.
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"((?:access_)?token(?:=|%3D))[^&;\s\"]*", re.IGNORECASE)


def redact_tokens(text: str) -> str:
    """`text` with the value of every `token=` query parameter replaced."""
    return _TOKEN.sub(r"\1[redacted]", text)


class RedactTokensFilter(logging.Filter):
    """A logging filter for `uvicorn.access` (its args hold the path with its query)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact_tokens(str(record.msg))
        return True
