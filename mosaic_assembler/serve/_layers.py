"""Layers: a name → one file the server may read (a COG, or a split output's mosaic.json).

The HTTP side only ever sees layer names; the paths are fixed when the server starts, so no
request can make the server open a file it was not given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform_bounds

from mosaic_assembler.errors import ConfigError

COG = "cog"
MOSAIC = "mosaicjson"


@dataclass(frozen=True)
class Layer:
    """One served layer.

    Attributes:
        name: the name in URLs and in the viewer.
        path: the COG, or the split output's `mosaic.json`.
        kind: `cog` or `mosaicjson`.
        bounds: lon/lat bounds (W, S, E, N).
        minzoom: the lowest useful web-mercator zoom.
        maxzoom: the zoom of the native resolution.
        count: bands.
        dtype: the bands' data type.
        files: the COGs whose pixels the layer holds (one for a COG; the split's quadkeys).
    """

    name: str
    path: Path
    kind: str
    bounds: tuple[float, float, float, float]
    minzoom: int
    maxzoom: int
    count: int
    dtype: str
    files: tuple[Path, ...]


def parse_layer_spec(spec: str) -> tuple[str, Path]:
    """`NAME=PATH` or `PATH` (named after the file's stem, or a split directory's name)."""
    name, sep, path = spec.partition("=")
    if not sep or not name or "/" in name:
        name, path = "", spec
    p = Path(path)
    if not name:
        name = p.name if p.is_dir() else (p.parent.name if p.name == "mosaic.json" else p.stem)
    return name, p


def open_layer(name: str, path: Path) -> Layer:
    """Inspect a COG or a split output (a directory holding `mosaic.json`, or that file).

    Raises:
        ConfigError: the path does not exist or is neither a raster nor a mosaicJSON.
    """
    if path.is_dir():
        path = path / "mosaic.json"
    if not path.exists():
        raise ConfigError(f"layer {name!r}: {path} does not exist")
    if path.suffix == ".json":
        return _open_mosaic(name, path)
    try:
        with rasterio.open(path) as src:
            count, dtype = src.count, src.dtypes[0]
            bounds = _lonlat_bounds(src)
    except rasterio.errors.RasterioIOError as e:
        raise ConfigError(f"layer {name!r}: {path} is not a raster GDAL can read ({e})") from e
    p = path.absolute()
    return Layer(name, p, COG, bounds, *_zooms(p), count, dtype, (p,))


def _open_mosaic(name: str, path: Path) -> Layer:
    try:
        doc = json.loads(path.read_text())
        files = sorted({Path(p) for paths in doc["tiles"].values() for p in paths})
        bounds = tuple(float(v) for v in doc["bounds"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"layer {name!r}: {path} is not a mosaicJSON ({e})") from e
    if not files:
        raise ConfigError(f"layer {name!r}: {path} lists no file")
    with rasterio.open(files[0]) as src:
        count, dtype = src.count, src.dtypes[0]
    maxzoom = _zooms(files[0])[1]
    minzoom = int(doc.get("minzoom", 0))
    return Layer(
        name, path.absolute(), MOSAIC, bounds, minzoom, max(minzoom, maxzoom), count,  # type: ignore[arg-type]
        dtype, tuple(files),
    )  # fmt: skip


def _lonlat_bounds(src: rasterio.DatasetReader) -> tuple[float, float, float, float]:
    w, s, e, n = transform_bounds(src.crs, CRS.from_epsg(4326), *src.bounds, densify_pts=21)
    return (w, s, e, n)


def _zooms(path: Path) -> tuple[int, int]:
    from rio_tiler.io import Reader

    with Reader(str(path)) as r:
        return int(r.minzoom), int(r.maxzoom)


def open_layers(specs: list[str]) -> dict[str, Layer]:
    """The layers of `serve SRC …`, by name.

    Raises:
        ConfigError: no source, two layers of one name, or a source that cannot be opened.
    """
    if not specs:
        raise ConfigError("give at least one COG or split output to serve")
    layers: dict[str, Layer] = {}
    for spec in specs:
        name, path = parse_layer_spec(spec)
        if name in layers:
            raise ConfigError(f"two layers are named {name!r}: name one NAME=PATH")
        layers[name] = open_layer(name, path)
    return layers
