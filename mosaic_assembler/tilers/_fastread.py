"""Tile reads equal to rio-tiler's, without its per-call costs.

`rio_tiler.io.Reader.tile` on a source with a nodata value, in another CRS than the tile
grid, builds a WarpedVRT, reads the data, reads the mask (a second warp, which GDAL computes
from the data again) and then throws that mask away for `data == nodata`; it also opens the
file, computes the dataset's default transform to EPSG:3857 and, through `STACReader`,
parses the STAC item with pystac on every call. Profiled on the demo scenes (512-px tiles,
uint16 DEFLATE COGs in UTM), that is 12.5 ms per asset read of which the warp is 5 ms, plus
3.5 ms to open the file.

Here the same reads are made with rio-tiler's own parameters (the WarpedVRT of
`rio_tiler.reader.part`/`read`: same transform, size, nodata, dtype, warp and read
resampling), once, on datasets kept open, so the pixels and masks are identical
(the oracle tests compare with `mosaic_reader` over rio-tiler's readers). Anything else
(no nodata value, alpha bands or internal masks, sources already in EPSG:3857, WGS84 sources
past the Mercator latitude limit, per-asset GDAL options) goes through rio-tiler as before,
still on the kept-open dataset. A STAC item's single-band assets on one grid (Landsat,
Sentinel-2 bands of one resolution) are stacked in a VRT and warped once for all of them
(`_stack_tile`): rio-tiler's warp is nearest-neighbour, so the bytes are the same; that halves
the warp time again.

Open datasets are kept in one pool shared by the threads (`_Pool`): a read takes a handle
out and gives it back, so no handle is used by two threads at once (GDAL handles are not
thread-safe); at most `MAX_OPEN` idle ones, of which `MAX_OPEN_LOCAL` local files, keyed by
href plus the file's size and mtime, so a file rewritten in place is reopened; the
pipeline closes them after the reads (`LocalTiler.close`). Parsed STAC items and stacked
VRTs are cached per thread, at most `MAX_OPEN` of each. What a fast read needs to know of a
file besides its handle (CRS, bounds, nodata, its default transform in the tile grid's CRS)
is kept once per process under the same key (`_Facts`, at most `MAX_FACTS`): a file opened
again does not recompute the transform (half the cost of an open, profiled), and rio-tiler's
`tile_exists` is answered from those facts with rio-tiler's own code before opening, so that
a mosaicJSON's assets that do not reach the tile are not opened.

Any TileMatrixSet (`tms=`, as rio-tiler's readers take it): the same warp is made in the
TMS's CRS, which is what rio-tiler does for it (its `part` only special-cases WGS84 sources
for a Web Mercator target); a source already in the TMS's CRS is read by rio-tiler (a
window read, no warp). The readers are cached per TMS too.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy
import rasterio
from affine import Affine
from morecantile import Tile
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rio_tiler.constants import WEB_MERCATOR_TMS
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader, STACReader
from rio_tiler.io.base import SpatialMixin
from rio_tiler.models import ImageData
from rio_tiler.utils import has_alpha_band

from mosaic_assembler.storage import gdal_path
from mosaic_assembler.types import GDAL_DTYPES

__all__ = ["MAX_OPEN", "reader_tile", "release_datasets", "stac_tile"]

MAX_OPEN = 64  # idle open datasets per process (_Pool); parsed STAC items, stacks per thread
MAX_OPEN_LOCAL = 24  # of which local files (_Pool)
MAX_FACTS = 4096  # files whose facts (_Facts) are kept per process
_WGS84 = CRS.from_epsg(4326)
_TMS_CRS = WEB_MERCATOR_TMS.rasterio_crs  # the default TMS of rio-tiler's readers
_local = threading.local()
_TMS_KEYS: dict[int, tuple[Any, str]] = {}  # id(tms) → (weak reference, its JSON digest)
_TMS_LOCK = threading.Lock()


def _tms_key(tms: Any) -> str:
    """A stable key of a TileMatrixSet ("" for rio-tiler's default)."""
    if tms is None:
        return ""
    import hashlib
    import weakref

    with _TMS_LOCK:
        entry = _TMS_KEYS.get(id(tms))
        if entry is not None and entry[0]() is tms:
            return entry[1]
        key = hashlib.sha1(tms.model_dump_json().encode()).hexdigest()
        _TMS_KEYS[id(tms)] = (weakref.ref(tms), key)
        if len(_TMS_KEYS) > 256:
            for k in [k for k, (ref, _) in _TMS_KEYS.items() if ref() is None]:
                del _TMS_KEYS[k]
        return key


@dataclass
class _Source:
    """A kept-open rio-tiler Reader and what a fast read of it needs."""

    reader: Any  # rio_tiler.io.Reader (its `dataset` is typed Optional, always set once open)
    fast: bool  # rio-tiler's read of it is the plain warp done below
    dst_transform: Affine | None  # default transform of the dataset in the tile grid's CRS
    nodata: float | None
    tms_crs: CRS = _TMS_CRS  # the tile grid's CRS
    handle: Any = None  # the rasterio dataset the Reader was given
    local: bool = False  # a local file (cheap to reopen)

    def close(self) -> None:
        self.reader.close()
        if self.handle is not None:
            self.handle.close()


@dataclass(frozen=True)
class _Facts:
    """What `_open` learnt of a file that does not depend on the thread's handle."""

    fast: bool
    dst_transform: Affine | None
    crs: CRS  # the dataset's, for rio-tiler's tile_exists
    bounds: tuple[float, ...]
    tms: Any  # the reader's TileMatrixSet


_FACTS: OrderedDict[Any, _Facts] = OrderedDict()
_FACTS_LOCK = threading.Lock()


def _facts(key: Any) -> _Facts | None:
    with _FACTS_LOCK:
        return _FACTS.get(key)


def _remember(key: Any, facts: _Facts) -> None:
    with _FACTS_LOCK:
        _FACTS[key] = facts
        while len(_FACTS) > MAX_FACTS:
            _FACTS.popitem(last=False)


def _cache(name: str) -> OrderedDict:
    cache = getattr(_local, name, None)
    if cache is None:
        cache = OrderedDict()
        setattr(_local, name, cache)
    return cache


def _cached(name: str, key: Any, make: Callable[[], Any]) -> Any:
    cache = _cache(name)
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
        return value
    value = make()
    cache[key] = value
    while len(cache) > MAX_OPEN:
        _, old = cache.popitem(last=False)
        if hasattr(old, "close"):
            old.close()
    return value


def _both_nan(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and math.isnan(a) and math.isnan(b)


def _file_key(href: str) -> tuple:
    try:
        st = os.stat(href)
    except (OSError, ValueError):
        return (href,)  # a URL or /vsi path: keyed by name only
    return (href, st.st_size, st.st_mtime_ns)


def _source_key(href: str, tms: Any) -> Any:
    key = _file_key(href)
    return key if tms is None else (*key, _tms_key(tms))


def _new_source(href: str, tms: Any, key: Any) -> _Source:
    """Open a file as a rio-tiler Reader and learn (or recall) what a fast read needs.

    The dataset is opened here and given to the Reader: a Reader that opens it itself enters
    it, which ties a rasterio Env of the opening thread to it, and closing it from another
    thread (the pool's evictions, `release_datasets`) would end that thread's Env instead.
    """
    handle = rasterio.open(href)
    local = len(_file_key(href)) > 1  # a file os.stat can see
    try:
        grid = {} if tms is None else {"tms": tms}
        reader = Reader(href, dataset=handle, **grid)
    except Exception:
        handle.close()
        raise
    try:
        src: Any = reader.dataset
        tms_crs = _TMS_CRS if tms is None else tms.rasterio_crs
        known = _facts(key)
        if known is not None:
            return _Source(
                reader, known.fast, known.dst_transform, src.nodata, tms_crs, handle, local
            )
        mercator = tms_crs == _TMS_CRS
        fast = (
            src.nodata is not None
            and not has_alpha_band(src)
            and src.crs is not None
            and src.crs != tms_crs
            and not (
                mercator and src.crs == _WGS84 and (src.bounds[1] < -85.06 or src.bounds[3] > 85.06)
            )
            and not reader.options
        )
        dst_transform = None
        if fast:
            dst_transform, _, _ = calculate_default_transform(
                src.crs, tms_crs, src.width, src.height, *src.bounds
            )
            facts = _Facts(fast, dst_transform, reader.crs, tuple(reader.bounds), reader.tms)
            _remember(key, facts)
        return _Source(reader, fast, dst_transform, src.nodata, tms_crs, handle, local)
    except Exception:
        reader.close()
        handle.close()
        raise


def _open(href: str, tms: Any = None, key: Any = None) -> _Source:
    """A source kept open by this thread (the stacked reads' metadata: `_stack`)."""
    key = _source_key(href, tms) if key is None else key
    return _cached("sources", key, lambda: _new_source(href, tms, key))  # type: ignore[no-any-return]


class _Pool:
    """Open sources not in use, shared by the threads: at most `MAX_OPEN`, `MAX_OPEN_LOCAL` files.

    A read takes a source out (`checkout`) and gives it back when it is done, so no handle
    is used by two threads at once (GDAL handles are not thread-safe) and the threads of a
    run share one set of open files instead of one set each. An open GeoTIFF that has been
    read keeps ~1.3 MB (measured: 64 of bench_vs_notebook's scenes, each read for the tiles
    of its 16-tile AOI, gave back 83 MB when closed; libtiff's buffer of the last compressed
    tile, GDAL's decoded tile of a pixel-interleaved file), and the two reading threads of
    that run had opened 57 and 52 of its 64 scenes, one set each. Local files reopen in
    ~2 ms (their facts are kept, `_Facts`), so few of them are kept; remote ones (a
    /vsicurl/ open costs requests) are kept up to `MAX_OPEN`. The least recently given
    back source is closed first.
    """

    def __init__(self) -> None:
        self.idle: OrderedDict[Any, list[_Source]] = OrderedDict()
        self.count = 0
        self.local = 0  # idle sources that are local files
        self.lock = threading.Lock()

    @contextmanager
    def checkout(self, href: str, tms: Any, key: Any) -> Iterator[_Source]:
        """A source of `href` for this thread's read (opened if none is idle)."""
        with self.lock:
            free = self.idle.get(key)
            source = free.pop() if free else None
            if source is not None:
                self._forget(source)
                if not free:
                    del self.idle[key]
        if source is None:
            source = _new_source(href, tms, key)
        try:
            yield source
        except TileOutsideBounds:
            self.give(key, source)
            raise
        except BaseException:
            source.close()  # a failed read: its handle is not trusted again
            raise
        self.give(key, source)

    def _forget(self, source: _Source) -> None:
        self.count -= 1
        self.local -= source.local

    def give(self, key: Any, source: _Source) -> None:
        """Put a source back; close the least recently used ones beyond the bounds."""
        evicted = []
        with self.lock:
            self.idle.setdefault(key, []).append(source)
            self.idle.move_to_end(key)
            self.count += 1
            self.local += source.local
            while self.count > MAX_OPEN or self.local > MAX_OPEN_LOCAL:
                only_local = self.count <= MAX_OPEN
                old_key = next(k for k, v in self.idle.items() if v[0].local or not only_local)
                old = self.idle[old_key]
                evicted.append(old.pop(0))
                self._forget(evicted[-1])
                if not old:
                    del self.idle[old_key]
        for old_source in evicted:
            old_source.close()

    def clear(self) -> None:
        """Close every idle source."""
        with self.lock:
            idle = [src for sources in self.idle.values() for src in sources]
            self.idle.clear()
            self.count = self.local = 0
        for source in idle:
            source.close()


_POOL = _Pool()


def release_datasets() -> None:
    """Close the idle datasets kept open for reads (one in use goes back when its read ends)."""
    _POOL.clear()


def _tile_exists(facts: _Facts, x: int, y: int, z: int) -> bool:
    """rio-tiler's `SpatialMixin.tile_exists`, run on a file's facts instead of a Reader."""
    return SpatialMixin.tile_exists(facts, x, y, z)  # type: ignore[arg-type]


def _vrt_grid(
    dst_transform: Affine, bounds: tuple[float, ...], size: int
) -> tuple[Affine, int, int]:
    """`rio_tiler.utils.get_vrt_transform` for a reprojected, unaligned tile of size²."""
    w, s, e, n = bounds
    w_res, h_res = dst_transform.a, dst_transform.e
    output_transform = from_bounds(w, s, e, n, size, size)
    if abs(dst_transform.a) > abs(output_transform.a):
        w_res = output_transform.a
    if abs(dst_transform.e) > abs(output_transform.e):
        h_res = output_transform.e
    vrt_width = max(1, round((e - w) / w_res))
    vrt_height = max(1, round((s - n) / h_res))
    return from_bounds(w, s, e, n, vrt_width, vrt_height), vrt_width, vrt_height


def _warp(
    src: Any,
    nodata: float | None,
    grid: tuple[Affine, int, int],
    bounds: tuple[float, ...],
    tilesize: int,
    indexes: tuple[int, ...],
    resampling_method: str,
    assets: list[str],
    tms_crs: CRS = _TMS_CRS,
) -> ImageData:
    """The read of `rio_tiler.reader.part`/`read` for a nodata source in another CRS."""
    vrt_transform, vrt_width, vrt_height = grid
    with WarpedVRT(
        src,
        crs=tms_crs,
        transform=vrt_transform,
        width=vrt_width,
        height=vrt_height,
        dtype=src.dtypes[0],
        nodata=nodata,
        src_nodata=nodata,
        add_alpha=False,
        resampling=Resampling.nearest,
    ) as vrt:
        data = vrt.read(
            indexes=indexes,
            out_shape=(len(indexes), tilesize, tilesize),
            resampling=Resampling[resampling_method],
        )
    mask = numpy.isnan(data) if nodata is not None and math.isnan(nodata) else data == nodata
    return ImageData(
        numpy.ma.MaskedArray(data, mask=mask),
        assets=assets,
        crs=tms_crs,
        bounds=bounds,
        band_names=[f"b{idx}" for idx in indexes],
    )


def reader_tile(
    href: str,
    x: int,
    y: int,
    z: int,
    tilesize: int = 256,
    indexes: int | Sequence[int] | None = None,
    expression: str | None = None,
    resampling_method: str = "nearest",
    tms: Any = None,
) -> ImageData:
    """`rio_tiler.io.Reader(href, tms=tms).tile(x, y, z, ...)`, same pixels and mask.

    Raises:
        TileOutsideBounds: the tile does not intersect the dataset.
    """
    key = _source_key(href, tms)
    known = _facts(key)  # only fast sources have facts
    if known is not None and not _tile_exists(known, x, y, z):
        raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}) is outside bounds")
    with _POOL.checkout(href, tms, key) as source:
        return _read(source, known, x, y, z, tilesize, indexes, expression, resampling_method, href)


