"""VRTs over chunk files, exposing the chunks' internal overviews as explicit levels.

GDAL's COG driver computes overviews in strips as wide as the image, so its memory grows with
the output's width. Instead the VRT over the chunks exposes their internal overviews as
explicit overview levels (one VRT per level), and only the levels coarser than the chunks' are
computed by GDAL, from the mosaic of the chunks' coarsest level (1/factor² of the output).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
import rasterio.shutil
from affine import Affine

from mosaic_assembler.errors import OutputError
from mosaic_assembler.grid import Chunk, Plan
from mosaic_assembler.types import GDAL_DTYPES, BandInfo
from mosaic_assembler.writer._chunkfile import ChunkOverviews
from mosaic_assembler.writer._cog import COPY_CACHE_BYTES, COGOptions, _levels, config_value

#: (file, src x, src y, width, height, dst x, dst y) of one VRT source, in pixels.
_Source = tuple[Path, int, int, int, int, int, int]


def _simple_source(band: str, src: _Source, level: int | None) -> str:
    """One SimpleSource element reading `band` of a source (at overview `level`)."""
    f, sx, sy, w, h, dx, dy = src
    open_options = (
        f'<OpenOptions><OOI key="OVERVIEW_LEVEL">{level}</OOI></OpenOptions>'
        if level is not None
        else ""
    )
    return (
        f'<SimpleSource><SourceFilename relativeToVRT="0">'
        f"{escape(str(Path(f).resolve()))}</SourceFilename>{open_options}"
        f"<SourceBand>{band}</SourceBand>"
        f'<SrcRect xOff="{sx}" yOff="{sy}" xSize="{w}" ySize="{h}"/>'
        f'<DstRect xOff="{dx}" yOff="{dy}" xSize="{w}" ySize="{h}"/></SimpleSource>'
    )


def _overview(vrt: Path, band: int) -> str:
    """One explicit Overview element: `band` of another VRT."""
    return (
        f'<Overview><SourceFilename relativeToVRT="0">{escape(str(vrt.resolve()))}'
        f"</SourceFilename><SourceBand>{band}</SourceBand></Overview>"
    )


def _vrt_xml(
    width: int,
    height: int,
    transform: Affine,
    bands: BandInfo,
    sources: list[_Source],
    *,
    level: int | None = None,
    mask_only: bool = False,
    overviews: Sequence[tuple[Path, Path]] = (),
    srs: str = "",
) -> str:
    """A VRTDataset mosaicking `sources` (data bands and their mask, or only the mask).

    Args:
        width: the VRT's width (px).
        height: the VRT's height (px).
        transform: the VRT's geotransform (in `srs`).
        bands: band count, dtype and names.
        sources: where each source file goes in the VRT.
        level: read the sources' overview `level` (GDAL's OVERVIEW_LEVEL open option).
        mask_only: one Byte band made of the sources' masks (the overview of a mask band).
        overviews: (data VRT, mask VRT) per overview level, finest first, exposed as the
            bands' and the mask band's explicit overviews.
        srs: the VRT's CRS (the grid's, for the overview VRTs too).
    """
    t = transform
    lines = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"<SRS>{escape(srs)}</SRS>",
        f"<GeoTransform>{t.c!r}, {t.a!r}, 0.0, {t.f!r}, 0.0, {t.e!r}</GeoTransform>",
    ]
    masks = [_simple_source("mask,1", src, level) for src in sources]
    if mask_only:
        lines.append('<VRTRasterBand dataType="Byte" band="1">')
        lines.extend(masks)
        lines.append("</VRTRasterBand>")
    else:
        for b in range(1, bands.count + 1):
            name = bands.names[b - 1] if b <= len(bands.names) else ""
            lines.append(f'<VRTRasterBand dataType="{GDAL_DTYPES[bands.dtype]}" band="{b}">')
            if name:
                lines.append(f"<Description>{escape(name)}</Description>")
            lines.extend(_simple_source(str(b), src, level) for src in sources)
            lines.extend(_overview(data, b) for data, _ in overviews)
            lines.append("</VRTRasterBand>")
        lines.append('<MaskBand><VRTRasterBand dataType="Byte">')
        lines.extend(masks)
        lines.extend(_overview(mask, 1) for _, mask in overviews)
        lines.append("</VRTRasterBand></MaskBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines)


def write_vrt(
    path: Path,
    plan: Plan,
    parts: list[tuple[Chunk, Path]],
    bands: BandInfo,
    window: tuple[int, int, int, int] | None = None,
    *,
    overviews: ChunkOverviews | None = None,
    cog: COGOptions | None = None,
    cache_bytes: int = COPY_CACHE_BYTES,
) -> Path:
    """A VRT mosaicking chunk files (and their masks) over the plan, or a window of it.

    With `overviews` (which every chunk file has, see `ensure_chunk_overviews`), the VRT also
    exposes the overview pyramid GDAL's COG driver would make for `cog` (OVERVIEWS=AUTO): the
    levels the chunks have come from their internal overviews (a VRT per level, next to
    `path`); the coarser ones are computed by GDAL from the coarsest of those, into a temporary
    GeoTIFF next to `path`. Memory stays bounded by a chunk's size, not the output's.

    Args:
        path: VRT to write.
        plan: the output grid.
        parts: (chunk, chunk GeoTIFF) pairs; chunks do not overlap.
        bands: band count, dtype and names.
        window: (row_off, col_off, height, width) in output pixels; None for the whole plan.
        overviews: the chunk files' internal overviews; None to expose no overviews.
        cog: the COG's options (block size, resampling, GDAL config); needed with overviews.
        cache_bytes: GDAL block cache while computing the coarse levels.

    Returns:
        path.
    """
    row0, col0, height, width = window or (0, 0, plan.height, plan.width)
    transform = plan.transform * Affine.translation(col0, row0)
    sources = _window_sources(parts, (row0, col0, height, width))
    srs = plan.grid.crs_text
    levels: list[tuple[Path, Path]] = []
    if overviews is not None:
        assert cog is not None, "overviews need the COG options"
        levels = _overview_vrts(
            path, width, height, transform, bands, sources, overviews, cog, cache_bytes, srs
        )
    path.write_text(_vrt_xml(width, height, transform, bands, sources, overviews=levels, srs=srs))
    return path


def _window_sources(
    parts: list[tuple[Chunk, Path]], window: tuple[int, int, int, int]
) -> list[_Source]:
    """Where each chunk file overlapping `window` (row_off, col_off, height, width) goes in it."""
    row0, col0, height, width = window
    sources: list[_Source] = []
    for chunk, file in parts:
        r0, c0 = max(chunk.row_off, row0), max(chunk.col_off, col0)
        r1 = min(chunk.row_off + chunk.height, row0 + height)
        c1 = min(chunk.col_off + chunk.width, col0 + width)
        if r1 <= r0 or c1 <= c0:
            continue
        sources.append(
            (
                Path(file),
                c0 - chunk.col_off,
                r0 - chunk.row_off,
                c1 - c0,
                r1 - r0,
                c0 - col0,
                r0 - row0,
            )
        )
    return sources


def _overview_vrts(
    path: Path,
    width: int,
    height: int,
    transform: Affine,
    bands: BandInfo,
    sources: list[_Source],
    overviews: ChunkOverviews,
    cog: COGOptions,
    cache_bytes: int,
    srs: str,
) -> list[tuple[Path, Path]]:
    """(data VRT, mask VRT) of each overview level the COG driver would make, finest first."""
    block = int(cog.creation_kwargs(width, height)["BLOCKSIZE"])
    wanted = len(_levels(width, height, block)) - 1
    levels: list[tuple[Path, Path]] = []
    for i, factor in enumerate(overviews.factors[:wanted]):
        if (
            any(v % factor for src in sources for v in src[1:]) or width % factor or height % factor
        ):  # cannot happen: offsets and sizes are whole tiles
            raise OutputError(f"chunk offsets are not multiples of the overview factor {factor}")
        scaled: list[_Source] = [
            (f, sx // factor, sy // factor, w // factor, h // factor, dx // factor, dy // factor)
            for f, sx, sy, w, h, dx, dy in sources
        ]
        t = transform * Affine.scale(factor)
        data, mask = (path.with_name(f"{path.stem}.ovr{factor}{s}.vrt") for s in ("", ".mask"))
        w, h = width // factor, height // factor
        data.write_text(_vrt_xml(w, h, t, bands, scaled, level=i, srs=srs))
        mask.write_text(_vrt_xml(w, h, t, bands, scaled, level=i, mask_only=True, srs=srs))
        levels.append((data, mask))
    if wanted <= len(levels):
        return levels
    coarse = _coarse_vrts(
        path,
        (width, height),
        transform,
        bands,
        levels[-1][0],
        wanted - len(levels),
        cog,
        cache_bytes,
        srs,
    )
    return levels + coarse


def _coarse_vrts(
    path: Path,
    size: tuple[int, int],
    transform: Affine,
    bands: BandInfo,
    coarsest: Path,
    count: int,
    cog: COGOptions,
    cache_bytes: int,
    srs: str,
) -> list[tuple[Path, Path]]:
    """Up to `count` levels coarser than the chunks': GDAL computes them from `coarsest`.

    `coarsest` is the VRT of the coarsest chunk level (a 1/factor² mosaic); the COG driver
    computes them into a temporary GeoTIFF next to `path`, exactly as it would from its own
    copy of that level.
    """
    width, height = size
    block = int(cog.creation_kwargs(width, height)["BLOCKSIZE"])
    top = path.with_name(f"{path.stem}.top.tif")
    config = {
        "GDAL_CACHEMAX": int(cache_bytes),
        "GDAL_TIFF_INTERNAL_MASK": "YES",
        **{k.upper(): config_value(v) for k, v in cog.config.items()},
    }
    try:
        with rasterio.Env(**config):
            rasterio.shutil.copy(
                str(coarsest),
                top,
                driver="COG",
                BLOCKSIZE=str(block),
                COMPRESS="NONE",
                BIGTIFF="IF_SAFER",
                NUM_THREADS="ALL_CPUS",
                OVERVIEW_RESAMPLING=cog.resampling.upper(),
            )
    except rasterio.errors.RasterioError as e:
        raise OutputError(f"GDAL could not compute the coarse overviews: {e}") from e
    with rasterio.open(top) as ds:
        n = len(ds.overviews(1))
    levels: list[tuple[Path, Path]] = []
    for j in range(min(n, count)):
        with rasterio.open(top, overview_level=j) as ds:
            w, h = ds.width, ds.height
        t = transform * Affine.scale(width / w, height / h)
        data, mask = (path.with_name(f"{path.stem}.top{j}{s}.vrt") for s in ("", ".mask"))
        src: list[_Source] = [(top, 0, 0, w, h, 0, 0)]
        data.write_text(_vrt_xml(w, h, t, bands, src, level=j, srs=srs))
        mask.write_text(_vrt_xml(w, h, t, bands, src, level=j, mask_only=True, srs=srs))
        levels.append((data, mask))
    return levels
