"""`ChipsOptions`: one chips run, validated where it is built."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mosaic_assembler.chips._composites import RESCALES, Composite, parse_composite
from mosaic_assembler.chips._items import GROUP_BY
from mosaic_assembler.errors import ConfigError
from mosaic_assembler.executors import ExecutorOptions
from mosaic_assembler.selection import QAMask
from mosaic_assembler.sources.stac_params import StacSearch

__all__ = ["ChipsOptions", "build_chips_options"]


@dataclass(frozen=True)
class ChipsOptions:
    """What a chips run reads and writes.

    Attributes:
        points: CSV (id column(s), x, y) or GeoJSON points.
        out_dir: the output directory, or an s3://bucket/prefix (`chips._remote`).
        assets: asset keys, one chip band (and one values.csv column) each.
        items: a STAC items file, or
        stac: a STAC API search (its area is the points' bounds).
        size: chip side, pixels (the point's pixel is at index size // 2).
        id_fields: the point id column(s); default every CSV column but x/y.
        points_crs: the CRS of the points' x/y.
        mask: the quality band: flags `qa` in values.csv; its fill skips an observation.
        group_by: "item" (one observation per item) or "solar_day" (the items of one solar
            day, fused first-valid in selection order).
        composites: 8-bit PNGs per chip: names of `COMPOSITES` or `Composite`s.
        rescale: "none" or "c1" (Collection 2 → Collection 1 values, as the seed), applied to
            values.csv and the composites; the GeoTIFF chips keep the source values.
        batch_points: points per task (a thread's or a Dask worker's unit of work).
        concurrency: batches run at once by local worker processes (1: in this process).
        executor: the Dask options (`dask_scheduler`, `dask_local`).
        gdal_config: GDAL configuration for reads and writes.
        restart: forget the ledger of a previous run in `out_dir`.
    """

    points: str | Path
    out_dir: str | Path
    assets: tuple[str, ...]
    items: str | Path | None = None
    stac: StacSearch | None = None
    size: int = 255
    id_fields: tuple[str, ...] | None = None
    points_crs: str = "EPSG:4326"
    mask: QAMask | None = None
    group_by: str = "item"
    composites: tuple[Composite, ...] = ()
    rescale: str = "none"
    batch_points: int = 32
    concurrency: int = 2
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)
    gdal_config: tuple[tuple[str, str], ...] = ()
    restart: bool = False

    def __post_init__(self) -> None:
        text = str(self.out_dir)
        if "://" in text and not text.startswith("s3://"):
            raise ConfigError(f"`out_dir` {text}: give a local directory or an s3://bucket/prefix")
        if (self.items is None) == (self.stac is None):
            raise ConfigError("give exactly one source: `items` FILE or `stac` URL")
        if not self.assets:
            raise ConfigError("`assets` is required: the asset keys to chip, e.g. red,nir08")
        if not 1 <= self.size <= 4096:
            raise ConfigError(f"`size` must be 1..4096 pixels, got {self.size}")
        if self.group_by not in GROUP_BY:
            raise ConfigError(f"`group_by` must be one of {', '.join(GROUP_BY)}")
        if self.rescale not in RESCALES:
            raise ConfigError(f"`rescale` must be one of {', '.join(RESCALES)}")
        if self.batch_points < 1 or self.concurrency < 1:
            raise ConfigError("`batch_points` and `concurrency` must be >= 1")
        comps = tuple(
            c if isinstance(c, Composite) else parse_composite(c) for c in self.composites
        )
        object.__setattr__(self, "composites", comps)
        for c in comps:
            missing = [a for a in c.assets if a not in self.assets]
            if missing:
                raise ConfigError(
                    f"`composites` {c.name} reads {', '.join(missing)}, not in `assets`"
                )

    def fingerprint(self) -> str:
        """A hash of what decides the outputs (a resumed run must have the same)."""
        what = {
            "assets": self.assets, "size": self.size, "id_fields": self.id_fields,
            "points_crs": self.points_crs, "mask": repr(self.mask), "group_by": self.group_by,
            "composites": repr(self.composites), "rescale": self.rescale,
            "source": str(self.items) if self.items is not None else repr(self.stac),
        }  # fmt: skip
        return hashlib.sha256(json.dumps(what, default=str).encode()).hexdigest()[:16]


_STAC_FIELDS = ("collections", "datetime", "query", "filter", "max_items", "seasons", "sort_by")


def build_chips_options(points: str | Path, out_dir: str | Path, **kw: Any) -> ChipsOptions:
    """ChipsOptions from keyword arguments named as the CLI's flags.

    Besides ChipsOptions' fields: `stac` as a URL with `collections`, `datetime`, `query`,
    `filter`, `max_items`, `seasons`, `sort_by`; `mask_band`, `mask_bits`,
    `mask_expression`; `dask_scheduler`, `dask_local`; assets as "a,b,c".
    """
    from mosaic_assembler.options import _qa_mask  # the one parser of the --mask-* trio

    stac_kw = {k: kw.pop(k) for k in _STAC_FIELDS if kw.get(k) not in (None, (), "")}
    for k in _STAC_FIELDS:
        kw.pop(k, None)
    if isinstance(kw.get("stac"), str):
        kw["stac"] = StacSearch(kw["stac"], **{"collections": (), **stac_kw})
    elif stac_kw:
        raise ConfigError(f"`{next(iter(stac_kw))}` applies to a `stac` search")
    mask = _qa_mask(kw.pop("mask_band", None), kw.pop("mask_bits", None),
                    kw.pop("mask_expression", None))  # fmt: skip
    if mask is not None:
        kw["mask"] = mask
    dask = {k: kw.pop(k) for k in ("dask_scheduler", "dask_local") if k in kw}
    if any(dask.values()):
        kw["executor"] = ExecutorOptions(**dask)
    for k in ("assets", "id_fields"):
        if isinstance(kw.get(k), str):
            kw[k] = tuple(a.strip() for a in kw[k].split(",") if a.strip())
    if isinstance(kw.get("gdal_config"), Mapping):
        kw["gdal_config"] = tuple(sorted(kw["gdal_config"].items()))
    for k in ("composites",):
        if k in kw:
            kw[k] = tuple(kw[k])
    try:
        return ChipsOptions(points, out_dir, **kw)
    except TypeError as e:
        raise ConfigError(f"chips: {e}") from e