def _read(
    source: _Source,
    known: _Facts | None,
    x: int,
    y: int,
    z: int,
    tilesize: int,
    indexes: int | Sequence[int] | None,
    expression: str | None,
    resampling_method: str,
    href: str,
) -> ImageData:
    reader = source.reader
    if not source.fast:
        return reader.tile(
            x,
            y,
            z,
            tilesize=tilesize,
            indexes=indexes,
            expression=expression,
            resampling_method=resampling_method,
        )
    if known is None and not reader.tile_exists(x, y, z):
        raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}) is outside bounds")
    if expression:
        from rio_tiler.expression import parse_expression

        indexes = parse_expression(expression)
    bounds = tuple(reader.tms.xy_bounds(Tile(x=x, y=y, z=z)))
    assert source.dst_transform is not None
    grid = _vrt_grid(source.dst_transform, bounds, tilesize)
    if indexes is None:
        indexes = tuple(reader.dataset.indexes)
    elif isinstance(indexes, int):
        indexes = (indexes,)
    img = _warp(
        reader.dataset,
        source.nodata,
        grid,
        bounds,
        tilesize,
        tuple(indexes),
        resampling_method,
        [href],
        source.tms_crs,
    )
    return img.apply_expression(expression) if expression else img


@dataclass
class _Item:
    stac: STACReader
    hrefs: dict[str, str] | None  # asset → href when every asset can be read plainly


