"""mosaic_assembler.chips: per-plot, per-date image chips and their values (TimeSync).

For each point of POINTS and each observation (an item, or the items of one solar day), a
chip in the source's native grid centred on the point's pixel (GeoTIFF, source dtype, with
its mask), optional 8-bit composites (PNG) and one row of values.csv with the centre
pixel's values. Reads are shared: the chips of neighbouring points are slices of one read.
A ledger in OUT_DIR lets a rerun skip the finished points. OUT_DIR may be an s3:// prefix
(`_remote`: batches written in local scratch and uploaded, the ledger as S3 objects).

Dependency order: _points, _composites <- _spec, _items <- _reading <- _warp, _outputs
<- _remote <- _extract <- _options <- _run <- chips.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mosaic_assembler.chips._composites import (
    COMPOSITES,
    RESCALES,
    Composite,
    parse_composite,
    stretch,
)
from mosaic_assembler.chips._items import GROUP_BY, solar_date
from mosaic_assembler.chips._options import ChipsOptions, build_chips_options
from mosaic_assembler.chips._points import Point, PointSet, load_points
from mosaic_assembler.chips._reading import REGION_PX, ReadStats
from mosaic_assembler.chips._run import ChipsResult, run_chips
from mosaic_assembler.results import Progress

__all__ = [
    "COMPOSITES",
    "GROUP_BY",
    "REGION_PX",
    "RESCALES",
    "ChipsOptions",
    "ChipsResult",
    "Composite",
    "Point",
    "PointSet",
    "ReadStats",
    "build_chips_options",
    "extract_chips",
    "load_points",
    "parse_composite",
    "run_chips",
    "solar_date",
    "stretch",
]


def extract_chips(
    points: str | Path,
    out_dir: str | Path,
    *,
    options: ChipsOptions | None = None,
    progress: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> ChipsResult:
    """Extract chips, composites and values.csv for every point × observation.

    Args:
        points: CSV (id column(s), x, y) or GeoJSON points.
        out_dir: the output directory; a rerun skips the points its ledger lists as done.
        options: a ChipsOptions (then no other keyword argument), or
        progress: called with a `Progress` of points after each batch.
        **kwargs: `ChipsOptions` fields, or as the CLI names them: `items`, `stac` (URL)
            with `collections` …, `assets` ("a,b"), `size`, `id_fields`, `points_crs`,
            `mask_band`, `mask_bits`, `group_by`, `composites`, `rescale`, `batch_points`,
            `concurrency`, `dask_scheduler`, `dask_local`, `gdal_config`, `restart`.

    Returns:
        The counts, the failures and the read counters.

    Raises:
        ConfigError: bad options or points; SourceError: unusable items.

    Examples:
        >>> from mosaic_assembler.chips import extract_chips
        >>> r = extract_chips("plots.csv", "out", items="items.json",
        ...                   assets="blue,green,red,nir08", mask_band="qa_pixel",
        ...                   mask_bits="landsat", composites=("b432",), rescale="c1")
    """
    from mosaic_assembler.errors import ConfigError

    if options is not None and kwargs:
        raise ConfigError("give a ChipsOptions or keyword arguments, not both")
    opts = options or build_chips_options(points, out_dir, **kwargs)
    return run_chips(opts, progress)
