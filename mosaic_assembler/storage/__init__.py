"""mosaic_assembler.storage: local paths and s3:// behind one small interface.

Outputs (`storage._target`), run directories (`storage._rundir`; `pipeline` picks the
local or S3 one) and source documents (`read_bytes`) may live on S3; a path that is not
`s3://…` keeps the local implementation (`writer.OutputTarget`, `state.RunState`).
Rasters on S3 are read by GDAL itself through /vsis3/ (rasterio's AWS session), with
`gdal_env` mapping boto3's endpoint variable for it. boto3 is imported only when an s3://
path is used (`mosaic-assembler[s3]`).

Dependency order: _url (S3Url, gdal_env) <-- _s3 (boto3 objects) <-- _records (a worker's
chunk upload and end record) <-- _target (outputs),
_rundir (run directories, the remote chunk).
"""

from __future__ import annotations

from mosaic_assembler.storage._s3 import reset_clients, scrub
from mosaic_assembler.storage._url import (
    CHUNK_READS,
    HTTP_RETRIES,
    HTTP_TIMEOUTS,
    S3Url,
    gdal_env,
    gdal_path,
    is_s3,
)

__all__ = [
    "CHUNK_READS",
    "HTTP_RETRIES",
    "HTTP_TIMEOUTS",
    "S3Url",
    "gdal_env",
    "gdal_path",
    "is_s3",
    "read_bytes",
    "reset_clients",
    "scrub",
]


def read_bytes(url: str, what: str, limit: int) -> bytes:
    """An s3:// document's bytes (mosaicJSON, items, AOI), refused above `limit`.

    Raises:
        SourceError: it cannot be read.
    """
    from mosaic_assembler.errors import ConfigError, OutputError, SourceError
    from mosaic_assembler.storage import _s3

    try:
        return _s3.get_bytes(S3Url.parse(url, what), what, limit)
    except (ConfigError, OutputError) as e:
        raise SourceError(str(e)) from e
