"""Another item's pixels on a chip's grid (nearest neighbour), for same-day fusion."""

from __future__ import annotations

import numpy
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from mosaic_assembler.chips._reading import Grid, ItemReader

__all__ = ["warp_into"]


def warp_into(
    reader: ItemReader, key: str, src: Grid, dst: Grid, dst_window: Window
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(data, valid) of asset `key` of `reader`'s item on the chip grid `dst`/`dst_window`.

    The source window is the chip's bounds in the source grid, one pixel wider each way.
    """
    from rasterio.warp import Resampling, reproject, transform_bounds
    from rasterio.windows import from_bounds

    dst_transform = window_transform(dst_window, dst.transform)
    h, w = int(dst_window.height), int(dst_window.width)
    left, top = dst_transform * (0, 0)
    right, bottom = dst_transform * (w, h)
    b = transform_bounds(dst.crs, src.crs, left, min(top, bottom), right, max(top, bottom))
    fw = from_bounds(*b, transform=src.transform)
    c0, r0 = int(numpy.floor(fw.col_off)) - 1, int(numpy.floor(fw.row_off)) - 1
    c1 = int(numpy.ceil(fw.col_off + fw.width)) + 1
    r1 = int(numpy.ceil(fw.row_off + fw.height)) + 1
    win = Window(c0, r0, c1 - c0, r1 - r0)
    data, valid = reader.read(key, win)
    src_transform = window_transform(win, src.transform)
    out = numpy.zeros((h, w), dtype=data.dtype)
    ok = numpy.zeros((h, w), dtype="uint8")
    common = dict(src_transform=src_transform, src_crs=src.crs, dst_transform=dst_transform,
                  dst_crs=dst.crs, resampling=Resampling.nearest)  # fmt: skip
    reproject(numpy.ascontiguousarray(data), out, src_nodata=None, dst_nodata=None, **common)
    reproject(valid.astype("uint8"), ok, src_nodata=None, dst_nodata=None, **common)
    return out, ok.astype(bool)
