"""mosaic_assembler.results: what a run reports, as it goes (`Progress`) and at the end."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AssembleResult", "Progress"]


@dataclass(frozen=True)
class Progress:
    """Tiles finished so far; handed to the progress callback after every tile."""

    done: int
    empty: int
    failed: int
    total: int


@dataclass(frozen=True)
class AssembleResult:
    """What a run did.

    Attributes:
        path: the COG written (None for a dry run or an empty run).
        tiles_total: tiles the AOI covers.
        tiles_done: tiles written with data.
        tiles_empty: tiles with no data (no asset, or all pixels masked).
        tiles_failed: tiles that could not be read (only with allow_partial).
        chunks: chunks in the plan; chunks_resumed: of those, found finished in the run
            directory and not computed again.
        outputs: the split COGs (with split_zoom), else empty.
        crs: the output's CRS; tms: its TileMatrixSet id (`zoom` is its level).
    """

    path: Path | str | None  # str: an s3:// URL
    tiles_total: int
    tiles_done: int
    tiles_empty: int
    tiles_failed: int
    failed_tiles: tuple[tuple[int, int, int], ...]
    width: int
    height: int
    count: int
    dtype: str
    zoom: int
    tilesize: int
    bounds: tuple[float, float, float, float]
    estimated_bytes: int
    size_bytes: int
    seconds: Mapping[str, float]
    dry_run: bool = False
    chunks: int = 0
    chunks_resumed: int = 0
    run_dir: Path | str | None = None
    outputs: tuple[Path | str, ...] = ()
    crs: str = "EPSG:3857"
    tms: str = "WebMercatorQuad"

    def to_json(self) -> str:
        """The result as a JSON object (paths as strings)."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path) if self.path else None
        d["failed_tiles"] = [f"{z}/{x}/{y}" for x, y, z in self.failed_tiles]
        d["run_dir"] = str(self.run_dir) if self.run_dir else None
        d["outputs"] = [str(p) for p in self.outputs]
        return json.dumps(d)
