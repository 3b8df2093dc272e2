"""A mosaicJSON document (cogeo-mosaic's model) as an asset source."""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import morecantile
from cogeo_mosaic.mosaic import MosaicJSON
from pydantic import ValidationError

from mosaic_assembler.errors import SourceError
from mosaic_assembler.sources._files import document_dir, read_json, resolve_href

_WMQ = morecantile.tms.get("WebMercatorQuad")


@dataclass(frozen=True)
class MosaicJSONSource:
    """The quadkey → assets table of a mosaicJSON, with hrefs resolved.

    Asset order within a quadkey is the document's order; for a tile smaller than a quadkey
    the assets of its parent quadkey apply, for a larger tile the de-duplicated union of its
    child quadkeys, exactly as cogeo-mosaic's backends (and so TiTiler) look them up.

    Notes:
        cogeo-mosaic lists the child quadkeys by splitting the tile one level at a time
        (top-left, top-right, bottom-left, bottom-right), which is their lexicographic
        order. The children are found here by prefix in the sorted quadkeys instead of by
        enumerating all 4^(quadkey_zoom - z) of them: a 30-digit quadkey at zoom 8 would be
        4^22 lookups per tile.
    """

    path: str
    quadkey_zoom: int
    minzoom: int
    maxzoom: int
    bounds: tuple[float, float, float, float]
    tiles: dict[str, tuple[str, ...]]
    tms_json: str = ""  # the document's `tilematrixset` ("": WebMercatorQuad)

    @cached_property
    def _sorted_quadkeys(self) -> tuple[str, ...]:
        return tuple(sorted(self.tiles))

    @cached_property
    def tms(self) -> morecantile.TileMatrixSet:
        """The TileMatrixSet of the document's quadkeys."""
        if not self.tms_json:
            return _WMQ
        return morecantile.TileMatrixSet.model_validate_json(self.tms_json)

    def quadkeys_for_tile(self, x: int, y: int, z: int) -> list[str]:
        """The document's quadkeys covering tile (x, y, z), in cogeo-mosaic's order."""
        quadkey = self.tms.quadkey(morecantile.Tile(x, y, z))
        if z >= self.quadkey_zoom:
            parent = quadkey[: self.quadkey_zoom]
            return [parent] if parent in self.tiles else []
        keys = self._sorted_quadkeys
        lo = bisect.bisect_left(keys, quadkey)
        hi = bisect.bisect_left(keys, quadkey + "4", lo)  # digits are 0-3: "4" sorts after
        return list(keys[lo:hi])

    def assets_for_tile(
        self, x: int, y: int, z: int, tms: morecantile.TileMatrixSet | None = None
    ) -> list[str]:
        """Assets of the quadkey(s) covering tile (x, y, z) of `tms` (None: the document's).

        For a tile of another TMS, cogeo-mosaic's `assets_for_bbox` of the tile's geographic
        bounds: the document's quadkeys from its top-left to its bottom-right, column by
        column (as TiTiler looks them up for that TMS).
        """
        if tms is not None and tms.id != self.tms.id:
            return self._assets_for_other_tms(tms, x, y, z)
        quadkeys = self.quadkeys_for_tile(x, y, z)
        return list(dict.fromkeys(itertools.chain.from_iterable(self.tiles[q] for q in quadkeys)))

    def _assets_for_other_tms(
        self, tms: morecantile.TileMatrixSet, x: int, y: int, z: int
    ) -> list[str]:
        from rasterio.warp import transform_bounds

        own = self.tms
        xmin, ymin, xmax, ymax = tms.bounds(morecantile.Tile(x, y, z))
        if tms.rasterio_geographic_crs != own.rasterio_geographic_crs:
            xmin, ymin, xmax, ymax = transform_bounds(
                tms.rasterio_geographic_crs, own.rasterio_geographic_crs, xmin, ymin, xmax, ymax
            )
        # a tile across 180° (UTM zone 60 over Fiji) has xmin > xmax: its two sides
        # (cogeo-mosaic would find no quadkey)
        parts = [(xmin, xmax)] if xmin <= xmax else [(xmin, 180.0), (-180.0, xmax)]
        keys = []
        for west, east in parts:
            tl = own.tile(west, ymax, self.quadkey_zoom)
            br = own.tile(east, ymin, self.quadkey_zoom)
            keys += [
                own.quadkey(morecantile.Tile(tx, ty, self.quadkey_zoom))
                for tx in range(tl.x, br.x + 1)
                for ty in range(tl.y, br.y + 1)
            ]
        return list(
            dict.fromkeys(itertools.chain.from_iterable(self.tiles.get(k, ()) for k in keys))
        )

    def all_assets(self) -> list[str]:
        """Every asset, de-duplicated, in first-seen order."""
        return list(dict.fromkeys(itertools.chain.from_iterable(self.tiles.values())))


def open_mosaicjson(path: str | Path) -> MosaicJSONSource:
    """Load and validate a mosaicJSON file.

    Relative asset paths resolve against the mosaicJSON's directory.

    Raises:
        SourceError: missing file, invalid JSON, not a mosaicJSON, or a TMS without quadkeys.
    """
    doc: Any = read_json(path, "mosaicJSON")
    try:
        mosaic = MosaicJSON.model_validate(doc)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "document"
        raise SourceError(f"{str(path)!r} is not a valid mosaicJSON: {loc}: {first['msg']}") from e
    tms_json = ""
    if mosaic.tilematrixset is not None and mosaic.tilematrixset.id != "WebMercatorQuad":
        if not mosaic.tilematrixset.is_quadtree:
            raise SourceError(
                f"mosaicJSON {str(path)!r} uses TileMatrixSet {mosaic.tilematrixset.id!r}, "
                "which is not a quadtree: it has no quadkeys"
            )
        tms_json = mosaic.tilematrixset.model_dump_json(exclude_none=True)
    if not mosaic.tiles:
        raise SourceError(f"mosaicJSON {str(path)!r} lists no tiles")
    qk_zoom = mosaic.quadkey_zoom if mosaic.quadkey_zoom is not None else mosaic.minzoom
    lengths = {len(q) for q in mosaic.tiles}
    if lengths != {qk_zoom}:
        raise SourceError(
            f"mosaicJSON {str(path)!r}: quadkeys have lengths {sorted(lengths)} but "
            f"quadkey_zoom is {qk_zoom}"
        )
    base = document_dir(path)
    prefix = mosaic.asset_prefix or ""
    tiles = {
        qk: tuple(resolve_href(prefix + a, base) for a in assets)
        for qk, assets in mosaic.tiles.items()
    }
    return MosaicJSONSource(
        path=str(path),
        quadkey_zoom=qk_zoom,
        minzoom=mosaic.minzoom,
        maxzoom=mosaic.maxzoom,
        bounds=tuple(mosaic.bounds),  # type: ignore[arg-type]
        tiles=tiles,
        tms_json=tms_json,
    )
