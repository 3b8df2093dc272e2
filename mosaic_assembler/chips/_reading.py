"""Shared reads: an item's assets read once per region, however many chips fall in it.

The chips of a batch's points are grouped by the block-aligned cell (`REGION_PX` square) of
their centre pixel; the union window of a cell's chips is read once per asset and each chip
is a slice of it. `ReadStats` counts the dataset opens, the window reads and the blocks they
touch (what a test and the benchmark compare with a per-point loop).
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy
from rasterio.windows import Window

from mosaic_assembler.chips._items import ItemRef
from mosaic_assembler.errors import SourceError

__all__ = ["REGION_PX", "Grid", "ItemReader", "ReadStats", "centred_window"]

#: Side of a read region, pixels (rounded up to whole blocks). A 1024-px region of uint16 is
#: 2 MB per asset; chips of points 1024 px apart share nothing anyway at the default size.
REGION_PX = 1024


@dataclass
class ReadStats:
    """Counters of the reads of a run (thread-safe)."""

    opens: int = 0
    reads: int = 0
    blocks: int = 0
    pixels: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, opens: int = 0, reads: int = 0, blocks: int = 0, pixels: int = 0) -> None:
        """Count reads."""
        with self._lock:
            self.opens += opens
            self.reads += reads
            self.blocks += blocks
            self.pixels += pixels

    def as_dict(self) -> dict[str, int]:
        """The counters as a dict."""
        return {"opens": self.opens, "reads": self.reads, "blocks": self.blocks,
                "pixels": self.pixels}  # fmt: skip


@dataclass(frozen=True)
class Grid:
    """An item's pixel grid (every asset of the item must share it)."""

    crs: Any
    transform: Any
    width: int
    height: int
    block: tuple[int, int]
    nodata: float | None = None

    def aligned_with(self, other: Grid) -> bool:
        """Same CRS and pixel size, origins a whole number of pixels apart."""
        a, b = self.transform, other.transform
        if self.crs != other.crs or (a.a, a.b, a.d, a.e) != (b.a, b.b, b.d, b.e) or a.b or a.d:
            return False
        dx, dy = (b.c - a.c) / a.a, (b.f - a.f) / a.e
        return abs(dx - round(dx)) < 1e-6 and abs(dy - round(dy)) < 1e-6