def _item(
    item: Callable[[], dict[str, Any]], assets: tuple[str, ...], key: Any, tms: Any = None
) -> _Item:
    def make() -> _Item:
        grid = {} if tms is None else {"tms": tms}
        stac = STACReader(
            None,
            item=item(),
            include_assets=set(assets),
            include_asset_types=None,  # type: ignore[arg-type]  # None: no filter
            **grid,
        )
        hrefs: dict[str, str] | None = {}
        for name in assets:
            try:
                info = stac._get_asset_info(name)
            except Exception:
                hrefs = None  # let rio-tiler raise its own error
                break
            if info.get("env") or info["reader_options"] or info["method_options"]:
                hrefs = None
                break
            assert hrefs is not None
            hrefs[name] = info["url"]
        return _Item(stac, hrefs)

    return _cached("items", key if tms is None else (key, _tms_key(tms)), make)


def stac_tile(
    item: Callable[[], dict[str, Any]],
    key: Any,
    assets: tuple[str, ...],
    x: int,
    y: int,
    z: int,
    expression: str | None = None,
    tms: Any = None,
    **kwargs: Any,
) -> ImageData:
    """`STACReader(item, tms=tms).tile(x, y, z, assets=assets, expression=..., **kwargs)`.

    Args:
        item: returns the STAC item as a dict (called once per thread and key).
        key: identifies the item (and its selected assets) in the per-thread cache.
        assets: asset keys, in band order.
        x: tile column.
        y: tile row.
        z: zoom level.
        expression: rio-tiler band math over `assets`.
        tms: the morecantile TileMatrixSet of the tile (None: rio-tiler's WebMercatorQuad).
        **kwargs: the rest of `STACReader.tile`'s options (tilesize, resampling …).
    """
    it = _item(item, assets, key, tms)
    if it.hrefs is None:
        return it.stac.tile(x, y, z, assets=list(assets), expression=expression, **kwargs)
    if not it.stac.tile_exists(x, y, z):
        raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}) is outside bounds")
    hrefs = tuple(it.hrefs[name] for name in assets)
    img = _stack_tile(hrefs, x, y, z, tms=tms, **kwargs) if len(hrefs) > 1 else None
    if img is None:
        img = ImageData.create_from_list(
            [reader_tile(h, x, y, z, tms=tms, **kwargs) for h in hrefs]
        )
    img.band_names = [f"b{ix + 1}" for ix in range(img.count)]
    return img.apply_expression(expression) if expression else img


