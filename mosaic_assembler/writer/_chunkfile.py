"""Chunk GeoTIFFs: stream tiles into a tiled, sparse GeoTIFF with an internal mask.

Each chunk file gets internal overviews (data and mask) when its worker writes it
(`TileWriter.add_overviews`), so that finalize only copies them (see `_vrt`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import numpy
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window

from mosaic_assembler.errors import OutputError
from mosaic_assembler.grid import Chunk, Plan
from mosaic_assembler.types import BandInfo, TileData

logger = logging.getLogger(__name__)

#: GDAL block cache while streaming and finishing (bytes); bounded so memory does not grow
#: with the output (GDAL's default is 5 % of RAM).
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024

#: GDAL block cache while a chunk file is open (bytes). GDAL keeps the blocks written in its
#: cache until they are evicted or the file is closed; they are never read again from there
#: except by the chunk's overviews, which run with OVERVIEW_CACHE_BYTES anyway. With
#: DEFAULT_CACHE_BYTES the written blocks filled it: a run's peak RSS grew by ~50 MB from one
#: chunk of 16 tiles to full chunks of 64 (bench_memory). The setting is process-wide while the
#: file is open, reads included: 16 MB left the demo sample's run CPU unchanged (measured).
WRITE_CACHE_BYTES = 16 * 2**20

#: Overview resamplings for which an overview pixel depends only on the 2 x 2 pixels under it
#: in the next finer level (GDAL's COG driver computes each level from the previous one). Chunks
#: start at multiples of the tile size, itself a multiple of every per-chunk factor, so
#: overviews built per chunk equal the whole image's, bit for bit (checked by the tests).
#: bilinear and cubic kernels reach across chunk edges: their overviews come from GDAL's
#: whole-image computation, whose memory grows with the output's width.
CHUNK_OVERVIEW_RESAMPLINGS = ("nearest", "average", "mode", "rms")

#: Per-chunk overviews go down to this size (px) of a full chunk (and at most to a factor of
#: the tile size, so that every level of every chunk has a whole number of pixels).
MIN_CHUNK_OVERVIEW = 128

#: Dataset metadata item of a chunk GeoTIFF recording its overviews ("resampling:2,4,8").
OVERVIEW_TAG = "MOSAIC_ASSEMBLER_OVERVIEWS"


#: Compression of the chunk files of an S3 run directory, uploaded by the workers and read back
#: through /vsis3/ by the finalize. Measured by scripts/bench_chunk_compression.py on the demo
#: sample's median chunks (lossless, same pixels and mask): ZSTD level 1 + horizontal predictor
#: stores 0.13 x the raw bytes for 1.9 x the raw write CPU (+0.2 CPU-s per 60 MB chunk, well
#: under 1 % of computing its tiles) and 1.4 x the read CPU; DEFLATE level 1 was larger and
#: slower (0.14 x, 2.4 x), LZW both (0.26 x, 4.3 x). Local chunk files stay raw (see TileWriter).
S3_CHUNK_CODEC: Mapping[str, object] = {"compress": "ZSTD", "zstd_level": 1, "predictor": 2}

_codec: ContextVar[Mapping[str, object] | None] = ContextVar("chunk_codec", default=None)


@contextmanager
def chunk_compression(codec: Mapping[str, object]) -> Iterator[None]:
    """Chunk files opened by this thread inside the block are written with `codec`.

    A context of the computing thread (not a RunSpec field): only the S3 run directory's
    worker side asks for it, around the one call that computes a chunk.
    """
    token = _codec.set(dict(codec))
    try:
        yield
    finally:
        _codec.reset(token)


@dataclass(frozen=True)
class ChunkOverviews:
    """The internal overviews every chunk GeoTIFF of a run gets.

    Attributes:
        resampling: GDAL overview resampling, one of CHUNK_OVERVIEW_RESAMPLINGS.
        factors: 2, 4, … (powers of two).
    """

    resampling: str
    factors: tuple[int, ...]

    @property
    def tag(self) -> str:
        """The value of OVERVIEW_TAG in a chunk file that has these overviews."""
        return f"{self.resampling}:{','.join(map(str, self.factors))}"


class TileWriter:
    """Writes tiles into a tiled, sparse GeoTIFF with an internal mask as they arrive.

    The file covers the whole plan, or one chunk of it. Owned by one thread: GDAL dataset
    handles are not thread-safe.
    """

    def __init__(
        self,
        path: Path,
        plan: Plan,
        bands: BandInfo,
        chunk: Chunk | None = None,
        cache_bytes: int = WRITE_CACHE_BYTES,
    ):
        self.path = path
        self.plan = plan
        self.bands = bands
        self.row_off, self.col_off = (chunk.row_off, chunk.col_off) if chunk else (0, 0)
        height, width = (chunk.height, chunk.width) if chunk else (plan.height, plan.width)
        transform = plan.transform * Affine.translation(self.col_off, self.row_off)
        codec = dict(_codec.get() or {})
        if codec.get("predictor") == 2 and numpy.dtype(bands.dtype).kind == "f":
            codec["predictor"] = 3  # floating-point predictor
        self._env = rasterio.Env(GDAL_CACHEMAX=int(cache_bytes), GDAL_TIFF_INTERNAL_MASK="YES")
        self._env.__enter__()
        try:
            self._dst = rasterio.open(
                path,
                "w",
                driver="GTiff",
                width=width,
                height=height,
                count=bands.count,
                dtype=bands.dtype,
                crs=plan.grid.crs_text,
                transform=transform,
                tiled=True,
                blockxsize=plan.tilesize,
                blockysize=plan.tilesize,
                # uncompressed on local disk: reflectance compresses ~13 % with ZSTD level 1,
                # which cost about as much CPU per tile as the rest of the client side
                # (measured); compressed for an S3 run directory (S3_CHUNK_CODEC)
                sparse_ok=True,
                bigtiff="IF_SAFER",
                **codec,
            )
            for i, name in enumerate(bands.names, start=1):
                if name:
                    self._dst.set_band_description(i, name)
        except Exception:
            self._env.__exit__(None, None, None)
            raise

    def write(self, tile: tuple[int, int, int], data: TileData) -> None:
        """Write one tile's pixels and mask at its place."""
        row, col = self.plan.offset(tile)
        size = self.plan.tilesize
        window = Window(col - self.col_off, row - self.row_off, size, size)
        arr = data.data
        if arr.dtype != numpy.dtype(self.bands.dtype):
            if not numpy.can_cast(arr.dtype, self.bands.dtype, casting="same_kind"):
                raise OutputError(
                    f"tile {tile[2]}/{tile[0]}/{tile[1]} has dtype {arr.dtype}, the output is "
                    f"{self.bands.dtype}: the assets have incompatible data types"
                )
            arr = arr.astype(self.bands.dtype)
        if arr.shape != (self.bands.count, size, size):
            raise OutputError(
                f"tile {tile[2]}/{tile[0]}/{tile[1]} has shape {arr.shape}, expected "
                f"{(self.bands.count, size, size)}: the assets have different band counts"
            )
        self._dst.write(arr, window=window)
        self._dst.write_mask(numpy.where(data.valid, 255, 0).astype("uint8"), window=window)

    def add_overviews(self, overviews: ChunkOverviews) -> None:
        """Build internal overviews of the data and the mask (call after the last write).

        The blocks just written are still in GDAL's cache: cheaper than reopening the file.
        """
        _build_overviews(self._dst, overviews)

    def close(self) -> None:
        """Flush and close the GeoTIFF."""
        try:
            self._dst.close()
        finally:
            self._env.__exit__(None, None, None)

    def __enter__(self) -> TileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# GDAL's block cache while a chunk's overviews are built: with the run's 64 MB, building them
