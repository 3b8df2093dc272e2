"""mosaic_assembler.writer: stream tiles to a disk-backed GeoTIFF, finish a valid COG, atomically.

Tiles go straight into a tiled, sparse GeoTIFF on disk (blocks = tiles, so every tile write
completes whole blocks and GDAL's bounded block cache flushes them); nothing holds the whole
output in memory. Pixels without data are recorded in an internal per-dataset mask band, never
as a nodata value that could collide with real zeros. The COG is written by GDAL's COG driver
into a temporary file next to the output, validated with rio-cogeo, then renamed into place.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import numpy
import rasterio
import rasterio.shutil
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from mosaic_assembler.errors import ConfigError, OutputError
from affine import Affine

from mosaic_assembler.grid import Chunk, Plan
from mosaic_assembler.tilers import BandInfo, TileData

logger = logging.getLogger(__name__)

#: COG creation options per profile name (rio-cogeo's profile names, GDAL COG driver options).
COG_PROFILES: dict[str, dict[str, str]] = {
    "deflate": {"COMPRESS": "DEFLATE", "PREDICTOR": "YES"},
    "zstd": {"COMPRESS": "ZSTD", "PREDICTOR": "YES"},
    "lzw": {"COMPRESS": "LZW", "PREDICTOR": "YES"},
    "webp": {"COMPRESS": "WEBP", "QUALITY": "90"},
    "jpeg": {"COMPRESS": "JPEG", "QUALITY": "90"},
}
_LOSSY_8BIT = {"webp", "jpeg"}
OVERVIEW_RESAMPLINGS = ("nearest", "average", "bilinear", "cubic", "mode", "rms")

#: GDAL block cache while streaming and finishing (bytes); bounded so memory does not grow
#: with the output (GDAL's default is 5 % of RAM).
DEFAULT_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class COGOptions:
    """How the final COG is written.

    Attributes:
        profile: one of COG_PROFILES.
        creation_options: extra `--co NAME=VALUE`, override the profile's.
        config: extra GDAL config (`--config NAME=VALUE`) for the whole write.
        overview_resampling: resampling for overviews.
        blocksize: internal tile size of the COG.
    """

    profile: str = "deflate"
    creation_options: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, str] = field(default_factory=dict)
    overview_resampling: str = "nearest"
    blocksize: int = 512

    def __post_init__(self) -> None:
        if self.profile not in COG_PROFILES:
            raise ConfigError(
                f"unknown COG profile {self.profile!r}; valid: {', '.join(COG_PROFILES)}"
            )
        if self.overview_resampling not in OVERVIEW_RESAMPLINGS:
            raise ConfigError(
                f"unknown overview resampling {self.overview_resampling!r}; valid: "
                + ", ".join(OVERVIEW_RESAMPLINGS)
            )

    def check_bands(self, bands: BandInfo) -> None:
        """Refuse a lossy 8-bit profile for data it would corrupt."""
        if self.profile in _LOSSY_8BIT:
            if bands.dtype != "uint8":
                raise ConfigError(
                    f"--cog-profile {self.profile} needs uint8 data, the output is {bands.dtype}; "
                    "use deflate, zstd or lzw for analytic data"
                )
            allowed = (1, 3) if self.profile == "jpeg" else (3, 4)
            if bands.count not in allowed:
                raise ConfigError(
                    f"--cog-profile {self.profile} needs {' or '.join(map(str, allowed))} bands, "
                    f"the output has {bands.count}"
                )

    def creation_kwargs(self, width: int, height: int) -> dict[str, str]:
        """GDAL COG driver creation options for a raster of this size."""
        opts = {
            "BLOCKSIZE": str(pick_blocksize(width, height, self.blocksize)),
            "BIGTIFF": "IF_SAFER",
            "NUM_THREADS": "ALL_CPUS",
            "OVERVIEWS": "AUTO",
            "OVERVIEW_RESAMPLING": self.overview_resampling.upper(),
            **COG_PROFILES[self.profile],
        }
        opts.update({k.upper(): str(v) for k, v in self.creation_options.items()})
        return opts


def _levels(width: int, height: int, block: int) -> list[tuple[int, int]]:
    """Full resolution and the overview sizes GDAL's COG driver makes with OVERVIEWS=AUTO."""
    levels = [(width, height)]
    while width > block or height > block:
        width, height = -(-width // 2), -(-height // 2)
        levels.append((width, height))
    return levels


def pick_blocksize(width: int, height: int, preferred: int = 512) -> int:
    """A COG block size that rio-cogeo's validator accepts for this raster.

    Notes:
        `cog_validate` reports a level wider or taller than 512 px whose block width equals its
        width as "not tiled", even when it is tiled (e.g. a 512 x 768 overview in 512-px
        blocks). Such levels appear for some shapes with any one block size, so try the
        preferred size first, then others.
    """
    for block in (preferred, 256, 1024, 128, 2048):
        if not any((w > 512 or h > 512) and w == block for w, h in _levels(width, height, block)):
            return block
    return preferred


class OutputTarget:
    """An output path that appears atomically: work happens in a sibling temp directory.

    The output is a file, or (with `directory`) a directory of files (split outputs).

    Raises:
        OutputError: on enter, when the output exists (and `overwrite` is False), its
            directory does not exist, or it is not writable.
    """

    def __init__(self, path: str | Path, overwrite: bool = False, directory: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.directory = directory
        self.workdir: Path | None = None

    def check(self) -> None:
        """Check the output can be written, without creating anything."""
        p = self.path
        if p.is_dir() and not self.directory:
            raise OutputError(f"output {str(p)!r} is a directory")
        if p.exists() and not p.is_dir() and self.directory:
            raise OutputError(f"output {str(p)!r} is a file; split outputs need a directory")
        if p.exists() and not self.overwrite:
            raise OutputError(f"output {str(p)!r} exists; use --overwrite to replace it")
        parent = p.absolute().parent
        if not parent.is_dir():
            raise OutputError(f"output directory {str(parent)!r} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"output directory {str(parent)!r} is not writable")
        if p.exists() and not os.access(p, os.W_OK):
            raise OutputError(f"output {str(p)!r} is not writable")

    def __enter__(self) -> OutputTarget:
        self.check()
        try:
            self.workdir = Path(
                tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=self.path.absolute().parent)
            )
        except OSError as e:
            raise OutputError(f"cannot create a temporary directory next to {str(self.path)!r}: {e}") from e
        return self

    def commit(self, finished: Path) -> None:
        """Move a finished file into place (atomic on one filesystem)."""
        if self.path.exists() and not self.overwrite:
            raise OutputError(f"output {str(self.path)!r} appeared during the run; not replaced")
        if self.directory and self.path.exists():
            assert self.workdir is not None
            old = self.workdir / "previous"
            os.replace(self.path, old)  # moved aside, removed with the work directory
        os.replace(finished, self.path)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


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
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        self.path = path
        self.plan = plan
        self.bands = bands
        self.row_off, self.col_off = (chunk.row_off, chunk.col_off) if chunk else (0, 0)
        height, width = (chunk.height, chunk.width) if chunk else (plan.height, plan.width)
        transform = plan.transform * Affine.translation(self.col_off, self.row_off)
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
                crs="EPSG:3857",
                transform=transform,
                tiled=True,
                blockxsize=plan.tilesize,
                blockysize=plan.tilesize,
                # uncompressed: reflectance compresses ~13 % with ZSTD level 1, which cost
                # about as much CPU per tile as the rest of the client side (measured)
                sparse_ok=True,
                bigtiff="IF_SAFER",
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


def write_vrt(
    path: Path,
    plan: Plan,
    parts: list[tuple[Chunk, Path]],
    bands: BandInfo,
    window: tuple[int, int, int, int] | None = None,
) -> Path:
    """A VRT mosaicking chunk files (and their masks) over the plan, or a window of it.

    Args:
        path: VRT to write.
        plan: the output grid.
        parts: (chunk, chunk GeoTIFF) pairs; chunks do not overlap.
        bands: band count, dtype and names.
        window: (row_off, col_off, height, width) in output pixels; None for the whole plan.

    Returns:
        path.
    """
    from xml.sax.saxutils import escape

    row0, col0, height, width = window or (0, 0, plan.height, plan.width)
    t = plan.transform * Affine.translation(col0, row0)
    gdal_dtype = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16",
                  "uint32": "UInt32", "int32": "Int32", "uint64": "UInt64", "int64": "Int64",
                  "float32": "Float32", "float64": "Float64"}[bands.dtype]
    sources: list[tuple[str, int, int, int, int, int, int]] = []
    for chunk, file in parts:
        r0, c0 = max(chunk.row_off, row0), max(chunk.col_off, col0)
        r1 = min(chunk.row_off + chunk.height, row0 + height)
        c1 = min(chunk.col_off + chunk.width, col0 + width)
        if r1 <= r0 or c1 <= c0:
            continue
        sources.append((escape(str(Path(file).resolve())), c0 - chunk.col_off,
                        r0 - chunk.row_off, c1 - c0, r1 - r0, c0 - col0, r0 - row0))

    def simple(band: str, src: tuple) -> str:
        f, sx, sy, w, h, dx, dy = src
        return (f'<SimpleSource><SourceFilename relativeToVRT="0">{f}</SourceFilename>'
                f"<SourceBand>{band}</SourceBand>"
                f'<SrcRect xOff="{sx}" yOff="{sy}" xSize="{w}" ySize="{h}"/>'
                f'<DstRect xOff="{dx}" yOff="{dy}" xSize="{w}" ySize="{h}"/></SimpleSource>')

    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        "<SRS>EPSG:3857</SRS>",
        f"<GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>",
    ]
    for b in range(1, bands.count + 1):
        name = bands.names[b - 1] if b <= len(bands.names) else ""
        lines.append(f'<VRTRasterBand dataType="{gdal_dtype}" band="{b}">')
        if name:
            lines.append(f"<Description>{escape(name)}</Description>")
        lines.extend(simple(str(b), src) for src in sources)
        lines.append("</VRTRasterBand>")
    lines.append('<MaskBand><VRTRasterBand dataType="Byte">')
    lines.extend(simple("mask,1", src) for src in sources)
    lines.append("</VRTRasterBand></MaskBand>")
    lines.append("</VRTDataset>")
    path.write_text("\n".join(lines))
    return path


def config_value(value: object) -> str | int:
    """GDAL config values as rasterio.Env wants them (it requires ints for some keys)."""
    text = str(value)
    return int(text) if text.isdigit() else text


def finalize_cog(
    src_path: Path,
    dst_path: Path,
    options: COGOptions,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> None:
    """Translate the streamed GeoTIFF into a COG and validate it.

    Raises:
        OutputError: GDAL failed to write, or the result is not a valid COG.
    """
    config = {
        "GDAL_CACHEMAX": int(cache_bytes),
        "GDAL_NUM_THREADS": "ALL_CPUS",
        "GDAL_TIFF_INTERNAL_MASK": "YES",
        **{k.upper(): config_value(v) for k, v in options.config.items()},
    }
    try:
        with rasterio.Env(**config):
            with rasterio.open(src_path) as src:
                kwargs = options.creation_kwargs(src.width, src.height)
                rasterio.shutil.copy(src, dst_path, driver="COG", **kwargs)
    except rasterio.errors.RasterioError as e:
        raise OutputError(f"GDAL could not write the COG: {e}") from e
    valid, errors, _warnings = cog_validate(str(dst_path), quiet=True)
    if not valid or errors:
        raise OutputError(f"the written file is not a valid COG: {'; '.join(errors)}")
