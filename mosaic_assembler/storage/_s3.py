"""Objects on S3 through boto3: create-only uploads, reads, listings, deletes.

Why boto3 (not obstore or s3fs): it resolves credentials through the whole standard chain
(environment, shared profile, SSO, container and instance roles) exactly as rasterio's AWS
session does for GDAL's reads, so one configuration serves both; it sends `If-None-Match: *`
on PutObject and CompleteMultipartUpload (conditional create, one request, no race between
two workers); and its retries (standard mode) cover throttling. obstore moves bytes faster,
but here uploads are a few chunk files of some MB per worker and one output, and it would
need boto3's credential provider anyway for profiles and SSO.

Errors: every failure becomes one OutputError/SourceError line with the S3 error code; a
credential can never be part of it (`scrub` removes the environment's keys from any text).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mosaic_assembler.errors import ConfigError, OutputError
from mosaic_assembler.storage._url import S3Url

logger = logging.getLogger(__name__)

#: Files up to this size go up in one PUT; larger ones as a multipart upload whose completion
#: (the last request) makes the object appear.
SINGLE_PUT_BYTES = 64 * 1024 * 1024
PART_BYTES = 16 * 1024 * 1024
_PART_THREADS = 4

_NO_BOTO3 = "S3 needs boto3: pip install 'mosaic-assembler[s3]'"
_clients: dict[int, Any] = {}
_lock = threading.Lock()


class ExistsError(OutputError):
    """A create-only write found the object already there."""


def client() -> Any:
    """This process's S3 client (created from the environment on first use; thread-safe)."""
    pid = os.getpid()
    with _lock:
        if pid not in _clients:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as e:
                raise ConfigError(_NO_BOTO3) from e
            quiet_sdk_logs()
            session = boto3.session.Session()
            config = Config(retries={"max_attempts": 6, "mode": "standard"})
            _clients.clear()
            _clients[pid] = session.client("s3", config=config)
        return _clients[pid]


def quiet_sdk_logs() -> None:
    """Keep the AWS SDK's loggers at INFO or above, whatever `-vv` asks.

    botocore's DEBUG records print every request's headers: the Authorization header carries
    the access key id (and a session token, when there is one).
    """
    for name in ("botocore", "boto3", "s3transfer"):
        sdk = logging.getLogger(name)
        if sdk.getEffectiveLevel() < logging.INFO:
            sdk.setLevel(logging.INFO)


def reset_clients() -> None:
    """Forget the cached client (the environment changed: tests, a new endpoint)."""
    with _lock:
        _clients.clear()