# for a 4096 x 4096 x 3 uint16 chunk raised peak RSS by 83 MB; with 8 MB by 21 MB, in the same
# time (measured). The cache size is process-wide; it is restored afterwards.
OVERVIEW_CACHE_BYTES = 8 * 2**20


def _build_overviews(ds: rasterio.io.DatasetWriter, overviews: ChunkOverviews) -> None:
    """Build a chunk's internal data and mask overviews; record OVERVIEW_TAG."""
    with rasterio.Env(GDAL_CACHEMAX=OVERVIEW_CACHE_BYTES):
        ds.build_overviews(list(overviews.factors), Resampling[overviews.resampling])
    ds.update_tags(**{OVERVIEW_TAG: overviews.tag})


def build_chunk_overviews(path: Path, overviews: ChunkOverviews) -> None:
    """Add internal overviews of the data and of the mask to a chunk GeoTIFF, in place."""
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK="YES"):
        with rasterio.open(path, "r+") as ds:
            _build_overviews(ds, overviews)


def ensure_chunk_overviews(
    paths: Sequence[Path], overviews: ChunkOverviews, workers: int | None = None
) -> int:
    """Give these overviews to the chunk files that lack them.

    Chunk files lack them when an earlier version, or a run with another resampling, wrote
    them before a resume. Each is copied, given overviews and renamed into place, so a chunk
    file stays complete at every moment.

    Returns:
        How many chunk files were rebuilt.
    """

    def lacks(path: Path) -> bool:
        with rasterio.open(path) as ds:
            return ds.tags().get(OVERVIEW_TAG) != overviews.tag

    def rebuild(path: Path) -> None:
        tmp = path.with_name(f"{path.stem}.overviews-{os.getpid()}.tif")
        try:
            shutil.copyfile(path, tmp)
            build_chunk_overviews(tmp, overviews)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    todo = [p for p in paths if lacks(p)]
    if todo:
        logger.info("building overviews of %d chunk files written without them", len(todo))
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            list(pool.map(rebuild, todo))
    return len(todo)
