"""One batch of points → their chips, composites and value rows (a pure, picklable task).

`process_batch(spec, batch)` runs in a thread, a local process or a Dask worker; it writes
the point's files (each renamed into place when whole) and returns what happened per point;
the driver keeps the ledger.

Per date, every item of the batch is planned first (the windows of all its chips), then each
point's chip is cut from the shared regions: the grid is the first item (selection order)
whose centre pixel is valid, the others of the day fill what it lacks, first valid wins.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from mosaic_assembler.chips._composites import rescale_values
from mosaic_assembler.chips._items import ItemRef, Observation
from mosaic_assembler.chips._outputs import chip_name, value_row, write_chip, write_part
from mosaic_assembler.chips._points import Point
from mosaic_assembler.chips._reading import Grid, ItemReader, ReadStats
from mosaic_assembler.chips._spec import ChipSpec

logger = logging.getLogger(__name__)

__all__ = ["Batch", "ChipSpec", "PointOutcome", "process_batch"]


@dataclass(frozen=True)
class Batch:
    """Points, each with its observations, and the items they use."""

    points: tuple[Point, ...]
    observations: tuple[tuple[Observation, ...], ...]
    items: tuple[ItemRef, ...]


@dataclass(frozen=True)
class PointOutcome:
    """What happened to one point: done (rows > 0), empty (no valid observation) or failed."""

    key: str
    status: str
    rows: int = 0
    error: str = ""
    #: the point's values.csv part (header and rows) when OUT_DIR is on S3
    part: str = ""


@dataclass
class _Chip:
    """A chip being assembled: every key's data and validity, in one grid."""

    ref: ItemRef
    grid: Grid
    window: Window
    data: dict[str, numpy.ndarray]
    valid: dict[str, numpy.ndarray]


def process_batch(spec: ChipSpec, batch: Batch, stats: ReadStats | None = None) -> list[Any]:
    """Cut, write and tabulate the chips of a batch; returns (outcomes, read counters).

    With an s3:// OUT_DIR the batch is written into local scratch, then uploaded
    (`_remote.process_remote`).
    """
    import rasterio

    from mosaic_assembler.storage import is_s3

    stats = stats if stats is not None else ReadStats()
    if is_s3(spec.out_dir):
        from mosaic_assembler.chips._remote import process_remote

        return process_remote(spec, batch, stats, process_batch)
    items = {r.index: r for r in batch.items}
    rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    failed: dict[int, str] = {}
    by_date: dict[str, list[tuple[int, Observation]]] = defaultdict(list)
    for n, obs in enumerate(batch.observations):
        for o in obs:
            by_date[o.date].append((n, o))
    config = {"GDAL_PAM_ENABLED": "NO", "GDAL_TIFF_INTERNAL_MASK": True, **dict(spec.gdal_config)}
    with rasterio.Env(**config):
        for date in sorted(by_date):
            _process_date(spec, batch, items, by_date[date], rows, failed, stats)
    outcomes = []
    for n, p in enumerate(batch.points):
        if n in failed:
            outcomes.append(PointOutcome(p.key, "failed", error=failed[n]))
            continue
        try:
            write_part(spec, p, rows[n])
        except OSError as e:
            outcomes.append(PointOutcome(p.key, "failed", error=f"{type(e).__name__}: {e}"))
            continue
        outcomes.append(PointOutcome(p.key, "done" if rows[n] else "empty", len(rows[n])))
    return [outcomes, stats.as_dict()]


def _process_date(
    spec: ChipSpec,
    batch: Batch,
    items: dict[int, ItemRef],
    work: list[tuple[int, Observation]],
    rows: dict[int, list[dict[str, Any]]],
    failed: dict[int, str],
    stats: ReadStats,
) -> None:
    readers = {i: ItemReader(items[i], stats) for _, o in work for i in o.items}
    try:
        for i, reader in readers.items():
            wins = [_window(spec, reader, batch.points[n]) for n, o in work if i in o.items]
            reader.plan([w for w in wins if w is not None])
        for n, obs in work:
            if n in failed:
                continue
            try:
                chip = _assemble(spec, batch.points[n], obs, readers)
                if chip is not None:
                    rows[n].append(_write(spec, batch.points[n], chip))
            except Exception as e:  # one point's failure does not stop the others
                logger.debug("point %s failed", batch.points[n].key, exc_info=True)
                failed[n] = f"{type(e).__name__}: {e}"
    except Exception as e:  # opening an item failed: every point of the date fails
        for n, _ in work:
            failed.setdefault(n, f"{type(e).__name__}: {e}")
    finally:
        for r in readers.values():
            r.close()


