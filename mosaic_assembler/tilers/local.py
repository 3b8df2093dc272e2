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
from rio_tiler.errors import EmptyMosaicError, TileOutsideBounds
from rio_tiler.io import Reader, STACReader
from rio_tiler.models import ImageData
from rio_tiler.mosaic import mosaic_reader

from mosaic_assembler._grouping import group_observations, observation_day
from mosaic_assembler._tms import WEB_MERCATOR, Grid
from mosaic_assembler.errors import SourceError, TileReadError
from mosaic_assembler.harmonize import offset_bands, remove_offset
from mosaic_assembler.provenance import compute_provenance
from mosaic_assembler.selection import QAMask, ReadOptions, make_method, method_traits
from mosaic_assembler.sources import ItemAssets
from mosaic_assembler.tilers._fastread import reader_tile, release_datasets, stac_tile
from mosaic_assembler.types import BandInfo, TileData


def _reader_kwargs(options: ReadOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"resampling_method": options.resampling}
    if options.bidx is not None:
        kwargs["indexes"] = options.bidx
    if options.expression:
        kwargs["expression"] = options.expression
    return kwargs


def read_asset_tile(
    asset: str | ItemAssets,
    x: int,
    y: int,
    z: int,
    qa_mask: QAMask | None = None,
    tms: Any = None,
    harmonize: str | None = None,
    **kwargs: Any,
) -> ImageData:
    """Read one asset's part of a tile as rio-tiler does (the reader given to mosaic_reader).

    Same pixels and mask as `Reader(asset, tms=tms).tile(...)` /
    `STACReader(item, tms=tms).tile(...)`, through `_fastread` (datasets kept open, one warp
    per asset). `tms`: the morecantile TileMatrixSet (None: WebMercatorQuad).

    With `qa_mask`, the quality band is read too (nearest resampling: it is categorical) and
    the observations it flags are masked, so that no method sees them. With `harmonize`
    ("s2"), Sentinel-2's +1000 DN offset is removed from the item's reflectance assets
    first (before an expression is evaluated).
    """
    try:
        shift = (
            offset_bands(asset.item, asset.assets)
            if harmonize and isinstance(asset, ItemAssets)
            else ()
        )
        if any(shift):
            img = _read_harmonized(asset, shift, x, y, z, tms=tms, **kwargs)  # type: ignore[arg-type]
        elif isinstance(asset, ItemAssets):
            img = stac_tile(lambda: asset.item, asset, asset.assets, x, y, z, tms=tms, **kwargs)
        else:
            img = reader_tile(asset, x, y, z, tms=tms, **kwargs)
        if qa_mask is not None:
            qa = _read_qa(asset, x, y, z, qa_mask, kwargs.get("tilesize", 256), tms)
            mask = numpy.ma.getmaskarray(img.array) | qa_mask.exclude(qa)[numpy.newaxis]
            img.array = numpy.ma.MaskedArray(numpy.ma.getdata(img.array), mask=mask)
    except (TileOutsideBounds, SourceError, AssertionError):
        raise  # an asset outside the tile (skipped by mosaic_reader), a source error, a bug
    except Exception as e:  # GDAL, rasterio, rio-tiler: say which asset failed
        raise _AssetFailed(_asset_label(asset), e) from e
    return img


class _AssetFailed(Exception):
    """One asset's read of a tile failed; `read_tile` names the asset in the tile's reason."""

    def __init__(self, label: str, error: Exception):
        super().__init__(f"{label}: {type(error).__name__}: {error}")
        self.error = error


def _asset_label(asset: str | ItemAssets) -> str:
    """Which asset, for a message: an item's id and assets, or a path or URL.

    A URL loses its query string and fragment, which may hold a token.
    """
    if isinstance(asset, ItemAssets):
        return f"item {asset.id!r} ({', '.join(asset.assets)})"
    return str(asset).split("?", 1)[0].split("#", 1)[0]


def _read_harmonized(
    asset: ItemAssets, shift: Sequence[bool], x: int, y: int, z: int, **kwargs: Any
) -> ImageData:
    """An item's tile with the offset removed from its reflectance bands, then the expression."""
    expression = kwargs.pop("expression", None)
    img = stac_tile(lambda: asset.item, asset, asset.assets, x, y, z, **kwargs)
    per_asset, rest = divmod(img.count, len(shift))
    if rest:
        raise SourceError(
            f"item {asset.id!r}: {img.count} bands from {len(shift)} assets; `harmonize` "
            "needs the same band count in each asset"
        )
    flags = [on for on in shift for _ in range(per_asset)]
    data = remove_offset(numpy.ma.getdata(img.array), flags)
    img.array = numpy.ma.MaskedArray(data, mask=numpy.ma.getmaskarray(img.array))
    img.band_names = [f"b{ix + 1}" for ix in range(img.count)]
    return img.apply_expression(expression) if expression else img