@dataclass
class _Stack:
    """Single-band assets on one grid, stacked in a VRT so that one warp reads them all."""

    dataset: Any  # the VRT, or None when the assets cannot be stacked
    source: _Source | None  # the first asset's (grid, nodata, tile_exists)

    def close(self) -> None:
        if self.dataset is not None:
            self.dataset.close()


def _stack(hrefs: tuple[str, ...], tms: Any = None) -> _Stack:
    def make() -> _Stack:
        from xml.sax.saxutils import escape

        import rasterio

        sources = [_open(h, tms) for h in hrefs]
        first = sources[0].reader.dataset
        if not all(
            s.fast
            and s.reader.dataset.count == 1
            and s.reader.dataset.crs == first.crs
            and s.reader.dataset.transform == first.transform
            and s.reader.dataset.shape == first.shape
            and s.reader.dataset.dtypes[0] == first.dtypes[0]
            and (s.nodata == first.nodata or _both_nan(s.nodata, first.nodata))
            and first.dtypes[0] in GDAL_DTYPES
            for s in sources
        ):
            return _Stack(None, None)
        w, h, t = first.width, first.height, first.transform
        rect = f'xOff="0" yOff="0" xSize="{w}" ySize="{h}"'
        bands = "".join(
            f'<VRTRasterBand dataType="{GDAL_DTYPES[first.dtypes[0]]}" band="{i}">'
            f"<NoDataValue>{first.nodata!r}</NoDataValue><SimpleSource>"
            f'<SourceFilename relativeToVRT="0">{escape(gdal_path(href))}</SourceFilename>'
            f"<SourceBand>1</SourceBand><SrcRect {rect}/><DstRect {rect}/></SimpleSource>"
            "</VRTRasterBand>"
            for i, href in enumerate(hrefs, start=1)
        )
        xml = (
            f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">'
            f"<SRS>{escape(first.crs.to_wkt())}</SRS>"
            f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>"
            f"{bands}</VRTDataset>"
        )
        return _Stack(rasterio.open(xml), sources[0])

    key = tuple(_file_key(h) for h in hrefs)
    return _cached("stacks", key if tms is None else (key, _tms_key(tms)), make)


