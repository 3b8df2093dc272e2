"""HTTP tiler: GET {z}/{x}/{y}.tif from a dynamic tiler (TiTiler, titiler-pgstac).

Status contract (TiTiler 2.x, see DESIGN.md):

| status | meaning | what happens |
|---|---|---|
| 200 | GeoTIFF tile; last band is the mask (0/255) unless `return_mask=false` | decoded |
| 204 | no asset / empty mosaic | empty tile, not an error |
| 400 404 422 424 (any other 4xx but 429) | configuration error | the run stops at once |
| 429 5xx, timeouts, resets, bad bodies | transient | retried (`web.backoff_delay`) |
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy
import rasterio
import requests
from rasterio.io import MemoryFile

from mosaic_assembler import web
from mosaic_assembler.errors import ConfigError, TileFetchError
from mosaic_assembler.selection import ReadOptions
from mosaic_assembler.types import BandInfo, TileData

logger = logging.getLogger(__name__)

_PLACEHOLDERS = ("{z}", "{x}", "{y}")
#: An error answer is read up to this many bytes (its message is quoted truncated anyway).
_ERROR_BODY_LIMIT = 1 << 16
_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str) -> str:
    """Replace `${NAME}` with the environment variable NAME (for secrets in headers).

    Raises:
        ConfigError: NAME is not set.
    """

    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ConfigError(f"environment variable {name} (used in `headers`) is not set")
        return os.environ[name]

    return _ENV_VAR.sub(sub, value)


@dataclass(frozen=True)
class HttpOptions:
    """How tiles are requested.

    Attributes:
        template: URL with {z}, {x}, {y} (and optionally {tilesize}, {tileMatrixSetId}: the
            run's TileMatrixSet id).
        params: extra query parameters (`--tiler-param`), appended unless in the template.
        headers: request headers (`--header`); `${NAME}` expands from the environment when the
            run starts. Never printed or logged.
        retries: retries per tile for transient failures.
        timeout: the most one request may take, seconds: its body must be complete by then
            (each socket read also waits at most this long).
        connect_timeout: connect timeout, seconds.
        backoff: first backoff step, seconds (full jitter: uniform(0, backoff × 2^attempt)).
        backoff_max: cap of one backoff sleep, seconds.
        concurrency: requests in flight (and connection pool size).
        seed: seeds the jitter, for reproducible tests.
        max_bytes_per_pixel: the bytes per pixel (all bands, mask included) a tile may have
            before the first tile has set the band count and dtype: bounds the body read and
            the raster decoded (32: e.g. 7 float32 bands + mask, 15 uint16 bands + mask).
    """

    template: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    retries: int = 5
    timeout: float = 120.0
    connect_timeout: float = 10.0
    backoff: float = 0.5
    backoff_max: float = 30.0
    concurrency: int = 16
    seed: int | None = None
    max_bytes_per_pixel: int = 32

    def __post_init__(self) -> None:
        parts = urlsplit(self.template)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"`tiler` must be an http(s) URL template, got {web.redact(self.template)!r}"
            )
        missing = [p for p in _PLACEHOLDERS if p not in self.template]
        if missing:
            raise ConfigError(
                f"`tiler` template lacks {', '.join(missing)}: it needs {{z}}, {{x}} and {{y}}"
            )
        if "@2x" in self.template or "@1x" in self.template:
            raise ConfigError(
                "`tiler` template uses '@2x'/'@1x', which TiTiler 2.x no longer accepts; the "
                "tool sends tilesize=512 (or 256) instead: remove the '@2x'"
            )
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")
        if not (math.isfinite(self.timeout) and math.isfinite(self.connect_timeout)):
            raise ConfigError(f"`timeout` must be a finite number of seconds, got {self.timeout}")
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ConfigError("timeouts must be positive")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")


def build_url_template(http: HttpOptions, read: ReadOptions) -> str:
    """The template with the read options as query parameters, unless already present."""
    parts = urlsplit(http.template)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {k for k, _ in query}
    extra: list[tuple[str, str]] = []
    if "{tilesize}" not in http.template and "tilesize" not in present:
        extra.append(("tilesize", str(read.tilesize)))
    if "pixel_selection" not in present:
        extra.append(("pixel_selection", read.pixel_selection))
    if read.bidx and "bidx" not in present:
        extra.extend(("bidx", str(b)) for b in read.bidx)
    if read.expression and "expression" not in present:
        extra.append(("expression", read.expression))
    if read.resampling != "nearest" and "resampling" not in present:
        extra.append(("resampling", read.resampling))
    for k, v in http.params:
        if k not in present:
            extra.append((k, v))
    # keep the placeholders readable: urlencode would escape the braces
    q = urlencode(query + extra, safe="{}/:,")
    return (
        urlunsplit((parts.scheme, parts.netloc, parts.path, q, parts.fragment))
        .replace("%7B", "{")
        .replace("%7D", "}")
    )


def _fill_tms(template: str, tms_id: str) -> str:
    """`{tileMatrixSetId}` of TiTiler's `/tiles/{tileMatrixSetId}/{z}/{x}/{y}` filled in.

    Raises:
        ConfigError: the template names another TileMatrixSet than the run's grid.
    """
    if "{tileMatrixSetId}" in template:
        return template.replace("{tileMatrixSetId}", tms_id)
    path = urlsplit(template).path
    named = re.search(r"/tiles/([A-Za-z0-9_.-]+)/\{z\}", path)
    if named and named.group(1) != tms_id:
        raise ConfigError(
            f"the `tiler` template requests TileMatrixSet {named.group(1)} but the output grid "
            f"is {tms_id} (`tms`): write {{tileMatrixSetId}} in the template, or change `tms`"
        )
    return template


class _Transient(Exception):
    def __init__(self, message: str, status: int | None = None, wait: float | None = None):
        super().__init__(message)
        self.status = status
        self.wait = wait


class HttpTiler:
    """Fetches tiles from a dynamic tiler over one pooled `requests.Session`.

    The assets handed to `read_tile` are ignored: the server resolves them.
    """

    def __init__(self, http: HttpOptions, read: ReadOptions, tms_id: str = "WebMercatorQuad"):
        self.http = http
        self.read = read
        self.url_template = _fill_tms(build_url_template(http, read), tms_id)
        q = dict(parse_qsl(urlsplit(self.url_template).query))
        self.has_mask_band = q.get("return_mask", "true").lower() not in ("false", "0", "no")
        self.tilesize = read.tilesize
        self.default_concurrency = http.concurrency
        self._headers = {k: expand_env(v) for k, v in http.headers}
        self._secrets = web.secrets_of(self._headers, [self.url_template])
        web.redact_logs(self._secrets)
        self._lock = threading.Lock()
        self._rng = random.Random(http.seed)
        self._bands: tuple[int, str] | None = None
        self._session: requests.Session | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_session=None, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """The pooled session (created on first use, in each process)."""
        with self._lock:
            if self._session is None:
                self._session = web.make_session(self._headers, pool=self.http.concurrency)
            return self._session

    def close(self) -> None:
        """Close the session's connections."""
        if self._session is not None:
            self._session.close()
            self._session = None

    def url_for(self, tile: tuple[int, int, int]) -> str:
        """The request URL of a tile."""
        x, y, z = tile
        return (
            self.url_template.replace("{z}", str(z))
            .replace("{x}", str(x))
            .replace("{y}", str(y))
            .replace("{tilesize}", str(self.tilesize))
        )

    def band_info(self, assets: Sequence) -> BandInfo | None:
        """Unknown until the first tile arrives: the server decides."""
        return None

    def read_tile(self, tile: tuple[int, int, int], assets: Sequence = ()) -> TileData | None:
        """Fetch one tile, retrying transient failures.

        Returns:
            TileData, or None for 204 (no data).

        Raises:
            HTTPRequestError: the server refused the request (4xx other than 429; the class
                from `errors.HTTP_ERRORS`, e.g. HTTPNotFoundError for 404).
            TileFetchError: still failing after the retries (carries the last status).
        """
        x, y, z = tile
        last: _Transient | None = None
        for attempt in range(self.http.retries + 1):
            if last is not None:
                with self._lock:
                    delay = web.backoff_delay(
                        attempt, self.http.backoff, self.http.backoff_max, self._rng, last.wait
                    )
                logger.debug(
                    "tile %d/%d/%d: %s; retry %d in %.2f s",
                    *(z, x, y),
                    web.redact(str(last), self._secrets),
                    *(attempt, delay),
                )
                time.sleep(delay)
            try:
                data = self._fetch_once(tile)
            except _Transient as e:
                # keep the message, not the traceback: its frames hold the body read
                last = _Transient(str(e), e.status, e.wait)
                continue
            if attempt and data is not None:  # the manifest records retried tiles
                data = dataclasses.replace(data, retries=attempt)
            return data
        assert last is not None
        msg = web.redact(
            f"tile {z}/{x}/{y}: {last} (after {self.http.retries} retries)", self._secrets
        )
        raise TileFetchError(msg, tile, last.status)

    def _fetch_once(self, tile: tuple[int, int, int]) -> TileData | None:
        x, y, z = tile
        deadline = time.monotonic() + self.http.timeout
        try:
            resp = self.session.get(
                self.url_for(tile),
                timeout=(self.http.connect_timeout, self.http.timeout),
                stream=True,
            )
        except requests.Timeout as e:
            raise _Transient(f"timed out ({type(e).__name__})") from e
        except requests.RequestException as e:
            raise _Transient(f"connection failed ({type(e).__name__})") from e
        status = resp.status_code
        if status == 204 or web.is_retryable(status):
            resp.close()
            if status == 204:
                return None
            raise _Transient(f"HTTP {status}", status, web.retry_after(resp.headers))
        limit = self._body_limit() if status == 200 else _ERROR_BODY_LIMIT
        try:
            body = web.read_body(resp, limit, deadline, self.http.timeout)
        except web.BodyError as e:
            raise _Transient(f"bad response body: {e}", status) from e
        if status != 200:
            raise self._request_error(status, body, tile)
        return self._decode(body, tile)

    def _request_error(self, status: int, body: bytes, tile: tuple[int, int, int]) -> Exception:
        x, y, z = tile
        err = web.error_from_response(
            status, body, f"the tiler answered HTTP {status} for tile {z}/{x}/{y}", self._secrets
        )
        if "tilesize" in str(err):
            err.args = (
                f"{err} (the server does not accept `tilesize`: TiTiler < 2 used '@2x' in "
                "the path; use TiTiler >= 2 or put {tilesize} where the server wants it)",
            )
        return err

    def _pixel_budget(self) -> int:
        """Bytes per pixel a tile may have: the first tile's, else max_bytes_per_pixel."""
        with self._lock:
            known = self._bands
        if known is None:
            return self.http.max_bytes_per_pixel
        count = known[0] + (1 if self.has_mask_band else 0)
        return count * numpy.dtype(known[1]).itemsize

    def _body_limit(self) -> int:
        """The expected raw tile size x 1.25 + 1 MiB (headers, overviews, metadata)."""
        return int(self.tilesize**2 * self._pixel_budget() * 1.25) + (1 << 20)

    def _check_profile(self, src: Any) -> None:
        """Refuse a tile whose declared shape, bands or dtype is not the one requested.

        Checked before a pixel is read: a 24 KB body can declare 28000 x 28000 px.
        """
        size = self.tilesize
        if (src.width, src.height) != (size, size):
            hint = (
                " (TiTiler < 2 ignores `tilesize` and uses '@2x')"
                if (src.width, src.height) in ((256, 256), (512, 512))
                else ""
            )
            raise _Transient(
                f"the server returned {src.width}x{src.height} px for tilesize={size}{hint}", 200
            )
        bands = src.count - (1 if self.has_mask_band else 0)
        if bands < 1:
            raise _Transient("the tile has no data band besides the mask", 200)
        if len(set(src.dtypes)) != 1:
            raise _Transient(f"the tile mixes dtypes {', '.join(sorted(set(src.dtypes)))}", 200)
        dtype = str(src.dtypes[0])
        with self._lock:
            expected = self._bands
        if expected is not None and (bands, dtype) != expected:
            raise _Transient(
                f"the tile has {bands} x {dtype} bands, earlier tiles had "
                f"{expected[0]} x {expected[1]}",
                200,
            )
        if expected is None and src.count * numpy.dtype(dtype).itemsize > self._pixel_budget():
            raise _Transient(
                f"the tile declares {src.count} x {dtype} bands, more than "
                f"max_bytes_per_pixel={self.http.max_bytes_per_pixel} bytes per pixel",
                200,
            )

    def _decode(self, content: bytes, tile: tuple[int, int, int]) -> TileData:
        try:
            with MemoryFile(content) as mem, mem.open() as src:
                self._check_profile(src)
                arr = src.read()
                valid = (arr[-1] > 0) if self.has_mask_band else src.dataset_mask() > 0
        except (rasterio.errors.RasterioError, ValueError) as e:
            raise _Transient(f"undecodable tile body ({len(content)} bytes): {e}", 200) from e
        data = arr[:-1] if self.has_mask_band else arr
        with self._lock:
            if self._bands is None:
                self._bands = (data.shape[0], str(data.dtype))
            expected = self._bands
        if (data.shape[0], str(data.dtype)) != expected:  # two first tiles raced
            raise _Transient(
                f"the tile has {data.shape[0]} x {data.dtype} bands, earlier tiles had "
                f"{expected[0]} x {expected[1]}",
                200,
            )
        return TileData(numpy.ascontiguousarray(data), valid)
