"""s3:// URLs, their GDAL /vsis3/ paths, and the GDAL configuration of remote reads."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from mosaic_assembler.errors import ConfigError

#: S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens (AWS's rules, simplified).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")

#: GDAL's HTTP retries for /vsis3/ and /vsicurl/ reads, unless the environment sets them: a
#: 429/5xx or a dropped connection is retried with exponential backoff before the read (and
#: then the tile) fails.
HTTP_RETRIES = {"GDAL_HTTP_MAX_RETRY": "4", "GDAL_HTTP_RETRY_DELAY": "0.5"}

#: GDAL's HTTP timeouts for the same reads, unless the environment sets them (curl has none by
#: default: a server that accepts the connection and never answers would stall a tile forever).
#: Seconds to connect, and for a whole request (a 2 MB range read at 0.2 Mbit/s fits).
HTTP_TIMEOUTS = {"GDAL_HTTP_CONNECTTIMEOUT": "15", "GDAL_HTTP_TIMEOUT": "90"}


def is_s3(path: object) -> bool:
    """Whether a path or URL names object storage (s3://… or GDAL's /vsis3/…)."""
    text = str(path)
    return text.startswith("s3://") or text.startswith("/vsis3/")


@dataclass(frozen=True)
class S3Url:
    """A bucket and a key (or a prefix, without its trailing slash)."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str | Path, what: str = "`output`") -> S3Url:
        """An s3://bucket/key URL or a /vsis3/bucket/key path.

        Raises:
            ConfigError: not one, or the bucket name is not valid.
        """
        text = str(url)
        if text.startswith("/vsis3/"):
            text = "s3://" + text[len("/vsis3/") :]
        parsed = urlparse(text)
        bucket, key = parsed.netloc, parsed.path.lstrip("/")
        if parsed.scheme != "s3" or not bucket:
            raise ConfigError(f"{what} {str(url)!r} is not an s3://bucket/key URL")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ConfigError(f"{what} {str(url)!r}: {bucket!r} is not a valid S3 bucket name")
        if parsed.query or parsed.fragment or "//" in key:
            raise ConfigError(f"{what} {str(url)!r} is not an s3://bucket/key URL")
        return cls(bucket, key.rstrip("/"))

    @property
    def url(self) -> str:
        """s3://bucket/key."""
        return f"s3://{self.bucket}/{self.key}"

    @property
    def vsi(self) -> str:
        """GDAL's path of the object: /vsis3/bucket/key."""
        return f"/vsis3/{self.bucket}/{self.key}"

    def child(self, name: str) -> S3Url:
        """The key `name` below this prefix."""
        return S3Url(self.bucket, f"{self.key}/{name}" if self.key else name)

    def __str__(self) -> str:
        return self.url


#: GDAL configuration of the finalize when the chunk files are on S3 (read through /vsis3/):
#: GDAL's default 16 KB range reads cost a request per compressed tile or less (measured on
#: moto: ~1 s per 256-px tile row of the output on a loaded machine); 2 MB reads fetch many tiles
#: each, and the cache (an upper bound on its memory) keeps what one output block row needs.
#: Chunk files have no sidecar files: do not list the chunks/ prefix to look for them.
#: GDAL reads the sizes once per process, so they apply to the driver's whole run (its input
#: reads too: on a cluster, only the plan-time probe of a few assets).
CHUNK_READS = {
    "CPL_VSIL_CURL_CHUNK_SIZE": str(2 * 1024 * 1024),
    "CPL_VSIL_CURL_CACHE_SIZE": str(128 * 1024 * 1024),
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
}

#: URL schemes and the GDAL virtual file systems that read them (as rasterio maps them).
_VSI = {"s3": "/vsis3/", "gs": "/vsigs/", "az": "/vsiaz/"}


def gdal_path(href: str) -> str:
    """The path GDAL itself reads an href by (for VRT XML, where rasterio does not map URLs).

    s3://b/k → /vsis3/b/k; http(s)://… → /vsicurl/http(s)://…; anything else unchanged.
    """
    scheme, sep, rest = href.partition("://")
    if not sep:
        return href
    if scheme in _VSI:
        return _VSI[scheme] + rest
    if scheme in ("http", "https"):
        return f"/vsicurl/{href}"
    return href


def gdal_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """GDAL configuration for reading s3:// and https:// through /vsis3/ and /vsicurl/.

    Credentials are never part of it: GDAL (and rasterio's AWS session) take them from the
    standard chain themselves. What it adds, each only when the environment does not set it:

    * `AWS_ENDPOINT_URL` (boto3's variable for S3-compatible servers) mapped to GDAL's
      `AWS_S3_ENDPOINT`, `AWS_HTTPS` and `AWS_VIRTUAL_HOSTING` (path-style addressing, as
      S3-compatible servers need);
    * GDAL's HTTP retries and timeouts (HTTP_RETRIES, HTTP_TIMEOUTS).

    `AWS_REQUEST_PAYER=requester` (requester-pays buckets) is read by GDAL from the
    environment itself, which then sends `x-amz-request-payer` with every /vsis3/ request
    (tested at the server). It is not made a GDAL config option of the run: rasterio restores
    the config options its environments found when they end, in every thread, so a value set
    for one run outlived it in the threads' reads of the next run (measured in one process).
    """
    env = os.environ if environ is None else environ
    config: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint and "AWS_S3_ENDPOINT" not in env:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        config["AWS_S3_ENDPOINT"] = parsed.netloc + parsed.path.rstrip("/")
        if "AWS_HTTPS" not in env:
            config["AWS_HTTPS"] = "NO" if parsed.scheme == "http" else "YES"
        if "AWS_VIRTUAL_HOSTING" not in env:
            config["AWS_VIRTUAL_HOSTING"] = "FALSE"
    for name, value in {**HTTP_RETRIES, **HTTP_TIMEOUTS}.items():
        if name not in env:
            config[name] = value
    return config
