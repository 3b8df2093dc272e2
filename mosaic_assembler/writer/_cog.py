"""COG finalize: creation options and profiles, block size, GDAL's COG driver, validation."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import rasterio
import rasterio.shutil
from rio_cogeo.cogeo import cog_validate

from mosaic_assembler.errors import ConfigError, OutputError
from mosaic_assembler.types import BandInfo
from mosaic_assembler.writer._chunkfile import (
    CHUNK_OVERVIEW_RESAMPLINGS,
    DEFAULT_CACHE_BYTES,
    MIN_CHUNK_OVERVIEW,
    ChunkOverviews,
)

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

#: GDAL block cache while the COG driver copies existing overviews: it reads every source block
#: once, so a larger cache only holds blocks never read again (measured: finalizing a
#: 32,768-px-wide output peaks 78 MB higher with 64 MB than with 16 MB, and is no faster).
COPY_CACHE_BYTES = 16 * 1024 * 1024

#: `--co` names under which the COG's overviews are not GDAL's default pyramid of the source
#: (or the grid changes): per-chunk overviews are then not used.
_NON_DEFAULT_PYRAMID = frozenset(
    {
        "OVERVIEWS",
        "OVERVIEW_COUNT",
        "TILING_SCHEME",
        "TARGET_SRS",
        "RES",
        "EXTENT",
        "ALIGNED_LEVELS",
        "ZOOM_LEVEL",
        "ZOOM_LEVEL_STRATEGY",
        "ADD_ALPHA",
    }
)


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
        check_creation_options(self.creation_options)
        for name, value in self.config.items():
            if name.upper() == "GDAL_CACHEMAX" and not str(value).isdigit():
                raise ConfigError(
                    f"`gdal_config` GDAL_CACHEMAX={value!r}: give a whole number (MB, or bytes "
                    "above 100000)"
                )

    def check_bands(self, bands: BandInfo) -> None:
        """Refuse a lossy 8-bit profile for data it would corrupt."""
        if self.profile in _LOSSY_8BIT:
            if bands.dtype != "uint8":
                raise ConfigError(
                    f"`cog_profile` {self.profile} needs uint8 data, the output is {bands.dtype}; "
                    "use deflate, zstd or lzw for analytic data"
                )
            allowed = (1, 3) if self.profile == "jpeg" else (3, 4)
            if bands.count not in allowed:
                raise ConfigError(
                    f"`cog_profile` {self.profile} needs {' or '.join(map(str, allowed))} bands, "
                    f"the output has {bands.count}"
                )

    @property
    def resampling(self) -> str:
        """The overview resampling GDAL will use (a `--co OVERVIEW_RESAMPLING=` wins)."""
        co = {k.upper(): str(v) for k, v in self.creation_options.items()}
        return co.get("OVERVIEW_RESAMPLING", self.overview_resampling).lower()

    def chunk_overviews(self, tilesize: int, chunk_size: int) -> ChunkOverviews | None:
        """The overviews chunk files of `chunk_size` px get, or None (GDAL computes them all).

        None when the resampling is not one of CHUNK_OVERVIEW_RESAMPLINGS, when `--co` asks for
        other overviews or another grid, or when a chunk is too small to have overviews.
        """
        if self.resampling not in CHUNK_OVERVIEW_RESAMPLINGS:
            return None
        if _NON_DEFAULT_PYRAMID & {k.upper() for k in self.creation_options}:
            return None
        factors: list[int] = []
        f = 2
        while f <= tilesize and chunk_size // f >= MIN_CHUNK_OVERVIEW:
            factors.append(f)
            f *= 2
        return ChunkOverviews(self.resampling, tuple(factors)) if factors else None

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


def config_value(value: object) -> str | int:
    """GDAL config values as rasterio.Env wants them (it requires ints for some keys)."""
    text = str(value)
    return int(text) if text.isdigit() else text


def finalize_cog(
    src_path: Path,
    dst_path: Path,
    options: COGOptions,
    cache_bytes: int | None = None,
    existing_overviews: bool = False,
    chunk_columns: int | None = None,
) -> None:
    """Translate the streamed GeoTIFF (or VRT of chunks) into a COG and validate it.

    Args:
        src_path: the GeoTIFF or VRT to translate.
        dst_path: the COG to write.
        options: profile, creation options and GDAL config.
        cache_bytes: GDAL block cache; default COPY_CACHE_BYTES with existing overviews,
            else DEFAULT_CACHE_BYTES (GDAL computes overviews through it).
        existing_overviews: the source exposes the overviews to copy (`write_vrt` with
            overviews); otherwise GDAL computes them from the full resolution.
        chunk_columns: chunk files across the VRT. With existing overviews, the copy reads one
            row of blocks at a time, so GDAL's pool of open chunk files (each open file holds
            ~1 MB) is kept to what a row needs (data and mask of each column) instead of
            GDAL's default of 100: finalize peak RSS of a 32,768 x 16,384 x 3 uint16 output
            378 -> 243 MB, same time (measured).

    Raises:
        OutputError: GDAL failed to write, or the result is not a valid COG.
    """
    if cache_bytes is None:
        cache_bytes = COPY_CACHE_BYTES if existing_overviews else DEFAULT_CACHE_BYTES
    config = {
        "GDAL_CACHEMAX": int(cache_bytes),
        "GDAL_NUM_THREADS": "ALL_CPUS",
        "GDAL_TIFF_INTERNAL_MASK": "YES",
        **(
            {"GDAL_MAX_DATASET_POOL_SIZE": max(20, 2 * chunk_columns + 4)}
            if existing_overviews and chunk_columns
            else {}
        ),
        **{k.upper(): config_value(v) for k, v in options.config.items()},
    }
    try:
        with rasterio.Env(**config):
            with rasterio.open(src_path) as src:
                kwargs = options.creation_kwargs(src.width, src.height)
                if not existing_overviews and not any(
                    k.upper() == "OVERVIEWS" for k in options.creation_options
                ):
                    kwargs["OVERVIEWS"] = "IGNORE_EXISTING"
                rasterio.shutil.copy(src, dst_path, driver="COG", **kwargs)
    except rasterio.errors.RasterioError as e:
        raise OutputError(f"GDAL could not write the COG: {e}") from e
    valid, errors, _warnings = cog_validate(str(dst_path), quiet=True)
    if not valid or errors:
        raise OutputError(f"the written file is not a valid COG: {'; '.join(errors)}")


def _libgdal() -> ctypes.CDLL | None:
    """The GDAL library rasterio loaded (its wheel bundles one), or None if not found.

    Other wheels bundle their own GDAL builds with other drivers (pyogrio's has a COG driver
    without ZSTD or WEBP): rasterio's copy comes first, then one mapped from rasterio's
    directory, and only then any libgdal this process has mapped or the system's.
    """
    import rasterio

    here = os.path.dirname(rasterio.__file__)
    candidates = []
    for libs in ("../rasterio.libs", ".dylibs"):
        candidates += sorted(glob.glob(os.path.join(here, libs, "libgdal*")))
    try:
        with open("/proc/self/maps") as maps:
            mapped = [line.split()[-1] for line in maps if "libgdal" in line]
    except OSError:
        mapped = []
    root = os.path.dirname(here)
    candidates += sorted(set(mapped), key=lambda p: not p.startswith(root + os.sep + "rasterio"))
    candidates += [p for p in (ctypes.util.find_library("gdal"),) if p]
    for path in candidates:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@functools.lru_cache(maxsize=1)
def cog_creation_options() -> dict[str, ET.Element] | None:
    """The COG driver's creation options (GDAL's DMD_CREATIONOPTIONLIST) by name, or None.

    None when the GDAL library cannot be reached through ctypes: `--co` is then checked by
    GDAL itself when the COG is written.
    """
    lib = _libgdal()
    if lib is None:
        return None
    try:
        lib.GDALGetDriverByName.restype = ctypes.c_void_p
        lib.GDALGetDriverByName.argtypes = [ctypes.c_char_p]
        lib.GDALGetMetadataItem.restype = ctypes.c_char_p
        lib.GDALGetMetadataItem.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        with rasterio.Env():  # registers the drivers
            driver = lib.GDALGetDriverByName(b"COG")
            xml = lib.GDALGetMetadataItem(driver, b"DMD_CREATIONOPTIONLIST", None)
        root = ET.fromstring(xml.decode()) if driver and xml else None
    except (AttributeError, ET.ParseError, UnicodeDecodeError):
        return None
    if root is None:
        return None
    return {o.get("name", "").upper(): o for o in root.iter("Option")}


_BOOLEANS = {"YES", "NO", "TRUE", "FALSE", "ON", "OFF", "1", "0"}


def _bad_value(option: ET.Element, value: str) -> str | None:
    """Why `value` is not valid for a creation option, or None."""
    kind = option.get("type", "string")
    if kind == "string-select":
        allowed = [v.text or "" for v in option.iter("Value")]
        allowed += [v.get("alias", "") for v in option.iter("Value") if v.get("alias")]
        if value.upper() not in {a.upper() for a in allowed}:
            return f"valid: {', '.join(v.text or '' for v in option.iter('Value'))}"
    elif kind == "boolean" and value.upper() not in _BOOLEANS:
        return "valid: YES, NO"
    elif kind in ("int", "integer", "float"):
        try:
            number = int(value) if kind != "float" else float(value)
        except ValueError:
            return f"it must be {'an integer' if kind != 'float' else 'a number'}"
        low, high = option.get("min"), option.get("max")
        if low is not None and number < float(low):
            return f"it must be at least {low}"
        if high is not None and number > float(high):
            return f"it must be at most {high}"
    return None


def check_creation_options(creation_options: Mapping[str, str]) -> None:
    """Refuse `--co` names and values GDAL's COG driver does not accept.

    Raises:
        ConfigError: an unknown name, a value outside the option's list or range, or a
            BLOCKSIZE that is not a multiple of 16 (TIFF tiles need one).
    """
    if not creation_options:
        return
    known = cog_creation_options()
    for name, raw in creation_options.items():
        key, value = name.upper(), str(raw)
        if known is not None:
            if key not in known:
                raise ConfigError(
                    f"`creation_options` {name}: the GDAL COG driver has no creation option {key!r}"
                )
            why = _bad_value(known[key], value)
            if why is not None:
                raise ConfigError(f"`creation_options` {name}={value}: not a valid value ({why})")
        if key == "BLOCKSIZE" and (not value.isdigit() or int(value) % 16 or int(value) < 16):
            raise ConfigError(
                f"`creation_options` {name}={value}: the block size must be a multiple of 16"
            )