def _window(spec: ChipSpec, reader: ItemReader, p: Point) -> Window:
    return reader.window(spec.keys, spec.points_crs, p.x, p.y, spec.size)


def _centre_ok(spec: ChipSpec, data: dict[str, Any], valid: dict[str, Any]) -> bool:
    """The centre pixel is valid in every key and, with a mask band, not QA fill."""
    c = spec.size // 2
    if not all(v[c, c] for v in valid.values()):
        return False
    if spec.mask is None or spec.mask.kind == "expression":
        return True
    qa = int(data[spec.mask.band][c, c])
    return not (qa & 1) if spec.mask.kind == "landsat" else qa != 0


def _assemble(
    spec: ChipSpec, p: Point, obs: Observation, readers: dict[int, ItemReader]
) -> _Chip | None:
    """The chip of one observation, or None when its centre pixel is fill everywhere.

    Its grid is the first item (selection order) whose centre pixel is valid; every pixel
    is then the first valid one of the day's items in selection order (warped onto that
    grid when an item's grid differs).
    """
    first = None
    for i in obs.items:
        r = readers[i]
        win = _window(spec, r, p)
        got = {k: r.read(k, win) for k in spec.keys}
        if _centre_ok(spec, {k: g[0] for k, g in got.items()}, {k: g[1] for k, g in got.items()}):
            first = (r, win, got)
            break
    if first is None:
        return None
    r, win, got = first
    chip = _Chip(r.ref, r.grid(spec.keys), win,
                 {k: g[0].copy() for k, g in got.items()},
                 {k: numpy.zeros_like(g[1]) for k, g in got.items()})  # fmt: skip
    for i in obs.items:
        _fill_from(spec, chip, readers[i], got if i == r.ref.index else None)
    return chip


def _fill_from(
    spec: ChipSpec, chip: _Chip, other: ItemReader, got: dict[str, Any] | None = None
) -> None:
    """Fill the chip's invalid pixels from an item of the day (warped if needed)."""
    from mosaic_assembler.chips._warp import warp_into

    g = other.grid(spec.keys)
    if got is not None:
        pass
    elif g.aligned_with(chip.grid):
        x, y = chip.grid.transform * (chip.window.col_off, chip.window.row_off)
        col, row = ~g.transform * (x, y)
        win = Window(round(col), round(row), spec.size, spec.size)
        got = {k: other.read(k, win) for k in spec.keys}
    else:
        got = {k: warp_into(other, k, g, chip.grid, chip.window) for k in spec.keys}
    hole = ~numpy.logical_and.reduce([chip.valid[k] for k in spec.keys])
    take = hole & numpy.logical_and.reduce([got[k][1] for k in spec.keys])
    for k in spec.keys:
        chip.data[k][take] = got[k][0][take]
        chip.valid[k] |= take


def _write(spec: ChipSpec, p: Point, chip: _Chip) -> dict[str, Any]:
    """Write the chip's GeoTIFF and composites; its row of values."""
    c = spec.size // 2
    valid = numpy.logical_and.reduce([chip.valid[k] for k in spec.assets])

    def value(k: str, data: numpy.ndarray) -> numpy.ndarray:
        is_mask = spec.mask is not None and k == spec.mask.band
        return data if is_mask else rescale_values(data, spec.rescale)

    # whole chips only for what the composites read; values.csv needs the centre pixel alone
    centre = {k: value(k, chip.data[k][c : c + 1, c : c + 1])[0, 0] for k in spec.assets}
    pngs = {}
    if spec.composites:
        used = dict.fromkeys(a for comp in spec.composites for a in comp.assets)
        floats = {k: value(k, chip.data[k]).astype("float64") for k in used}
        pngs = {comp.name: comp.render(floats, ~valid) for comp in spec.composites}
    transform = window_transform(chip.window, chip.grid.transform)
    name = chip_name(chip.ref)
    write_chip(spec, p, name, [chip.data[k] for k in spec.assets], valid, chip.grid.crs,
               transform, chip.grid.nodata, pngs)  # fmt: skip
    qa = None
    if spec.mask is not None:
        qa_c = numpy.array([[chip.data[spec.mask.band][c, c]]])
        qa = int(bool(spec.mask.exclude(qa_c)[0, 0]))
    return value_row(spec, p, chip.ref, centre, qa)
