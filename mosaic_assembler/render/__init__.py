"""mosaic_assembler.render: static tile pyramids of a COG, to a folder or a PMTiles archive.

One interface (`TileSink`), two sinks (`FolderSink`, `PMTilesSink`) and their S3 versions
(`S3FolderSink`, `S3PMTilesSink`: an s3:// OUT), and an offline previewer page beside the
pyramid. Tiles are rendered by rio-tiler from the COG's overviews (local or s3:// COGs).

Dependency order: _spec <-- _sinks <-- _s3sinks <-- _previewer <-- _run.
"""

from mosaic_assembler.render._previewer import previewer_path, write_previewer
from mosaic_assembler.render._run import TilesResult, open_sink, render_tiles
from mosaic_assembler.render._sinks import FolderSink, PMTilesSink, TileSink
from mosaic_assembler.render._spec import (
    FORMATS,
    TILESIZES,
    TMS_IDS,
    RenderSpec,
    TileRenderer,
    TilesOptions,
    check_colormap,
    colormap_names,
    open_spec,
    parse_zooms,
    plan_pyramid,
)

__all__ = [
    "FORMATS",
    "TILESIZES",
    "TMS_IDS",
    "FolderSink",
    "PMTilesSink",
    "RenderSpec",
    "TileRenderer",
    "TileSink",
    "TilesOptions",
    "TilesResult",
    "check_colormap",
    "colormap_names",
    "open_sink",
    "open_spec",
    "parse_zooms",
    "plan_pyramid",
    "previewer_path",
    "render_tiles",
    "write_previewer",
]