def read_group_tile(group: Sequence[Any], x: int, y: int, z: int, **kwargs: Any) -> ImageData:
    """The items of one solar day fused: per pixel, the first valid value in the run's order."""
    from mosaic_assembler._selection_methods import FirstMethod

    try:
        img, _ = mosaic_reader(
            list(group), read_asset_tile, x, y, z, pixel_selection=FirstMethod(), threads=1,
            **kwargs,
        )  # fmt: skip
    except EmptyMosaicError as e:
        raise TileOutsideBounds(f"Tile(x={x}, y={y}, z={z}): no item of the date covers it") from e
    return img


def _read_observation(
    obs: tuple[Any, Any, bool], x: int, y: int, z: int, **kwargs: Any
) -> ImageData:
    """One observation (date, payload, fused?): an asset, or the items of one solar day."""
    _, payload, fused = obs
    if fused:
        return read_group_tile(payload, x, y, z, **kwargs)
    return read_asset_tile(payload, x, y, z, **kwargs)


def _read_qa(
    asset: str | ItemAssets,
    x: int,
    y: int,
    z: int,
    qa_mask: QAMask,
    tilesize: int,
    tms: Any = None,
) -> numpy.ndarray:
    if isinstance(asset, ItemAssets):
        try:
            href = asset.item["assets"][qa_mask.band]["href"]
        except KeyError as e:
            raise SourceError(
                f"item {asset.id!r} has no asset {qa_mask.band!r} (the `mask_band`)"
            ) from e
        img = reader_tile(
            href, x, y, z, tilesize=tilesize, indexes=1, resampling_method="nearest", tms=tms
        )
    else:
        bidx = qa_mask.bidx
        if bidx is None:
            raise SourceError("with a mosaicJSON, `mask_band` is a band index of each COG")
        img = reader_tile(
            asset, x, y, z, tilesize=tilesize, indexes=bidx, resampling_method="nearest", tms=tms
        )
    return numpy.ma.getdata(img.array)[0]


def _preview_asset(asset: str | ItemAssets, qa_bidx: int | None = None, **kwargs: Any) -> ImageData:
    kwargs.pop("tilesize", None)
    if isinstance(asset, ItemAssets):
        with STACReader(
            None,
            item=asset.item,
            include_assets=set(asset.assets),
            include_asset_types=None,  # type: ignore[arg-type]  # None: no filter
        ) as src:
            return src.preview(assets=list(asset.assets), max_size=64, **kwargs)
    with Reader(asset) as src:
        _check_dataset(asset, src.dataset, qa_bidx)
        return src.preview(max_size=64, **kwargs)


def _check_dataset(asset: str, dataset: Any, qa_bidx: int | None) -> None:
    """What a source must have for every tile to be readable, checked once at plan time."""
    if dataset.crs is None:
        raise _PlanError(f"{asset!r} has no CRS: it cannot be placed on the output grid")
    if qa_bidx is not None and qa_bidx > dataset.count:
        raise _PlanError(
            f"`mask_band` {qa_bidx} is beyond the {dataset.count} band(s) of {asset!r}"
        )


class _PlanError(SourceError):
    """A source that no tile could be read from (raised at once, not per asset)."""


def _asset_name(asset: str | ItemAssets) -> str:
    return asset.id if isinstance(asset, ItemAssets) else asset