def scrub(text: str) -> str:
    """`text` without any credential of the environment in it."""
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"):
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def _code(e: Exception) -> str:
    response = getattr(e, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def describe(e: Exception) -> str:
    """One line about an S3 failure, without credentials."""
    name = type(e).__name__
    if name == "NoCredentialsError" or name == "PartialCredentialsError":
        return (
            "no AWS credentials found (environment, shared profile or instance role: see "
            "the README's cluster recipe)"
        )
    code = _code(e)
    if code in ("NoSuchBucket",):
        return "the bucket does not exist"
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"access denied ({code})"
    if name == "EndpointConnectionError":
        return "cannot connect to the S3 endpoint"
    return scrub(f"{code or name}: {e}")


def _errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def head(url: S3Url, what: str = "output") -> dict[str, Any] | None:
    """The object's metadata, or None when it does not exist.

    Raises:
        OutputError: the bucket is missing, access is denied, no credentials …
    """
    try:
        return dict(client().head_object(Bucket=url.bucket, Key=url.key, **_payer()))
    except _errors() as e:
        if _code(e) in ("404", "NoSuchKey", "NotFound"):
            check_bucket(url, what)
            return None
        raise OutputError(f"{what} {url.url!r}: {describe(e)}") from e


def check_bucket(url: S3Url, what: str = "output") -> None:
    """Raise OutputError unless the bucket exists and can be reached."""
    try:
        client().head_bucket(Bucket=url.bucket)
    except _errors() as e:
        why = "the bucket does not exist" if _code(e) in ("404", "NoSuchBucket") else describe(e)
        raise OutputError(f"{what} {url.url!r}: {why}") from e


def _payer() -> dict[str, str]:
    """RequestPayer for requester-pays buckets (AWS_REQUEST_PAYER=requester, as GDAL reads it).

    Sent with every request that takes it (reads, listings, writes, multipart, deletes);
    HeadBucket has no such parameter.
    """
    return (
        {"RequestPayer": "requester"}
        if os.environ.get("AWS_REQUEST_PAYER", "").lower() == "requester"
        else {}
    )


def get_bytes(url: S3Url, what: str, limit: int | None = None) -> bytes:
    """An object's bytes (refused above `limit`).

    Raises:
        OutputError: it does not exist or cannot be read.
    """
    try:
        obj = client().get_object(Bucket=url.bucket, Key=url.key, **_payer())
        if limit is not None and int(obj.get("ContentLength", 0)) > limit:
            obj["Body"].close()
            raise OutputError(f"{what} {url.url!r} is larger than {limit} bytes")
        return bytes(obj["Body"].read())
    except _errors() as e:
        if _code(e) in ("404", "NoSuchKey"):
            raise OutputError(f"{what} {url.url!r} does not exist") from e
        raise OutputError(f"cannot read {what} {url.url!r}: {describe(e)}") from e


def _content_type(url: S3Url) -> dict[str, str]:
    """ContentType from the key's suffix (index.html must be served as text/html)."""
    import mimetypes

    kind, _ = mimetypes.guess_type(url.key, strict=False)
    return {"ContentType": kind} if kind else {}


def put_bytes(url: S3Url, data: bytes, create_only: bool, what: str = "object") -> None:
    """Write an object in one PUT (create-only: If-None-Match, ExistsError if it is there).

    Its ContentType follows the key's suffix (text/html, image/png, application/json …).
    """
    kwargs: dict[str, Any] = {"IfNoneMatch": "*"} if create_only else {}
    kwargs.update(_content_type(url))
    try:
        client().put_object(Bucket=url.bucket, Key=url.key, Body=data, **kwargs, **_payer())
    except _errors() as e:
        if create_only and _code(e) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
            raise ExistsError(f"{what} {url.url!r} exists") from e
        raise OutputError(f"cannot write {what} {url.url!r}: {describe(e)}") from e


def put_file(path: Path, url: S3Url, create_only: bool, what: str = "output") -> int:
    """Upload a finished local file; the object appears only once it is complete.

    One PUT up to SINGLE_PUT_BYTES; above, a multipart upload (parts in parallel) whose
    CompleteMultipartUpload, the last request, makes the object appear, and which is aborted
    on any failure (no orphaned parts billed). With `create_only`, both carry
    `If-None-Match: *`: an existing object is never replaced.

    Returns:
        The bytes uploaded.

    Raises:
        ExistsError: create_only and the object exists.
        OutputError: the upload failed.
    """
    size = path.stat().st_size
    if size <= SINGLE_PUT_BYTES:
        with path.open("rb") as f:
            put_bytes(url, f.read(), create_only, what)
        return size
    s3 = client()
    kwargs: dict[str, Any] = {"IfNoneMatch": "*"} if create_only else {}
    try:
        upload = s3.create_multipart_upload(
            Bucket=url.bucket, Key=url.key, **_content_type(url), **_payer()
        )["UploadId"]
    except _errors() as e:
        raise OutputError(f"cannot write {what} {url.url!r}: {describe(e)}") from e

    def send(number: int) -> dict[str, Any]:
        with path.open("rb") as f:
            f.seek((number - 1) * PART_BYTES)
            body = f.read(PART_BYTES)
        r = s3.upload_part(
            Bucket=url.bucket, Key=url.key, UploadId=upload, PartNumber=number, Body=body,
            **_payer(),
        )  # fmt: skip
        return {"PartNumber": number, "ETag": r["ETag"]}

    try:
        with ThreadPoolExecutor(_PART_THREADS, thread_name_prefix="upload") as pool:
            parts = list(pool.map(send, range(1, -(-size // PART_BYTES) + 1)))
        s3.complete_multipart_upload(
            Bucket=url.bucket, Key=url.key, UploadId=upload,
            MultipartUpload={"Parts": parts}, **kwargs, **_payer(),
        )  # fmt: skip
    except BaseException as e:
        try:
            s3.abort_multipart_upload(Bucket=url.bucket, Key=url.key, UploadId=upload, **_payer())
        except _errors():
            logger.warning("could not abort the multipart upload of %s", url.url)
        if isinstance(e, _errors()):
            if create_only and _code(e) in ("PreconditionFailed", "412"):
                raise ExistsError(f"{what} {url.url!r} exists") from e
            raise OutputError(f"cannot write {what} {url.url!r}: {describe(e)}") from e
        raise
    return size


def list_objects(prefix: S3Url, what: str = "run directory") -> Iterator[dict[str, Any]]:
    """Every object under `prefix/` (Key, Size, LastModified, ETag).

    Raises:
        OutputError: the bucket is missing or cannot be listed.
    """
    start = f"{prefix.key}/" if prefix.key else ""
    try:
        pages = (
            client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=prefix.bucket, Prefix=start, **_payer())
        )
        for page in pages:
            yield from page.get("Contents", [])
    except _errors() as e:
        why = "the bucket does not exist" if _code(e) == "NoSuchBucket" else describe(e)
        raise OutputError(f"{what} {prefix.url!r}: {why}") from e


def delete_keys(bucket: str, keys: list[str]) -> None:
    """Delete these objects (batches of 1,000, one request each)."""
    s3 = client()
    for i in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[i : i + 1000]]
        try:
            r = s3.delete_objects(
                Bucket=bucket, Delete={"Objects": batch, "Quiet": True}, **_payer()
            )
        except _errors() as e:
            raise OutputError(f"cannot delete objects in bucket {bucket!r}: {describe(e)}") from e
        for err in r.get("Errors", []):
            logger.warning(
                "could not delete s3://%s/%s: %s", bucket, err.get("Key"), err.get("Code")
            )
