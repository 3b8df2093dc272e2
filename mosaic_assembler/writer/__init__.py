"""mosaic_assembler.writer: stream tiles to a disk-backed GeoTIFF, finish a valid COG, atomically.

Tiles go straight into a tiled, sparse GeoTIFF on disk (blocks = tiles, so every tile write
completes whole blocks and GDAL's bounded block cache flushes them); nothing holds the whole
output in memory. Pixels without data are recorded in an internal per-dataset mask band, never
as a nodata value that could collide with real zeros. The COG is written by GDAL's COG driver
into a temporary file next to the output, validated with rio-cogeo, then renamed into place.

Overviews: GDAL's COG driver computes overviews in strips as wide as the image, so its memory
grows with the output's width. Instead, each chunk GeoTIFF gets internal overviews (data
and mask) when its worker writes it (`TileWriter.add_overviews`); the VRT over the chunks
exposes them as explicit overview levels (one VRT per level), and only the levels coarser than
the chunks' are computed by GDAL, from the mosaic of the chunks' coarsest level (1/factor² of
the output).
The COG driver then copies existing overviews block by block. This reproduces GDAL's own
overviews exactly for the resamplings in `CHUNK_OVERVIEW_RESAMPLINGS`; for the others GDAL
computes them from the whole image as before.

Dependency order: _chunkfile (chunk GeoTIFFs, ChunkOverviews) <-- _cog (COGOptions, profiles,
finalize_cog) <-- _vrt (VRTs over chunks); _output (the atomic OutputTarget) stands alone.
"""

from mosaic_assembler.writer._chunkfile import (
    CHUNK_OVERVIEW_RESAMPLINGS,
    DEFAULT_CACHE_BYTES,
    OVERVIEW_TAG,
    ChunkOverviews,
    TileWriter,
    ensure_chunk_overviews,
)
from mosaic_assembler.writer._cog import (
    COG_PROFILES,
    OVERVIEW_RESAMPLINGS,
    COGOptions,
    config_value,
    finalize_cog,
    pick_blocksize,
)
from mosaic_assembler.writer._output import OutputTarget
from mosaic_assembler.writer._vrt import write_vrt

__all__ = [
    "CHUNK_OVERVIEW_RESAMPLINGS",
    "COG_PROFILES",
    "DEFAULT_CACHE_BYTES",
    "OVERVIEW_RESAMPLINGS",
    "OVERVIEW_TAG",
    "COGOptions",
    "ChunkOverviews",
    "OutputTarget",
    "TileWriter",
    "config_value",
    "ensure_chunk_overviews",
    "finalize_cog",
    "pick_blocksize",
    "write_vrt",
]