@functools.lru_cache(maxsize=64)
def _transformer(src: str, dst: str) -> Any:
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def centred_window(grid: Grid, points_crs: str, x: float, y: float, size: int) -> Window:
    """The chip window: `size` px square, the pixel holding (x, y) at index size // 2."""
    gx, gy = _transformer(points_crs, grid.crs.to_wkt()).transform(x, y)
    col, row = ~grid.transform * (gx, gy)
    return Window(math.floor(col) - size // 2, math.floor(row) - size // 2, size, size)


def _blocks(win: Window, block: tuple[int, int]) -> int:
    bh, bw = block
    rows = (win.row_off + win.height - 1) // bh - win.row_off // bh + 1
    cols = (win.col_off + win.width - 1) // bw - win.col_off // bw + 1
    return int(rows * cols)


class ItemReader:
    """One item's assets, open for one date of one batch (not shared between threads)."""

    def __init__(self, ref: ItemRef, stats: ReadStats):
        self.ref, self.stats = ref, stats
        self._ds: dict[str, Any] = {}
        self._regions: dict[tuple[int, int], Window] = {}
        self._cache: dict[tuple[str, tuple[int, int]], tuple[numpy.ndarray, numpy.ndarray]] = {}
        self._grid: Grid | None = None
        self._windows: dict[tuple[float, float, int], Window] = {}
        self._to_grid: Any = None

    def dataset(self, key: str) -> Any:
        """The open dataset of asset `key`."""
        if key not in self._ds:
            import rasterio

            try:
                self._ds[key] = rasterio.open(self.ref.href(key))
            except rasterio.RasterioIOError as e:
                raise SourceError(f"cannot open {key} of item {self.ref.id}: {e}") from e
            self.stats.add(opens=1)
        return self._ds[key]

    def grid(self, keys: tuple[str, ...]) -> Grid:
        """The grid of the item's assets (checked to be one)."""
        if self._grid is None:
            ds = self.dataset(keys[0])
            bh, bw = ds.block_shapes[0]
            cell = (max(1, -(-REGION_PX // bh)) * bh, max(1, -(-REGION_PX // bw)) * bw)
            self._grid = Grid(ds.crs, ds.transform, ds.width, ds.height, cell, ds.nodata)
            for k in keys[1:]:
                o = self.dataset(k)
                if (o.crs, o.transform, o.shape) != (ds.crs, ds.transform, ds.shape):
                    raise SourceError(
                        f"assets {keys[0]} and {k} of item {self.ref.id} are on different "
                        "grids; chips need `assets` on one grid"
                    )
        return self._grid

    def window(
        self, keys: tuple[str, ...], points_crs: str, x: float, y: float, size: int
    ) -> Window:
        """`centred_window` on the item's grid, computed once per point and item."""
        key = (x, y, size)
        win = self._windows.get(key)
        if win is None:
            grid = self.grid(keys)
            if self._to_grid is None:  # (a CRS's WKT takes longer than the transform)
                self._to_grid = _transformer(points_crs, grid.crs.to_wkt())
            gx, gy = self._to_grid.transform(x, y)
            col, row = ~grid.transform * (gx, gy)
            win = Window(math.floor(col) - size // 2, math.floor(row) - size // 2, size, size)
            self._windows[key] = win
        return win

    def _cell(self, win: Window) -> tuple[int, int]:
        assert self._grid is not None
        ch, cw = self._grid.block
        return (win.row_off + win.height // 2) // ch, (win.col_off + win.width // 2) // cw

    def plan(self, windows: list[Window]) -> None:
        """Register the chip windows to come: one union region per cell."""
        for w in windows:
            cell = self._cell(w)
            r = self._regions.get(cell)
            self._regions[cell] = w if r is None else _union(r, w)

    def read(self, key: str, win: Window) -> tuple[numpy.ndarray, numpy.ndarray]:
        """(data, valid) of `win` of asset `key`, sliced from its region when planned."""
        cell = self._cell(win)
        region = self._regions.get(cell)
        if region is None or _union(region, win) != region:
            return self.read_direct(key, win)
        if (key, cell) not in self._cache:
            self._cache[(key, cell)] = self.read_direct(key, region)
        data, valid = self._cache[(key, cell)]
        r0, c0 = win.row_off - region.row_off, win.col_off - region.col_off
        sl = numpy.s_[r0 : r0 + win.height, c0 : c0 + win.width]
        return data[sl], valid[sl]

    def read_direct(self, key: str, win: Window) -> tuple[numpy.ndarray, numpy.ndarray]:
        """A boundless read: outside the raster is fill (nodata, or 0) and invalid."""
        ds = self.dataset(key)
        fill = ds.nodata if ds.nodata is not None else 0
        data = numpy.full((win.height, win.width), fill, dtype=ds.dtypes[0])
        valid = numpy.zeros((win.height, win.width), dtype=bool)
        r0, c0 = max(0, win.row_off), max(0, win.col_off)
        r1 = min(ds.height, win.row_off + win.height)
        c1 = min(ds.width, win.col_off + win.width)
        if r1 > r0 and c1 > c0:
            inner = Window(c0, r0, c1 - c0, r1 - r0)
            arr = ds.read(1, window=inner, masked=True)
            sl = numpy.s_[r0 - win.row_off : r1 - win.row_off, c0 - win.col_off : c1 - win.col_off]
            data[sl] = arr.data
            valid[sl] = ~numpy.ma.getmaskarray(arr)
            self.stats.add(reads=1, blocks=_blocks(inner, ds.block_shapes[0]),
                           pixels=inner.width * inner.height)  # fmt: skip
        return data, valid

    def close(self) -> None:
        """Close the datasets and drop the regions."""
        for ds in self._ds.values():
            ds.close()
        self._ds.clear()
        self._cache.clear()


def _union(a: Window, b: Window) -> Window:
    r0, c0 = min(a.row_off, b.row_off), min(a.col_off, b.col_off)
    r1 = max(a.row_off + a.height, b.row_off + b.height)
    c1 = max(a.col_off + a.width, b.col_off + b.width)
    return Window(c0, r0, c1 - c0, r1 - r0)