@dataclass(frozen=True)
class LocalTiler:
    """Renders tiles in-process from COG paths/URLs or STAC items.

    Attributes:
        options: pixel selection, tilesize, bands/expression, resampling.
        grid: the TileMatrixSet of the tiles (WebMercatorQuad by default).
    """

    options: ReadOptions
    grid: Grid = WEB_MERCATOR

    def close(self) -> None:
        """Close the datasets the reads kept open (the pipeline calls it after the reads)."""
        release_datasets()

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
        opts = self.options
        grid: dict[str, Any] = {} if self.grid.is_default else {"tms": self.grid.tms}
        method = make_method(opts.pixel_selection)
        newest_first = method_traits(opts.pixel_selection).needs_datetimes
        if newest_first and opts.group_by == "item":  # latest-clear: newest first
            assets = sorted(assets, key=lambda a: getattr(a, "datetime", ""), reverse=True)
        observations: list[Any] = list(assets)
        reader: Any = read_asset_tile
        fed: list[tuple[Any, numpy.ma.MaskedArray]] = []
        if opts.group_by != "item" or opts.provenance:
            observations, reader = self._observations(assets, newest_first, fed)
            if "count" in opts.provenance:
                method.exit_when_filled = False  # every observation counts
        extra: dict[str, Any] = {"harmonize": opts.harmonize} if opts.harmonize else {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img, _ = mosaic_reader(
                    observations,
                    reader,
                    x,
                    y,
                    z,
                    pixel_selection=method,
                    threads=1,
                    tilesize=opts.tilesize,
                    qa_mask=opts.qa_mask,
                    **grid,
                    **extra,
                    **_reader_kwargs(opts),
                )
        except (EmptyMosaicError, TileOutsideBounds):
            return None
        except SourceError:
            raise
        except AssertionError as e:
            raise TileReadError(
                f"tile {z}/{x}/{y}: assets have different band counts ({e})", tile
            ) from e
        except _AssetFailed as e:  # one asset's read: its name, then GDAL's (or rio-tiler's) reason
            raise TileReadError(f"tile {z}/{x}/{y}: {e}", tile) from e.error
        except Exception as e:  # rio-tiler, OSError, ValueError, KeyError; rasterio/GDAL more
            raise TileReadError(f"tile {z}/{x}/{y}: {type(e).__name__}: {e}", tile) from e
        arr = img.array
        if arr.ndim == 2:  # `count` returns one band as a 2-D array
            arr = arr[numpy.newaxis]
        valid = numpy.asarray(~numpy.ma.getmaskarray(arr).all(axis=0))  # an array, for mypy
        if not valid.any():
            return None
        data = numpy.ma.getdata(arr)
        if opts.output_dtype and data.dtype != opts.output_dtype:
            data = data.astype(opts.output_dtype)
        if not opts.provenance:
            return TileData(data, valid)
        prov = compute_provenance(opts.provenance, opts.pixel_selection, fed, method.mosaic)
        for a in prov.values():
            a[:, ~valid] = 0
        return TileData(data, valid, tuple(prov.items()))

    def _observations(
        self, assets: Sequence, newest_first: bool, fed: list
    ) -> tuple[list[Any], Any]:
        """(date, payload, fused) per observation, and a reader that records what it fed."""
        by = self.options.group_by
        if by == "item":
            dated = "date" in self.options.provenance  # a date is only needed for a date
            obs = [(observation_day(a, by) if dated else None, a, False) for a in assets]
        else:
            groups = group_observations(assets, by, newest_first=newest_first)
            obs = [(day, items, True) for day, items in groups]

        def reader(o: tuple[Any, Any, bool], *args: Any, **kwargs: Any) -> ImageData:
            img = _read_observation(o, *args, **kwargs)
            fed.append((o[0], img.array))
            return img

        return obs, reader

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
        qa = self.options.qa_mask
        for asset in assets:  # the first readable asset decides
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    img = _preview_asset(
                        asset, qa.bidx if qa else None, **_reader_kwargs(self.options)
                    )
                break
            except _PlanError:
                raise
            except Exception as e:
                errors.append(f"cannot read {_asset_name(asset)!r}: {type(e).__name__}: {e}")
        else:
            raise SourceError(
                errors[0]
                if len(errors) == 1
                else f"none of {len(errors)} assets could be read; first: {errors[0]}"
            )
        traits = method_traits(self.options.pixel_selection)
        method = make_method(self.options.pixel_selection)
        method.width, method.height, method.count = img.width, img.height, img.count
        method.feed(img.array)
        out = method.data
        if out is not None and out.ndim == 2:
            out = out[numpy.newaxis]
        if out is None or out.shape[0] == 0:
            if traits.drops_last_band:
                raise SourceError(
                    f"{self.options.pixel_selection} decides on the last band and drops it: "
                    "it needs at least 2 bands"
                )
            raise SourceError(f"{self.options.pixel_selection} produced no band")
        names = tuple(img.band_descriptions or ())[: out.shape[0]]
        if traits.band_name:
            names = (traits.band_name,)
        return BandInfo(out.shape[0], self.options.output_dtype or str(out.dtype), names)