def _stack_tile(
    hrefs: tuple[str, ...],
    x: int,
    y: int,
    z: int,
    tilesize: int = 256,
    indexes: int | Sequence[int] | None = None,
    resampling_method: str = "nearest",
    tms: Any = None,
) -> ImageData | None:
    """The per-asset reads of `stac_tile` as one warp of all assets, or None.

    Same bytes as warping each asset alone: the warp is nearest-neighbour, every band samples
    the same source pixel, and a band's pixel is either that value or nodata either way (GDAL
    may copy a band's nodata value where another band has data; that is still nodata).
    Only used when the warped grid is the tile itself (the source is not finer than the tile):
    otherwise rio-tiler's read decimates the warped VRT, which may use the source's
    overviews, which a stacked VRT does not have.

    Raises:
        TileOutsideBounds: the tile does not intersect the assets.
    """
    if indexes not in (None, 1, (1,), [1]):
        return None
    stack = _stack(hrefs, tms)
    if stack.dataset is None:
        return None
    source = stack.source
    assert source is not None and source.dst_transform is not None
    bounds = tuple((tms or WEB_MERCATOR_TMS).xy_bounds(Tile(x=x, y=y, z=z)))
    grid = _vrt_grid(source.dst_transform, bounds, tilesize)
    if grid[1:] != (tilesize, tilesize):
        return None
    if not source.reader.tile_exists(x, y, z):
        raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}) is outside bounds")
    return _warp(
        stack.dataset,
        source.nodata,
        grid,
        bounds,
        tilesize,
        tuple(range(1, len(hrefs) + 1)),
        resampling_method,
        list(hrefs),
        source.tms_crs,
    )
