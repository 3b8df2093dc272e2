"""In-process tiler: rio-tiler reads each asset and its mosaic methods select the pixels.

Results are those of `rio_tiler.mosaic.mosaic_reader` with the same method, reader options
and asset order, bit for bit: this module calls it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy
from rio_tiler.errors import EmptyMosaicError, RioTilerError, TileOutsideBounds
from rio_tiler.io import Reader, STACReader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader

from mosaic_assembler.errors import SourceError, TileReadError
from mosaic_assembler.sources import ItemAssets
from mosaic_assembler.tilers._base import PIXEL_SELECTION_METHODS, BandInfo, ReadOptions, TileData


def _reader_kwargs(options: ReadOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"resampling_method": options.resampling}
    if options.bidx is not None:
        kwargs["indexes"] = options.bidx
    if options.expression:
        kwargs["expression"] = options.expression
    return kwargs


def read_asset_tile(asset: str | ItemAssets, x: int, y: int, z: int, **kwargs: Any) -> ImageData:
    """Read one asset's part of a tile with rio-tiler (the reader given to mosaic_reader)."""
    if isinstance(asset, ItemAssets):
        with STACReader(
            None, item=asset.item, include_assets=set(asset.assets), include_asset_types=None
        ) as src:
            return src.tile(x, y, z, assets=list(asset.assets), **kwargs)
    with Reader(asset) as src:
        return src.tile(x, y, z, **kwargs)


def _preview_asset(asset: str | ItemAssets, **kwargs: Any) -> ImageData:
    kwargs.pop("tilesize", None)
    if isinstance(asset, ItemAssets):
        with STACReader(
            None, item=asset.item, include_assets=set(asset.assets), include_asset_types=None
        ) as src:
            return src.preview(assets=list(asset.assets), max_size=64, **kwargs)
    with Reader(asset) as src:
        return src.preview(max_size=64, **kwargs)


def _asset_name(asset: str | ItemAssets) -> str:
    return asset.id if isinstance(asset, ItemAssets) else asset


@dataclass(frozen=True)
class LocalTiler:
    """Renders tiles in-process from COG paths/URLs or STAC items.

    Attributes:
        options: pixel selection, tilesize, bands/expression, resampling.
    """

    options: ReadOptions

    def read_tile(self, tile: tuple[int, int, int], assets: Sequence) -> TileData | None:
        """Mosaic the assets over one tile.

        Returns:
            TileData, or None when no asset has data over the tile.

        Raises:
            TileReadError: an asset failed to read (missing file, corrupt data, bad band …).
        """
        if not assets:
            return None
        x, y, z = tile
        method = PIXEL_SELECTION_METHODS[self.options.pixel_selection]()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img, _ = mosaic_reader(
                    list(assets),
                    read_asset_tile,
                    x,
                    y,
                    z,
                    pixel_selection=method,
                    threads=1,
                    tilesize=self.options.tilesize,
                    **_reader_kwargs(self.options),
                )
        except EmptyMosaicError:
            return None
        except TileOutsideBounds:
            return None
        except AssertionError as e:
            raise TileReadError(
                f"tile {z}/{x}/{y}: assets have different band counts ({e})", tile
            ) from e
        except (RioTilerError, OSError, ValueError, KeyError) as e:
            raise TileReadError(f"tile {z}/{x}/{y}: {type(e).__name__}: {e}", tile) from e
        except Exception as e:  # rasterio/GDAL raise a few more kinds on corrupt files
            raise TileReadError(f"tile {z}/{x}/{y}: {type(e).__name__}: {e}", tile) from e
        arr = img.array
        if arr.ndim == 2:  # `count` returns one band as a 2-D array
            arr = arr[numpy.newaxis]
        valid = ~numpy.ma.getmaskarray(arr).all(axis=0)
        if not valid.any():
            return None
        return TileData(numpy.ma.getdata(arr), valid)

    def band_info(self, assets: Sequence) -> BandInfo:
        """Band count and dtype of the output, from a small preview of the first readable asset.

        The preview goes through the same pixel-selection method, so methods that change the
        band count (`count`, `lastbandhigh/low`) or the dtype (`stdev`) are accounted for.

        Raises:
            SourceError: the asset cannot be read with these options.
        """
        if not assets:
            raise SourceError("no asset to read band information from")
        errors = []
        for asset in assets:  # the first readable asset decides
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    img = _preview_asset(asset, **_reader_kwargs(self.options))
                break
            except Exception as e:
                errors.append(f"cannot read {_asset_name(asset)!r}: {type(e).__name__}: {e}")
        else:
            raise SourceError(errors[0] if len(errors) == 1 else
                              f"none of {len(errors)} assets could be read; first: {errors[0]}")
        method = PIXEL_SELECTION_METHODS[self.options.pixel_selection]()
        method.width, method.height, method.count = img.width, img.height, img.count
        method.feed(img.array)
        out = method.data
        if out is not None and out.ndim == 2:
            out = out[numpy.newaxis]
        if out is None or out.shape[0] == 0:
            if self.options.pixel_selection.startswith("lastband"):
                raise SourceError(
                    f"{self.options.pixel_selection} decides on the last band and drops it: "
                    "it needs at least 2 bands"
                )
            raise SourceError(f"{self.options.pixel_selection} produced no band")
        names = tuple(img.band_descriptions or ())[: out.shape[0]]
        if self.options.pixel_selection == "count":
            names = ("count",)
        return BandInfo(out.shape[0], str(out.dtype), names)
